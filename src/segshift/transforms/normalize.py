"""Conversions between uint8 HxWx3 RGB arrays and the batch format: float (3,H,W) RGB in [0, 1].

Images stay un-normalised until they enter a network: each model normalises its input the way
its pretrained weights expect (``segshift.models.normalization``). Batch augmentation, mixing and
Fourier swaps therefore work on plain [0, 1] images.
"""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """Turn an RGB uint8 image (H,W,3) into a float32 tensor (3,H,W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """Undo :func:`to_tensor`: (3,H,W) or (B,3,H,W) float in [0, 1] -> same shape uint8.

    Example::

        >>> rgb = to_uint8(batch["image"][0]).permute(1, 2, 0).numpy()  # H,W,3 uint8
    """
    return image.mul(255.0).round().clamp(0, 255).to(torch.uint8)
