"""ClassMix and CutMix masks, and mixing of images, labels and weights.

A mask is (B,H,W) float with 1 where the pixel comes from the *first* batch (the one whose
classes or box are pasted: the source in DACS, the other unlabeled image in UniMatch) and 0 where
it comes from the second. All draws use the ``generator`` passed in, so a method that seeds it
from the step keeps resume exact.

- ClassMix (Olsson et al., WACV 2021; DACS, Tranheden et al., WACV 2021): half of the classes
  present in each first-batch label map (ceil(n/2), drawn without replacement).
- CutMix (Yun et al., ICCV 2019) boxes: one rectangle per image. ``area`` fixes its share of the
  image (DACS/U2PL: half, with a random width); UniMatch's size/aspect draw is ``cutmix_box``.

Example::

    mask = class_mix_masks(source["label"], generator)
    image = mix(mask, source["image"], target["image"])
    label = mix(mask, source["label"], pseudo.label)
"""

from __future__ import annotations

import math

import torch


def class_mix_masks(
    labels: torch.Tensor,
    generator: torch.Generator,
    *,
    ignore_index: int = 255,
    include_ignore: bool = False,
    classes_from: str = "image",
) -> torch.Tensor:
    """(B,H,W) float masks that are 1 exactly on ceil(n/2) of the classes of ``labels`` (B,H,W).

    ``classes_from="image"`` draws per label map (DACS); ``"batch"`` draws once from the classes of
    the whole batch and applies them to every map (DAFormer/MIC). The official code keeps the
    ignore value among the candidates (``include_ignore=True`` reproduces it); by default it is
    left out, so ignored pixels are never pasted.
    """
    if classes_from not in ("image", "batch"):
        raise ValueError(f"classes_from must be 'image' or 'batch', got {classes_from!r}")

    def choose(present: torch.Tensor) -> torch.Tensor:
        if not include_ignore:
            present = present[present != ignore_index]
        order = torch.randperm(len(present), generator=generator)
        return present[order[: math.ceil(len(present) / 2)].to(present.device)]

    if classes_from == "batch":
        chosen = choose(torch.unique(labels))
        return torch.isin(labels, chosen).float()
    return torch.stack([torch.isin(lab, choose(torch.unique(lab))) for lab in labels]).float()


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
