"""Joint image/mask augmentation pipelines built on albumentations 2.

A pipeline is a callable ``(image, mask, seed) -> (image tensor, label tensor)``:

- ``image``: RGB uint8 (H,W,3); ``mask``: train ids uint8 (H,W) with 255 = ignore, or ``None``;
- returns ``image`` float32 (3,h,w) RGB in [0, 1] (models normalise their own input) and
  ``label`` int64 (h,w) (``None`` when no mask was given).

With a ``seed`` the random draws depend only on that seed, so a sample's augmentation can be
replayed exactly (resume); without one the seed is drawn from torch's generator, which
``torch.manual_seed`` and DataLoader workers already seed.

``policy: randaugment`` adds RandAugment (Cubuk et al., "RandAugment: Practical automated data
augmentation with a reduced search space", CVPR-W 2020): ``policy_ops`` ops drawn uniformly with
replacement, each at the one magnitude ``policy_magnitude`` (0-10), see :func:`randaugment_ops`.
``policy: autoaugment`` adds torchvision's ImageNet AutoAugment policy, its geometric ops applied
to the mask too (:mod:`segshift.transforms.autoaugment`; the ``policy_*`` keys are RandAugment's).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.core.composition import BaseCompose

from segshift.transforms.autoaugment import AutoAugmentImageNet
from segshift.transforms.normalize import to_tensor

IGNORE_INDEX = 255
INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,  # the official GTA5/SYNTHIA/Cityscapes loaders of the DA line
    "area": cv2.INTER_AREA,
}
POLICIES = ("randaugment", "autoaugment")
MAX_MAGNITUDE = 10.0


def _size(value: Sequence[int] | None, what: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if len(value) != 2 or min(value) <= 0:
        raise ValueError(f"{what} must be [height, width] with positive values, got {value}")
    return int(value[0]), int(value[1])


def randaugment_ops(
    magnitude: float,
    photometric: bool = True,
    geometric: bool = False,
    interpolation: int = cv2.INTER_LINEAR,
) -> list[A.BasicTransform]:
    """RandAugment's ops at ``magnitude`` m in [0, 10], each a transform that always applies.

    Strengths follow torchvision's ``RandAugment`` (``num_bins=11``), a random sign where the op
    has one: brightness, contrast, saturation (PIL's "Color") by a factor ``1 +- 0.9 m/10``;
    sharpness as PIL's ``ImageEnhance.Sharpness(1 + 0.9 m/10)`` (albumentations' Sharpen only
    sharpens, so no blurring sign); posterize to ``8 - round(4 m/10)`` bits; solarize above
    ``255 (1 - m/10)``; equalize and autocontrast (PIL's); hue, not in RandAugment, rotated by
    ``+- 0.1 m/10`` of the colour circle. These change the image only. ``geometric`` adds rotate
    ``+- 30 m/10`` degrees, shear x/y ``+- atan(0.3 m/10)``, translate x/y ``+- (150/331) m/10``
    of the size, applied to image (``interpolation``, fill 0) and mask (nearest, fill 255) alike.

    Example::

        >>> policy = A.SomeOf(randaugment_ops(9, geometric=True), n=2, replace=True, p=1.0)
    """
    level = magnitude / MAX_MAGNITUDE

    def signed(make: Callable[[float], A.BasicTransform], value: float) -> BaseCompose:
        return A.OneOf([make(value), make(-value)], p=1.0)

    def jitter(**factors: tuple[float, float]) -> A.ColorJitter:
        identity = {"brightness": (1, 1), "contrast": (1, 1), "saturation": (1, 1), "hue": (0, 0)}
        return A.ColorJitter(**{**identity, **factors}, p=1.0)

    def affine(**params: Any) -> A.Affine:
        return A.Affine(
            **params,
            interpolation=interpolation,
            mask_interpolation=cv2.INTER_NEAREST,
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            fill_mask=IGNORE_INDEX,
            p=1.0,
        )

    ops: list[A.BasicTransform] = []
    if photometric:
        factor = 0.9 * level
        bits = 8 - round(4 * level)  # 8 bits: no change, which albumentations refuses
        ops += [
            signed(lambda f: jitter(brightness=(1 + f, 1 + f)), factor),
            signed(lambda f: jitter(contrast=(1 + f, 1 + f)), factor),
            signed(lambda f: jitter(saturation=(1 + f, 1 + f)), factor),
            signed(lambda h: jitter(hue=(h, h)), 0.1 * level),
            # PIL adds f (8 x - sum of the 8 neighbours) / 13, albumentations alpha (8 x - sum)
            # (lightness 1), so alpha = f / 13 sharpens exactly as PIL
            A.Sharpen(alpha=(factor / 13, factor / 13), lightness=(1.0, 1.0), p=1.0),
            A.Posterize(num_bits=bits, p=1.0) if bits < 8 else A.NoOp(p=1.0),
            A.Solarize(threshold_range=(1 - level, 1 - level), p=1.0),
            A.Equalize(mode="pil", p=1.0),
            A.AutoContrast(method="pil", p=1.0),
        ]
    if geometric:
        shear = math.degrees(math.atan(0.3 * level))
        shift = 150 / 331 * level  # torchvision: 150 pixels of a 331-pixel image at m = 10
        ops += [
            signed(lambda d: affine(rotate=(d, d)), 30.0 * level),
            signed(lambda d: affine(shear={"x": (d, d), "y": (0, 0)}), shear),
            signed(lambda d: affine(shear={"x": (0, 0), "y": (d, d)}), shear),
            signed(lambda t: affine(translate_percent={"x": (t, t), "y": (0, 0)}), shift),
            signed(lambda t: affine(translate_percent={"x": (0, 0), "y": (t, t)}), shift),
        ]
    return ops


def _seed_tree(transform: A.BasicTransform | BaseCompose, sequence: np.random.SeedSequence) -> None:
    """Seed ``transform`` from ``sequence`` and each part of a composition from its own child."""
    transform.set_random_seed(int(sequence.generate_state(1)[0]))
    if isinstance(transform, BaseCompose):
        for child, child_sequence in zip(
            transform.transforms, sequence.spawn(len(transform.transforms))
        ):
            _seed_tree(child, child_sequence)


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
        # every transform the same seed, which would correlate e.g. the flip and jitter coins
        # (or tie the signs of two RandAugment ops), so nested compositions are seeded too.
        children = np.random.SeedSequence(seed).spawn(len(self.joint.transforms) + 1)
        self.joint.set_random_seed(int(children[0].generate_state(1)[0]))
        for transform, child in zip(self.joint.transforms, children[1:]):
            _seed_tree(transform, child)

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
    policy: str | None = None,
    policy_ops: int = 2,
    policy_magnitude: float = 9,
    policy_geometric: bool = False,
) -> SegTransform:
    """Build the per-sample pipeline for training or evaluation.

    Train: resize to ``resize`` [H,W] (optional), random rescale by a factor in ``scale_range``,
    pad to ``crop_size`` (image 0, mask 255), random crop ``crop_size``, horizontal flip,
    ``policy`` (``randaugment``: ``policy_ops`` of :func:`randaugment_ops` at
    ``policy_magnitude``, geometric ones too with ``policy_geometric``; ``autoaugment``:
    torchvision's ImageNet AutoAugment policy, :class:`AutoAugmentImageNet`), colour jitter +
    Gaussian blur (``photometric``). Eval: only resize the image; the label keeps its full
    resolution (evaluation resizes logits to the label). Images are resampled with
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
    if policy is not None and policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)} or null, got {policy!r}")
    if policy is not None and policy_ops < 1:
        raise ValueError(f"policy_ops must be >= 1, got {policy_ops}")
    if policy is not None and not 0 <= policy_magnitude <= MAX_MAGNITUDE:
        raise ValueError(f"policy_magnitude must be in [0, 10], got {policy_magnitude}")
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
    if policy == "randaugment":
        ops = randaugment_ops(policy_magnitude, geometric=policy_geometric, interpolation=inter)
        steps.append(A.SomeOf(ops, n=policy_ops, replace=True, p=1.0))
    elif policy == "autoaugment":
        steps.append(AutoAugmentImageNet())
    if photometric:
        steps.append(
            A.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.05, p=0.8)
        )
        steps.append(A.GaussianBlur(blur_limit=(3, 7), sigma_limit=(0.1, 2.0), p=0.5))
    return SegTransform(steps, [])
