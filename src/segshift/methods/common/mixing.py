"""ClassMix and CutMix masks, and mixing of images, labels and weights.

A mask is (B,H,W) float with 1 where the pixel comes from the *first* batch (the one whose
classes or box are pasted: the source in DACS, the other unlabeled image in UniMatch) and 0 where
it comes from the second. All draws use the ``generator`` passed in, so a method that seeds it
from the step keeps resume exact.

- ClassMix (Olsson et al., WACV 2021; DACS, Tranheden et al., WACV 2021): half of the classes
  present in each first-batch label map (ceil(n/2), drawn without replacement); DAFormer/MIC
  draw, for each map, half of the classes present anywhere in the batch.
- CutMix (Yun et al., ICCV 2019) boxes: one rectangle per image. ``area`` fixes its share of the
  image (DACS/U2PL: half, with a random width); UniMatch's size/aspect draw is ``cutmix_box``.
- Cross-domain mixed samples (DACS and methods built like it): ``mix_masks`` picks ClassMix or
  CutMix by name; ``mixed_batch`` pastes the source's pixels, labels and weight 1 onto the target
  image, its pseudo-labels and their weights.

Example::

    mask = class_mix_masks(source["label"], generator)
    image = mix(mask, source["image"], target["image"])
    label = mix(mask, source["label"], pseudo.label)
    # or, the same in one call: image, label, weight = mixed_batch(source, target, pseudo, mask)
"""

from __future__ import annotations

import math
from typing import Any

import torch

from segshift.errors import ConfigError
from segshift.methods.common.pseudo_label import PseudoLabel

MIX_MASKS = ("class", "cut")


def class_mix_masks(
    labels: torch.Tensor,
    generator: torch.Generator,
    *,
    ignore_index: int = 255,
    include_ignore: bool = False,
    classes_from: str = "image",
) -> torch.Tensor:
    """(B,H,W) float masks that are 1 exactly on ceil(n/2) of n candidate classes of ``labels``
    (B,H,W), drawn without replacement, one independent draw per label map.

    The candidates are the classes of that map with ``classes_from="image"`` (DACS), or those of
    the whole batch with ``"batch"`` (DAFormer/MIC ``get_class_masks``: ``torch.unique`` over all
    labels, redrawn for every map, so a map can draw classes it does not contain and paste less
    than half of its classes). The official code keeps the ignore value among the candidates
    (``include_ignore=True`` reproduces it); by default it is left out, so ignored pixels are
    never pasted. See docs/METHODS.md, "DACS" and "DAFormer and MIC".
    """
    if classes_from not in ("image", "batch"):
        raise ValueError(f"classes_from must be 'image' or 'batch', got {classes_from!r}")

    def choose(present: torch.Tensor) -> torch.Tensor:
        if not include_ignore:
            present = present[present != ignore_index]
        order = torch.randperm(len(present), generator=generator)
        return present[order[: math.ceil(len(present) / 2)].to(present.device)]

    batch_classes = torch.unique(labels) if classes_from == "batch" else None
    masks = []
    for lab in labels:
        candidates = torch.unique(lab) if batch_classes is None else batch_classes
        masks.append(torch.isin(lab, choose(candidates)))
    return torch.stack(masks).float()


def cutmix_masks(
    batch: int,
    size: tuple[int, int],
    generator: torch.Generator,
    *,
    area: float = 0.5,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """(B,H,W) float masks, 1 inside one random box per image covering ``area`` of it.

    The width is drawn uniformly in [W*area, W) and the height follows from the area (clipped to
    H), at a uniformly random position: DACS's and U2PL's ``generate_cutout_mask`` (there the
    box is the part cut out of the first image; here it is the part taken from it).
    """
    height, width = size
    masks = torch.zeros(batch, height, width, device=device)
    for i in range(batch):
        low = max(1, int(width * area))
        w = int(torch.randint(low, max(low + 1, width), (1,), generator=generator))
        h = min(height, max(1, round(height * width * area / w)))
        y = int(torch.randint(0, height - h + 1, (1,), generator=generator))
        x = int(torch.randint(0, width - w + 1, (1,), generator=generator))
        masks[i, y : y + h, x : x + w] = 1.0
    return masks


def cutmix_box(
    batch: int,
    size: tuple[int, int],
    generator: torch.Generator,
    *,
    p: float = 0.5,
    area_range: tuple[float, float] = (0.02, 0.4),
    ratio_range: tuple[float, float] = (0.3, 1 / 0.3),
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """UniMatch/FixMatch's ``obtain_cutmix_box``: with probability ``p`` a box whose area share is
    drawn from ``area_range`` once, then aspect ratio and corner redrawn until it fits."""
    height, width = size
    masks = torch.zeros(batch, height, width, device=device)
    for i in range(batch):
        if float(torch.rand((), generator=generator)) > p:
            continue
        box_area = (
            float(torch.empty(()).uniform_(*area_range, generator=generator)) * height * width
        )
        while True:
            ratio = float(torch.empty(()).uniform_(*ratio_range, generator=generator))
            w, h = int(math.sqrt(box_area / ratio)), int(math.sqrt(box_area * ratio))
            x = int(torch.randint(0, width, (1,), generator=generator))
            y = int(torch.randint(0, height, (1,), generator=generator))
            if x + w <= width and y + h <= height:
                break
        masks[i, y : y + h, x : x + w] = 1.0
    return masks


def mix(mask: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """``mask * first + (1 - mask) * second`` for images (B,C,H,W), labels or weights (B,H,W).

    Integer tensors (labels) are selected, not blended.
    """
    m = mask if first.dim() == mask.dim() else mask.unsqueeze(1)
    if not first.is_floating_point():
        return torch.where(m.bool(), first, second)
    m = m.to(first.dtype)
    return m * first + (1 - m) * second


def mix_masks(
    kind: str,
    labels: torch.Tensor,
    generator: torch.Generator,
    *,
    ignore_index: int = 255,
    include_ignore: bool = False,
) -> torch.Tensor:
    """(B,H,W) masks from the first batch's (B,H,W) ``labels``: ``"class"`` = ClassMix per image
    (:func:`class_mix_masks`), ``"cut"`` = one box of half the image (:func:`cutmix_masks`)."""
    if kind == "class":
        return class_mix_masks(
            labels, generator, ignore_index=ignore_index, include_ignore=include_ignore
        )
    if kind == "cut":
        masks = cutmix_masks(labels.shape[0], tuple(labels.shape[-2:]), generator)
        return masks.to(labels.device)
    raise ValueError(f"mix mask must be one of {MIX_MASKS}, got {kind!r}")


def mixed_batch(
    source: dict[str, Any], target: dict[str, Any], pseudo: PseudoLabel, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DACS's mixed sample: (image, label, weight) = mix(M, source, target) of each part.

    ``source``: a labeled batch (``image`` (B,3,H,W), ``label`` (B,H,W)); ``target``: a batch of
    the same size whose ``pseudo`` labels and weights (B,H,W) come from a teacher; ``mask`` (B,H,W)
    is 1 where the source is pasted. Source pixels keep their labels with weight 1, target pixels
    take the pseudo-label and its weight. Returns image (B,3,H,W), label (B,H,W) int64 and weight
    (B,H,W) float.
    """
    if source["image"].shape != target["image"].shape:
        raise ConfigError(
            f"mixing pastes source pixels onto target images, so both batches need one shape: "
            f"source {tuple(source['image'].shape)} vs target {tuple(target['image'].shape)}; "
            "give data.streams.source and data.streams.target the same batch_size and crop_size"
        )
    image = mix(mask, source["image"], target["image"])
    label = mix(mask, source["label"], pseudo.label)
    weight = mix(mask, torch.ones_like(pseudo.weight), pseudo.weight)
    return image, label, weight


def box_masks(
    batch: int,
    size: tuple[int, int],
    generator: torch.Generator,
    *,
    prop_range: tuple[float, float] = (0.25, 0.5),
    n_boxes: int = 3,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """CPS+CutMix's ``BoxMaskGenerator`` (prop_by_area, random aspect ratio, within bounds,
    invert): (B,H,W) float masks that start at 0; each of ``n_boxes`` boxes toggles its region
    (overlaps flip back). Box k of image i covers an area share a ~ U(prop_range) / n_boxes:
    height share y = exp(U(0,1) ln a), width share a / y, both times sqrt(1 / n_boxes), rounded
    to pixels, at a position round((size - box) U(0,1)). 1 = take the second unlabeled batch."""
    height, width = size
    shape = torch.tensor([height, width], dtype=torch.float64)
    props = torch.empty(batch, n_boxes, dtype=torch.float64).uniform_(
        *prop_range, generator=generator
    )
    y_props = torch.exp(
        torch.rand(batch, n_boxes, generator=generator, dtype=torch.float64) * props.log()
    )
    x_props = props / y_props
    scale = math.sqrt(1.0 / n_boxes)
    sizes = torch.round(torch.stack((y_props, x_props), dim=2) * scale * shape)
    corner = torch.rand(batch, n_boxes, 2, generator=generator, dtype=torch.float64)
    starts = torch.round((shape - sizes) * corner)
    masks = torch.zeros(batch, height, width, device=device)
    for i in range(batch):
        for (y0, x0), (h, w) in zip(
            starts[i].long().tolist(), sizes[i].long().tolist(), strict=True
        ):
            masks[i, y0 : y0 + h, x0 : x0 + w] = 1 - masks[i, y0 : y0 + h, x0 : x0 + w]
    return masks
