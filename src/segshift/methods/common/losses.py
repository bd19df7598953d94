"""Segmentation losses. Every loss ignores label 255 and, by default, averages over valid pixels."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def resize_logits(
    logits: torch.Tensor, size: tuple[int, int], align_corners: bool = False
) -> torch.Tensor:
    """Bilinearly resize (B,C,h,w) logits to ``size`` = (H, W) unless they already match.

    ``align_corners``: the model's protocol (``model.align_corners``; True in the DeepLab-v2 UDA
    line, False in mmseg/DAFormer/smp).
    """
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=align_corners)


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = 255,
    *,
    average: str = "valid",
    align_corners: bool = False,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pixel-wise cross-entropy of (B,C,h,w) logits against (B,H,W) labels.

    ``average="valid"`` divides by the number of non-ignored pixels (AdaptSegNet, ADVENT, UniMatch);
    ``average="all"`` divides by all pixels, ignored ones counting as 0 (mmseg, DAFormer, DACS mix).
    ``weight`` (B,H,W) multiplies each pixel's loss first (pseudo-label confidence weights).
    An all-ignored batch gives a zero loss that still has a graph.
    """
    logits = resize_logits(logits, tuple(target.shape[-2:]), align_corners)
    per_pixel = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="none")
    if weight is not None:
        per_pixel = per_pixel * weight
    if average == "all":
        return per_pixel.mean()
    if average != "valid":
        raise ValueError(f"average must be 'valid' or 'all', got {average!r}")
    valid = (target != ignore_index).sum()
    return per_pixel.sum() / valid.clamp(min=1)


def ohem_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = 255,
    *,
    thresh: float = 0.7,
    min_kept: int = 100_000,
    align_corners: bool = False,
) -> torch.Tensor:
    """Online hard example mining CE (as in CPS / UniMatch / U2PL's ``ProbOhemCrossEntropy2d``).

    Keeps the valid pixels whose probability for the true class is at most ``thresh``; if fewer
    than ``min_kept`` qualify, the threshold rises to the ``min_kept``-th smallest probability.
    As the official criterion, ``min_kept = 0`` mines nothing (plain CE over the valid pixels):
    the threshold is applied only inside its ``min_kept > 0`` branch. Likewise fewer valid pixels
    than ``min_kept`` keep them all. See docs/METHODS.md, "OHEM".
    """
    logits = resize_logits(logits, tuple(target.shape[-2:]), align_corners).float()
    per_pixel = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")
    valid = target != ignore_index
    num_valid = int(valid.sum())
    if num_valid == 0:
        return per_pixel.sum() * 0.0
    losses = per_pixel[valid]
    if min_kept <= 0 or min_kept > num_valid:
        return losses.mean()
    with torch.no_grad():
        prob = torch.softmax(logits, dim=1)
        true_prob = prob.gather(1, target.clamp(max=logits.shape[1] - 1).unsqueeze(1)).squeeze(1)
        true_prob = true_prob[valid]
        threshold = torch.maximum(
            torch.tensor(thresh, device=logits.device), true_prob.kthvalue(min_kept).values
        )
        kept = true_prob <= threshold
    losses = losses[kept]
    return losses.mean() if losses.numel() else per_pixel.sum() * 0.0


def entropy_map(probs: torch.Tensor) -> torch.Tensor:
    """Per-pixel entropy of (B,C,H,W) probabilities normalised by log C: (B,H,W) in [0, 1].

    ADVENT's ``entropy_loss`` is its mean (a uniform prediction gives 1, a one-hot 0).
    """
    return self_information(probs).sum(dim=1)


def self_information(probs: torch.Tensor) -> torch.Tensor:
    """ADVENT's weighted self-information map ``-p log p / log C`` per class: (B,C,H,W).

    The 1e-30 inside the log is ADVENT's ``prob_2_entropy``; base 2 and natural logs give the same
    ratio.
    """
    return -probs * torch.log(probs + 1e-30) / math.log(probs.shape[1])


def entropy_loss(logits: torch.Tensor) -> torch.Tensor:
    """MinEnt (Vu et al., CVPR 2019): mean normalised entropy of softmax(logits) over pixels."""
    return entropy_map(torch.softmax(logits.float(), dim=1)).mean()


def robust_entropy(logits: torch.Tensor, eta: float = 2.0, eps: float = 1e-8) -> torch.Tensor:
    """FDA's Charbonnier-penalised entropy (Yang & Soatto, CVPR 2020): mean of (H_n^2 + eps)^eta.

    H_n is the per-pixel entropy (natural log) of softmax(logits) divided by ln C (the official
    code hard-codes ln 19 = 2.9444); ``eps`` is added after squaring, as in the official code
    (the paper writes 0.001^2). FDA applies it to logits at feature resolution.
    """
    log_p = torch.log_softmax(logits.float(), dim=1)
    entropy = -(log_p.exp() * log_p).sum(dim=1) / math.log(logits.shape[1])
    return (entropy.pow(2) + eps).pow(eta).mean()
