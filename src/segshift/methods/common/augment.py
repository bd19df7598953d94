"""Batch-level strong augmentation on the device, and per-step random generators.

Images are RGB in [0, 1] (the batch contract), so nothing is de-normalised or re-normalised:
the model normalises its own input. Every random draw comes from the run seed, the step, a salt
and the process rank, so a resumed run repeats exactly the augmentations of an uninterrupted one.

Photometric ops from kornia, per sample (each image draws its own parameters and coins):
colour jitter (brightness, contrast, saturation, hue), grayscale, Gaussian blur. Geometry is not
touched, so labels stay aligned.

Defaults per method (see the method files): DACS jitter 0.25 (hue 0.25) with p 0.8, blur
sigma U(0.15, 1.15) with p 0.5 and a kernel of about 0.1 x the image side; DAFormer jitter 0.2;
UniMatch/FixMatch jitter 0.5 (hue 0.25) p 0.8, grayscale 0.2, blur sigma U(0.1, 2.0) p 0.5.

Example::

    strong = strong_augment(mixed, step_seed(cfg.seed, step, salt=1), StrongAugment())
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import kornia.augmentation as K
import torch
import torch.distributed as dist

_MIX = 0x9E3779B97F4A7C15


def step_seed(seed: int, step: int, salt: int = 0) -> int:
    """A 63-bit seed from (run seed, step, salt, rank): one independent stream per draw site."""
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    value = 0
    for part in (seed, step, salt, rank):
        value = (value * _MIX + int(part) + 1) % (1 << 63)
    return value


def step_generator(seed: int, step: int, salt: int = 0) -> torch.Generator:
    """A CPU generator seeded by :func:`step_seed` (masks, class choices, coin flips)."""
    return torch.Generator().manual_seed(step_seed(seed, step, salt))


@dataclass
class StrongAugment:
    """Parameters of :func:`strong_augment` (a method's ``Params`` can embed this)."""

    jitter: float = 0.25  # brightness, contrast and saturation strength
    hue: float = 0.25
    jitter_p: float = 0.8
    grayscale_p: float = 0.0
    blur_p: float = 0.5
    blur_sigma: list[float] = field(default_factory=lambda: [0.15, 1.15])


def blur_kernel(size: int) -> int:
    """DACS's kernel size for an image side: floor(ceil(0.1 S) - 0.5 + ceil(0.1 S) mod 2), odd."""
    tenth = math.ceil(0.1 * size)
    return max(3, math.floor(tenth - 0.5 + tenth % 2))


def strong_augment(images: torch.Tensor, seed: int, params: StrongAugment) -> torch.Tensor:
    """Colour jitter, grayscale and blur of (B,3,H,W) images in [0, 1], drawn from ``seed``.

    Returns a new tensor of the same shape, clamped to [0, 1]. The global RNG is left as it was.
    """
    ops: list[torch.nn.Module] = []
    if params.jitter_p > 0:
        s = params.jitter
        ops.append(K.ColorJitter(s, s, s, params.hue, p=params.jitter_p))
    if params.grayscale_p > 0:
        ops.append(K.RandomGrayscale(p=params.grayscale_p))
    if params.blur_p > 0:
        kernel = (blur_kernel(images.shape[-2]), blur_kernel(images.shape[-1]))
        sigma = tuple(params.blur_sigma)
        ops.append(K.RandomGaussianBlur(kernel, sigma, p=params.blur_p))
    if not ops:
        return images.clone()
    devices = [images.device] if images.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        out = images.float()
        for op in ops:
            out = op(out)
    return out.clamp(0.0, 1.0).to(images.dtype)
