"""ImageNet normalisation between uint8 HxWx3 arrays and float (3,H,W) tensors."""

from __future__ import annotations

import numpy as np
import torch

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """Turn an RGB uint8 image (H,W,3) into a normalised float32 tensor (3,H,W)."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return tensor.sub_(mean).div_(std)


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """Undo :func:`to_tensor`: (3,H,W) or (B,3,H,W) float -> same shape uint8 in [0, 255].

    Example::

        >>> rgb = denormalize(batch["image"][0]).permute(1, 2, 0).numpy()  # H,W,3 uint8
    """
    shape = (3, 1, 1) if image.dim() == 3 else (1, 3, 1, 1)
    mean = torch.tensor(MEAN, device=image.device).view(shape)
    std = torch.tensor(STD, device=image.device).view(shape)
    return (image * std + mean).mul(255.0).round().clamp(0, 255).to(torch.uint8)
