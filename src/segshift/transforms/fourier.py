"""Fourier Domain Adaptation's amplitude swap (Yang & Soatto, "FDA", CVPR 2020).

The low-frequency amplitude of each source image is replaced by that of a target image, keeping
the source phase (its content). It runs on raw images, before any normalisation (the official
README insists); on segshift's [0, 1] images this is the official 0-255 computation scaled by
1/255, because the Fourier transform is linear and the swap is per channel.

Window, as the official torch code (``FDA_source_to_target``), not its centred numpy demo:
b = floor(min(H, W) * beta); in the unshifted spectrum the four corner blocks rows [0, b) and
[H-b, H), columns [0, b) and [W-b, W) are swapped, i.e. frequencies -b..b-1 in each axis.
The inverse is taken with ``irfft2`` (the half spectrum, as the legacy ``irfft`` did), which
makes the result real. Not clipped (neither is the official output).

Example::

    source_in_target = fda_swap(source["image"], target["image"], beta=0.01)
"""

from __future__ import annotations

import math

import torch


def fda_window(height: int, width: int, beta: float) -> int:
    """The half-width b of the swapped low-frequency block: floor(min(H, W) * beta)."""
    return math.floor(min(height, width) * beta)


def fda_swap(source: torch.Tensor, target: torch.Tensor, beta: float = 0.01) -> torch.Tensor:
    """(B,C,H,W) source images with the low-frequency amplitude of ``target`` (same shape).

    Image i takes the amplitude of target i. b = 0 returns the source unchanged (up to FFT
    round-off).
    """
    if source.shape != target.shape:
        raise ValueError(f"source {tuple(source.shape)} and target {tuple(target.shape)} differ")
    height, width = source.shape[-2:]
    b = fda_window(height, width, beta)
    spectrum = torch.fft.fft2(source.float())
    if b > 0:
        amplitude, phase = spectrum.abs(), spectrum.angle()
        target_amplitude = torch.fft.fft2(target.float()).abs()
        for rows in (slice(0, b), slice(height - b, height)):
            for cols in (slice(0, b), slice(width - b, width)):
                amplitude[..., rows, cols] = target_amplitude[..., rows, cols]
        spectrum = torch.polar(amplitude, phase)
    half = spectrum[..., : width // 2 + 1]
    return torch.fft.irfft2(half, s=(height, width)).to(source.dtype)
