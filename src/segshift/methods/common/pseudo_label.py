"""Pseudo-labels from a teacher's predictions: hard labels, confidences and pixel weights.

Weighting rules (``weighting``):

- ``"fraction"``: DACS / DAFormer. One scalar per batch, the share of pixels whose confidence is
  at least ``threshold`` (0.968), applied to every pixel (B,H,W).
- ``"threshold"``: FixMatch-style. Weight 1 where the confidence reaches ``threshold``, else 0.
- ``"confidence"``: the confidence itself.

Example::

    with torch.no_grad():
        pseudo = pseudo_label(teacher(target)["out"], size=(512, 512), threshold=0.968)
    loss = cross_entropy(student(mixed)["out"], pseudo.label, weight=pseudo.weight, average="all")
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from segshift.methods.common.losses import resize_logits

WEIGHTINGS = ("fraction", "threshold", "confidence")


@dataclass
class PseudoLabel:
    """``label`` (B,H,W) int64, ``confidence`` (B,H,W) max softmax, ``weight`` (B,H,W) float."""

    label: torch.Tensor
    confidence: torch.Tensor
    weight: torch.Tensor


@torch.no_grad()
def pseudo_label(
    logits: torch.Tensor,
    *,
    size: tuple[int, int] | None = None,
    threshold: float = 0.968,
    weighting: str = "fraction",
    align_corners: bool = False,
) -> PseudoLabel:
    """Hard pseudo-labels of (B,C,h,w) ``logits``, resized to ``size`` first (see module doc)."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if size is not None:
        logits = resize_logits(logits, size, align_corners)
    confidence, label = torch.softmax(logits.float(), dim=1).max(dim=1)
    if weighting == "fraction":
        weight = (confidence >= threshold).float().mean().expand_as(confidence).clone()
    elif weighting == "threshold":
        weight = (confidence >= threshold).float()
    else:
        weight = confidence.clone()
    return PseudoLabel(label, confidence, weight)


def ignore_margins(weight: torch.Tensor, top: int = 0, bottom: int = 0) -> torch.Tensor:
    """Zero the weight of the ``top`` and ``bottom`` rows (DAFormer: 15 and 120 at 512x512 crops,
    where the ego car's hood and the image border make pseudo-labels unreliable)."""
    weight = weight.clone()
    if top > 0:
        weight[..., :top, :] = 0
    if bottom > 0:
        weight[..., weight.shape[-2] - bottom :, :] = 0
    return weight
