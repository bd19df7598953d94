"""What the semi-supervised methods share: their labeled streams and the supervised loss.

Every semi-supervised method trains on one or more labeled streams plus the ``unlabeled`` one.
``labeled.streams`` names the labeled streams: ``[labeled]`` by default; ``[labeled, source]``
adds a synthetic labeled source (semi-supervised domain adaptation: sim + a few real labels +
unlabeled real). Their batches are concatenated into one (B = sum of the streams' batch sizes),
so BatchNorm sees them together and every labeled pixel counts the same; their crops must match.

The supervised loss is CE over valid pixels, or OHEM (CPS and UniMatch on Cityscapes: keep the
pixels whose true-class probability is at most max(0.7, the min_kept-th smallest)).

Example (a method's Params embeds ``Labeled``)::

    data = labeled_batch(batch, self.params.labeled.streams)        # image (B,3,H,W), label (B,H,W)
    loss = supervised_loss(logits, data["label"], self.params.labeled, align_corners=True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from segshift.errors import ConfigError
from segshift.methods.common.losses import cross_entropy, ohem_cross_entropy


@dataclass
class Labeled:
    """The labeled streams of a semi-supervised method and their loss (``method.params.labeled``)."""

    streams: list[str] = field(default_factory=lambda: ["labeled"])
    ohem: bool = False  # CPS / UniMatch Cityscapes recipes: true
    ohem_thresh: float = 0.7
    ohem_min_kept: int = 100_000  # per process (UniMatch: 200,000; CPS: 50,000 x batch / GPUs)


def semi_streams(labeled: Labeled, unlabeled: str = "unlabeled") -> tuple[str, ...]:
    """The streams a semi-supervised method reads: its labeled streams, then ``unlabeled``."""
    if not labeled.streams:
        raise ConfigError("method.params.labeled.streams: name at least one labeled stream")
    if unlabeled in labeled.streams:
        raise ConfigError(
            f"method.params.labeled.streams: '{unlabeled}' is the unlabeled stream, not a labeled one"
        )
    return (*labeled.streams, unlabeled)


def labeled_batch(batch: dict[str, dict[str, Any]], streams: list[str] | tuple[str, ...]) -> dict:
    """The labeled streams' ``image`` (B,3,H,W) and ``label`` (B,H,W) concatenated in order."""
    if len(streams) == 1:
        return batch[streams[0]]
    shapes = {name: tuple(batch[name]["image"].shape[-2:]) for name in streams}
    if len(set(shapes.values())) > 1:
        raise ConfigError(
            f"the labeled streams' crops differ ({shapes}); give them the same "
            "data.streams.<name>.crop_size"
        )
    return {key: torch.cat([batch[name][key] for name in streams]) for key in ("image", "label")}


def supervised_loss(
    logits: torch.Tensor,
    label: torch.Tensor,
    labeled: Labeled,
    ignore_index: int = 255,
    *,
    align_corners: bool = False,
) -> torch.Tensor:
    """CE over valid pixels of (B,C,h,w) logits against (B,H,W) labels, or OHEM (``labeled.ohem``)."""
    if labeled.ohem:
        return ohem_cross_entropy(
            logits,
            label,
            ignore_index,
            thresh=labeled.ohem_thresh,
            min_kept=labeled.ohem_min_kept,
            align_corners=align_corners,
        )
    return cross_entropy(logits, label, ignore_index, align_corners=align_corners)
