"""Segmentation losses. Every loss ignores label 255 and, by default, averages over valid pixels."""

from __future__ import annotations

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
) -> torch.Tensor:
    """Pixel-wise cross-entropy of (B,C,h,w) logits against (B,H,W) labels.

    ``average="valid"`` divides by the number of non-ignored pixels (AdaptSegNet, ADVENT, UniMatch);
    ``average="all"`` divides by all pixels, ignored ones counting as 0 (mmseg, DAFormer, DACS mix).
    An all-ignored batch gives a zero loss that still has a graph.
    """
    logits = resize_logits(logits, tuple(target.shape[-2:]), align_corners)
    per_pixel = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="none")
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

    Keeps the valid pixels whose probability for the true class is below ``thresh``; if fewer than
    ``min_kept`` qualify, the threshold rises to the ``min_kept``-th smallest probability.
    """
    logits = resize_logits(logits, tuple(target.shape[-2:]), align_corners).float()
    per_pixel = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")
    valid = target != ignore_index
    num_valid = int(valid.sum())
    if num_valid == 0:
        return per_pixel.sum() * 0.0
    with torch.no_grad():
        prob = torch.softmax(logits, dim=1)
        true_prob = prob.gather(1, target.clamp(max=logits.shape[1] - 1).unsqueeze(1)).squeeze(1)
        true_prob = true_prob[valid]
        threshold = torch.tensor(thresh, device=logits.device)
        if min_kept > 0:
            k = min(num_valid, min_kept)
            kth = true_prob.kthvalue(k).values
            threshold = torch.maximum(threshold, kth)
        kept = true_prob <= threshold
    losses = per_pixel[valid][kept]
    return losses.mean() if losses.numel() else per_pixel.sum() * 0.0
