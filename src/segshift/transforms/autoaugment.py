"""AutoAugment for segmentation: torchvision's ImageNet policy, its geometric ops on the mask too.

AutoAugment (Cubuk et al., "AutoAugment: Learning Augmentation Strategies from Data", CVPR 2019)
as torchvision's ``AutoAugment(AutoAugmentPolicy.IMAGENET)`` applies it: one of the policy's 25
sub-policies is drawn uniformly; each of its two ops (name, probability, magnitude bin of 10) runs
with its probability, and an op with a direction takes a random sign. The sub-policy table is
read from torchvision itself. At bin b the strengths are torchvision's (l = b / 9):

    ShearX/Y     shear angle atan(0.3 l), about the top-left corner
    TranslateX/Y int(150/331 l W) or int(150/331 l H) pixels
    Rotate       30 l degrees
    Brightness, Color (saturation), Contrast, Sharpness   factor 1 + 0.9 l
    Posterize    8 - round(4 l) bits;  Solarize above 255 (1 - l)
    AutoContrast, Equalize, Invert   no magnitude

Each op is torchvision's own function (``torchvision.transforms.functional``). Photometric ops
change the image only. The geometric ones (shear, translate, rotate) move the image and the mask
by the same map, both sampled nearest (torchvision's default for AutoAugment), the image filled
with 0 and the mask with 255 (ignored). Draws come from the transform's seeded generator, so a
sample's augmentation replays exactly.

Example::

    >>> steps.append(AutoAugmentImageNet())     # in an albumentations pipeline, after the crop
    >>> out = AutoAugmentImageNet()(image=rgb_uint8, mask=train_ids_uint8)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import albumentations as A
import numpy as np
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import AutoAugment, AutoAugmentPolicy, InterpolationMode

IGNORE_INDEX = 255
NUM_BINS = 10  # torchvision's AutoAugment magnitude bins
GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
SIGNED = (*GEOMETRIC, "Brightness", "Color", "Contrast", "Sharpness")
Op = tuple[str, float]  # (name, signed magnitude)


def magnitude(name: str, bin_index: int | None, size: tuple[int, int]) -> float:
    """The unsigned magnitude of op ``name`` at ``bin_index`` (0-9) for an image of ``size``
    (H, W); 0 for the ops without one."""
    if bin_index is None:
        return 0.0
    level = bin_index / (NUM_BINS - 1)
    if name in ("ShearX", "ShearY"):
        return 0.3 * level
    if name == "TranslateX":
        return 150.0 / 331.0 * size[1] * level
    if name == "TranslateY":
        return 150.0 / 331.0 * size[0] * level
    if name == "Rotate":
        return 30.0 * level
    if name in ("Brightness", "Color", "Contrast", "Sharpness"):
        return 0.9 * level
    if name == "Posterize":
        return float(8 - round(4 * level))
    if name == "Solarize":  # 255 (1 - l), exact where it is an integer
        return 255.0 * (NUM_BINS - 1 - bin_index) / (NUM_BINS - 1)
    return 0.0


def _geometric(
    x: torch.Tensor, name: str, value: float, mode: InterpolationMode, fill: list[float]
) -> torch.Tensor:
    if name == "Rotate":
        return TF.rotate(x, value, interpolation=mode, fill=fill)
    shear = math.degrees(math.atan(value))
    shears = {"ShearX": [shear, 0.0], "ShearY": [0.0, shear]}.get(name, [0.0, 0.0])
    shifts = {"TranslateX": [int(value), 0], "TranslateY": [0, int(value)]}.get(name, [0, 0])
    center = [0, 0] if name in ("ShearX", "ShearY") else None  # torchvision shears about (0, 0)
    return TF.affine(
        x, angle=0.0, translate=shifts, scale=1.0, shear=shears, interpolation=mode, fill=fill,
        center=center,
    )  # fmt: skip


def _photometric(x: torch.Tensor, name: str, value: float) -> torch.Tensor:
    enhance = {
        "Brightness": TF.adjust_brightness,
        "Color": TF.adjust_saturation,
        "Contrast": TF.adjust_contrast,
        "Sharpness": TF.adjust_sharpness,
    }
    if name in enhance:
        return enhance[name](x, 1.0 + value)
    if name == "Posterize":
        return TF.posterize(x, int(value))
    if name == "Solarize":
        return TF.solarize(x, value)
    plain = {"AutoContrast": TF.autocontrast, "Equalize": TF.equalize, "Invert": TF.invert}
    if name in plain:
        return plain[name](x)
    raise ValueError(f"unknown AutoAugment op {name!r}")


def apply_ops(image: np.ndarray, ops: Sequence[Op]) -> np.ndarray:
    """``ops`` in order on ``image`` (H,W,3 uint8): the image's side of the policy."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    for name, value in ops:
        if name in GEOMETRIC:
            x = _geometric(x, name, value, InterpolationMode.NEAREST, [0.0] * x.shape[0])
        else:
            x = _photometric(x, name, value)
    return x.permute(1, 2, 0).numpy()


def move_mask(mask: np.ndarray, ops: Sequence[Op]) -> np.ndarray:
    """The geometric ones of ``ops`` on ``mask`` (H,W uint8): nearest, new pixels 255."""
    geometric = [(name, value) for name, value in ops if name in GEOMETRIC]
    if not geometric:
        return mask
    y = torch.from_numpy(np.ascontiguousarray(mask))[None]
    for name, value in geometric:
        y = _geometric(y, name, value, InterpolationMode.NEAREST, [float(IGNORE_INDEX)])
    return y[0].numpy()


class AutoAugmentImageNet(A.DualTransform):
    """torchvision's ImageNet AutoAugment policy on an image and its mask (module docstring)."""

    def __init__(self, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.policies = AutoAugment(AutoAugmentPolicy.IMAGENET).policies

    def draw(self, size: tuple[int, int]) -> list[Op]:
        """The ops of one draw, with signed magnitudes, for an image of ``size`` (H, W)."""
        ops, rng = [], self.py_random
        for name, probability, bin_index in self.policies[rng.randrange(len(self.policies))]:
            if rng.random() > probability:
                continue
            value = magnitude(name, bin_index, size)
            if name in SIGNED and rng.random() < 0.5:
                value = -value
            ops.append((name, value))
        return ops

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict:
        return {"ops": self.draw(tuple(params["shape"][:2]))}

    def apply(self, img: np.ndarray, ops: Sequence[Op] = (), **params: Any) -> np.ndarray:
        return apply_ops(img, ops)

    def apply_to_mask(self, mask: np.ndarray, ops: Sequence[Op] = (), **params: Any) -> np.ndarray:
        return move_mask(mask, ops)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ()
