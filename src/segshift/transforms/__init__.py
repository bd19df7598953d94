"""Per-sample augmentation pipelines and ImageNet normalisation."""

from segshift.transforms.normalize import MEAN, STD, denormalize, to_tensor
from segshift.transforms.pipeline import SegTransform, build_transform

__all__ = ["MEAN", "STD", "SegTransform", "build_transform", "denormalize", "to_tensor"]
