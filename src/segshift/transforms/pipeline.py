"""Joint image/mask augmentation pipelines built on albumentations 2.

A pipeline is a callable ``(image, mask, seed) -> (image tensor, label tensor)``:

- ``image``: RGB uint8 (H,W,3); ``mask``: train ids uint8 (H,W) with 255 = ignore, or ``None``;
- returns ``image`` float32 (3,h,w) RGB in [0, 1] (models normalise their own input) and
  ``label`` int64 (h,w) (``None`` when no mask was given).

With a ``seed`` the random draws depend only on that seed, so a sample's augmentation can be
replayed exactly (resume); without one the seed is drawn from torch's generator, which
``torch.manual_seed`` and DataLoader workers already seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np
import torch

from segshift.transforms.normalize import to_tensor

IGNORE_INDEX = 255
INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,  # the official GTA5/SYNTHIA/Cityscapes loaders of the DA line
    "area": cv2.INTER_AREA,
}


def _size(value: Sequence[int] | None, what: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if len(value) != 2 or min(value) <= 0:
        raise ValueError(f"{what} must be [height, width] with positive values, got {value}")
    return int(value[0]), int(value[1])


class SegTransform:
    """An albumentations pipeline applied jointly to an image and its mask, then made a tensor.

    Args:
        transforms: albumentations transforms applied to image and mask.
        image_only: transforms applied to the image only, after ``transforms`` (eval resize).
    """

    def __init__(
        self, transforms: list[A.BasicTransform], image_only: list[A.BasicTransform]
    ) -> None:
        self.joint = A.Compose(transforms)
        self.image_only = A.Compose(image_only)

    def _reseed(self, seed: int | None) -> None:
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, ()).item())
        # One independent stream per transform: albumentations' Compose.set_random_seed gives
        # every transform the same seed, which would correlate e.g. the flip and jitter coins.
        children = np.random.SeedSequence(seed).spawn(len(self.joint.transforms) + 1)
        self.joint.set_random_seed(int(children[0].generate_state(1)[0]))
        for transform, child in zip(self.joint.transforms, children[1:]):
            transform.set_random_seed(int(child.generate_state(1)[0]))

    def __call__(
        self, image: np.ndarray, mask: np.ndarray | None = None, seed: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Augment ``image`` (H,W,3 uint8) and ``mask`` (H,W uint8 or None) -> tensors."""
        if self.joint.transforms:
            self._reseed(seed)
            out = self.joint(image=image) if mask is None else self.joint(image=image, mask=mask)
            image, mask = out["image"], out.get("mask")
        if self.image_only.transforms:
            image = self.image_only(image=image)["image"]
        label = None if mask is None else torch.from_numpy(np.ascontiguousarray(mask)).long()
        return to_tensor(image), label


def build_transform(
    train: bool,
    resize: Sequence[int] | None = None,
    crop_size: Sequence[int] | None = None,
    scale_range: Sequence[float] = (1.0, 1.0),
    hflip: bool = False,
    photometric: bool = False,
    interpolation: str = "bilinear",
) -> SegTransform:
    """Build the per-sample pipeline for training or evaluation.

    Train: resize to ``resize`` [H,W] (optional), random rescale by a factor in ``scale_range``,
    pad to ``crop_size`` (image 0, mask 255), random crop ``crop_size``, horizontal flip,
    colour jitter + Gaussian blur (``photometric``). Eval: only resize the image; the label keeps
    its full resolution (evaluation resizes logits to the label). Images are resampled with
    ``interpolation`` (nearest, bilinear, bicubic, area); masks always use nearest.

    Example::

        >>> t = build_transform(True, crop_size=[256, 256], scale_range=[0.5, 2.0], hflip=True)
        >>> image, label = t(rgb_uint8, train_ids_uint8, seed=7)  # (3,256,256), (256,256)
    """
    resize_hw = _size(resize, "resize")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}"
        )
    inter = INTERPOLATIONS[interpolation]
    if not train:
        image_only = [] if resize_hw is None else [A.Resize(*resize_hw, interpolation=inter)]
        return SegTransform([], image_only)

    steps: list[A.BasicTransform] = []
    if resize_hw is not None:
        steps.append(
            A.Resize(*resize_hw, interpolation=inter, mask_interpolation=cv2.INTER_NEAREST)
        )
    low, high = float(scale_range[0]), float(scale_range[1])
    if not 0 < low <= high:
        raise ValueError(f"scale_range must be [low, high] with 0 < low <= high, got {scale_range}")
    if (low, high) != (1.0, 1.0):
        steps.append(
            A.RandomScale(
                scale_limit=(low - 1.0, high - 1.0),
                interpolation=inter,
                mask_interpolation=cv2.INTER_NEAREST,
                p=1.0,
            )
        )
    crop_hw = _size(crop_size, "crop_size")
    if crop_hw is not None:
        steps.append(
            A.PadIfNeeded(
                min_height=crop_hw[0],
                min_width=crop_hw[1],
                position="top_left",
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=IGNORE_INDEX,
            )
        )
        steps.append(A.RandomCrop(*crop_hw))
    if hflip:
        steps.append(A.HorizontalFlip(p=0.5))
    if photometric:
        steps.append(
            A.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.05, p=0.8)
        )
        steps.append(A.GaussianBlur(blur_limit=(3, 7), sigma_limit=(0.1, 2.0), p=0.5))
    return SegTransform(steps, [])
