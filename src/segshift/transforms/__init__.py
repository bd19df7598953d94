"""Per-sample augmentation pipelines and the uint8 <-> [0, 1] tensor conversions."""

from segshift.transforms.normalize import to_tensor, to_uint8
from segshift.transforms.pipeline import SegTransform, build_transform

__all__ = ["SegTransform", "build_transform", "to_tensor", "to_uint8"]
