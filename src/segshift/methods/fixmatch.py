"""FixMatch for semantic segmentation (Sohn et al., "FixMatch: Simplifying Semi-Supervised
Learning with Consistency and Confidence", NeurIPS 2020), as the UniMatch repository trains it for
segmentation (LiheYoung/UniMatch ``fixmatch.py``; docs/METHODS.md, "FixMatch and UniMatch").

One network. Per step, with labeled images x (B_l,3,H,W), labels y (B_l,H,W), unlabeled weak crops
u_w (B,3,H,W) and a second unlabeled batch m_w (``unlabeled_mix``: by default an independent pass
over ``data.streams.unlabeled``)::

    y_m, c_m    = argmax / max softmax model.eval()(m_w)            no grad
    p_x, p_w    = model(cat(x, u_w))                                 p_w detached -> y_w, c_w
    u_s         = strong(u_w) with a CutMix box filled from strong(m_w)
    L_s         = sum(CE(model(u_s), y) [c >= tau] valid) / sum(valid)
                  y, c, valid = the weak targets with the mix targets inside the box
    L           = (L_x + L_s) / 2

Strong view: colour jitter 0.5 (hue 0.25) p 0.8, grayscale p 0.2, blur sigma U(0.1, 2) p 0.5, and
with p 0.5 a CutMix box (UniMatch's ``obtain_cutmix_box``). tau = 0.95, the paper's threshold.
``valid`` is False only on crop padding. L_x: CE, or OHEM with ``labeled.ohem``. ``classdist``
adds the class-distribution contrast (``common/classdist.py``) on the clean pass's features of
x (labels) and u_w (y_w where c_w reaches ``classdist.confidence``).

Example config::

    method: {name: fixmatch, params: {threshold: 0.95}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from segshift.methods.base import Method
from segshift.methods.common.augment import StrongAugment
from segshift.methods.common.classdist import ClassDistParams, semi_views
from segshift.methods.common.consistency import (
    Targets,
    eval_mode_targets,
    strong_view,
    unimatch_strong,
    valid_mask,
)
from segshift.methods.common.optim import segmenter_optimizer
from segshift.methods.common.semi import Labeled, labeled_batch, semi_streams, supervised_loss
from segshift.models import build_model
from segshift.registry import METHODS

STRONG_SALT = 10  # step_seed salts STRONG_SALT .. STRONG_SALT + 2 (see strong_view)


@dataclass
class FixMatchParams:
    """FixMatch hyperparameters (the paper's threshold, UniMatch's segmentation recipe)."""

    labeled: Labeled = field(default_factory=Labeled)
    threshold: float = 0.95
    weight_u: float = 1.0  # L = (L_x + weight_u * L_s) / 2
    cutmix_p: float = 0.5
    augment: StrongAugment = field(default_factory=unimatch_strong)
    classdist: ClassDistParams = field(default_factory=ClassDistParams)  # off at weight 0


@METHODS.register("fixmatch")
class FixMatch(Method):
    """One network trained on labeled images and confident weak-to-strong pseudo-labels."""

    stream_defaults = {"unlabeled_mix": "unlabeled"}
    Params = FixMatchParams

    def __init__(self, cfg: DictConfig, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__(cfg, num_classes, ignore_index)
        self.streams = (*semi_streams(self.params.labeled), "unlabeled_mix")
        self.model = build_model(cfg.model, num_classes)
        self.build_classdist(self.model)

    def training_step(self, batch: dict[str, dict[str, Any]], step: int) -> dict[str, torch.Tensor]:
        p, align, seed = self.params, self.model.align_corners, self.cfg.seed
        labeled = labeled_batch(batch, p.labeled.streams)
        weak, mix_weak = batch["unlabeled"]["image"], batch["unlabeled_mix"]["image"]
        size = tuple(weak.shape[-2:])

        # the mix images' pseudo-labels come from an eval-mode pass (official)
        mix_targets = eval_mode_targets(self.model, batch["unlabeled_mix"], align)

        n_labeled = len(labeled["image"])
        outputs = self.model(torch.cat((labeled["image"], weak)), **self.feature_kwargs)
        pred_x, pred_w = outputs["out"][:n_labeled], outputs["out"][n_labeled:]
        targets = Targets.from_logits(pred_w, size, valid_mask(batch["unlabeled"]), align)

        strong, box = strong_view(weak, mix_weak, seed, step, STRONG_SALT, p.augment, p.cutmix_p)
        pred_s = self.model(strong)["out"]

        loss_x = supervised_loss(
            pred_x, labeled["label"], p.labeled, self.ignore_index, align_corners=align
        )
        loss_s = targets.pasted(box, mix_targets).loss(pred_s, p.threshold, align)
        confident = (targets.confidence >= p.threshold) & targets.valid
        losses = {
            "loss": (loss_x + p.weight_u * loss_s) / 2,
            "sup": loss_x.detach(),
            "unsup": loss_s.detach(),
            "confident": confident.float().mean(),
        }
        if self.classdist is not None:
            pseudo = self.classdist.confident(targets.label, targets.confidence, targets.valid)
            views = semi_views(outputs["feat"], batch, p.labeled.streams, pseudo)
            losses = self.add_classdist(losses, *views)
        return losses

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        heads = self.feature_heads()
        return {"model": segmenter_optimizer(self.model, self.cfg.optim, extra_heads=heads)}

    def eval_model(self) -> nn.Module:
        return self.model
