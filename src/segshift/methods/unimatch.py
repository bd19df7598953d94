"""UniMatch: weak-to-strong consistency with two strong views and a feature-perturbation stream
(Yang et al., "Revisiting Weak-to-Strong Consistency in Semi-Supervised Semantic Segmentation",
CVPR 2023; LiheYoung/UniMatch ``unimatch.py``; docs/METHODS.md, "FixMatch and UniMatch").

One network, no EMA teacher. Per step, with labeled images x (B_l,3,H,W), labels y (B_l,H,W),
unlabeled weak crops u_w (B,3,H,W) and a second unlabeled batch m_w (the ``unlabeled_mix``
stream: by default an independent pass over ``data.streams.unlabeled``, as UniMatch's
``loader_u_mix``)::

    y_m, c_m        = argmax / max softmax model.eval()(m_w)           no grad (eval-mode pass)
    p_x, p_w, p_fp  = model(cat(x, u_w), perturb=channel_dropout(0.5, keep_clean=True))
                                        p_fp: the unlabeled half decoded from dropped-out features
    y_w, c_w        = argmax / max softmax(p_w), detached              (train-mode pass, as official)
    u_sk            = strong_k(u_w) with box_k filled from strong_k(m_w),   k = 1, 2
    L_sk            = sum(CE(model(u_sk), y_k) [c_k >= tau] valid_k) / sum(valid_k)
                      y_k, c_k, valid_k = the weak targets with the mix targets inside box_k
    L_fp            = the same for p_fp with the un-mixed targets
    L               = (L_x + 0.25 L_s1 + 0.25 L_s2 + 0.5 L_fp) / 2

Strong view: colour jitter 0.5 (hue 0.25) p 0.8, grayscale p 0.2, blur sigma U(0.1, 2) p 0.5, then
with p 0.5 a CutMix box of area U(0.02, 0.4) and aspect U(0.3, 1/0.3) (``cutmix_box``). ``valid``
is False only on crop padding. tau: 0.95 (Pascal, COCO, the default); Cityscapes uses 0 (the
recipe). L_x: CE, or OHEM with ``labeled.ohem`` (Cityscapes). The strong views are made on the
batch from the weak crop (official: in the data loader from the same crop; the same images).
``eval_model()`` is the trained network. ``classdist`` adds the class-distribution contrast
(``common/classdist.py``) on the clean half's features of x (labels) and u_w (y_w where c_w
reaches ``classdist.confidence``).

Example config::

    method: {name: unimatch, params: {threshold: 0.95, labeled: {streams: [labeled]}}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from segshift.methods.base import Method
from segshift.methods.common.augment import StrongAugment, step_seed
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
from segshift.models.parts import channel_dropout
from segshift.registry import METHODS

VIEW_SALTS, FP_SALT = (10, 20), 40  # step_seed salts: each strong view uses salt .. salt + 2


@dataclass
class UniMatchParams:
    """UniMatch hyperparameters; defaults from the paper and ``configs/pascal.yaml``."""

    labeled: Labeled = field(default_factory=Labeled)
    threshold: float = 0.95  # conf_thresh: Pascal / COCO 0.95, Cityscapes 0
    weight_s1: float = 0.25
    weight_s2: float = 0.25
    weight_fp: float = 0.5
    fp_dropout: float = 0.5  # channel dropout of the feature-perturbation stream
    cutmix_p: float = 0.5
    augment: StrongAugment = field(default_factory=unimatch_strong)
    classdist: ClassDistParams = field(default_factory=ClassDistParams)  # off at weight 0


@METHODS.register("unimatch")
class UniMatch(Method):
    """One network trained with two strong views and a feature-perturbed view of unlabeled data."""

    stream_defaults = {"unlabeled_mix": "unlabeled"}
    Params = UniMatchParams

    def __init__(self, cfg: DictConfig, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__(cfg, num_classes, ignore_index)
        self.streams = (*semi_streams(self.params.labeled), "unlabeled_mix")
        self.model = build_model(cfg.model, num_classes)
        self.build_classdist(self.model)

    def training_step(self, batch: dict[str, dict[str, Any]], step: int) -> dict[str, torch.Tensor]:
        p, align = self.params, self.model.align_corners
        labeled = labeled_batch(batch, p.labeled.streams)
        weak, mix_weak = batch["unlabeled"]["image"], batch["unlabeled_mix"]["image"]
        size = tuple(weak.shape[-2:])

        # the mix images' pseudo-labels come from an eval-mode pass (official)
        mix_targets = eval_mode_targets(self.model, batch["unlabeled_mix"], align)

        n_labeled = len(labeled["image"])
        with torch.random.fork_rng(devices=[weak.device] if weak.device.type == "cuda" else []):
            torch.manual_seed(step_seed(self.cfg.seed, step, FP_SALT))  # the dropout's draws
            both = self.model(
                torch.cat((labeled["image"], weak)),
                perturb=channel_dropout(p.fp_dropout, keep_clean=True),
                **self.feature_kwargs,
            )
        clean, perturbed = both["out"].chunk(2)
        pred_x, pred_w = clean[:n_labeled], clean[n_labeled:]
        pred_fp = perturbed[n_labeled:]
        targets = Targets.from_logits(pred_w, size, valid_mask(batch["unlabeled"]), align)

        views = [
            strong_view(weak, mix_weak, self.cfg.seed, step, salt, p.augment, p.cutmix_p)
            for salt in VIEW_SALTS
        ]
        images, boxes = zip(*views, strict=True)
        pred_s1, pred_s2 = self.model(torch.cat(images))["out"].chunk(2)

        loss_x = supervised_loss(
            pred_x, labeled["label"], p.labeled, self.ignore_index, align_corners=align
        )
        loss_s1 = targets.pasted(boxes[0], mix_targets).loss(pred_s1, p.threshold, align)
        loss_s2 = targets.pasted(boxes[1], mix_targets).loss(pred_s2, p.threshold, align)
        loss_fp = targets.loss(pred_fp, p.threshold, align)
        loss = (loss_x + p.weight_s1 * loss_s1 + p.weight_s2 * loss_s2 + p.weight_fp * loss_fp) / 2
        confident = (targets.confidence >= p.threshold) & targets.valid
        losses = {
            "loss": loss,
            "sup": loss_x.detach(),
            "s1": loss_s1.detach(),
            "s2": loss_s2.detach(),
            "fp": loss_fp.detach(),
            "confident": confident.float().mean(),
        }
        if self.classdist is not None:  # on the clean half of the features
            pseudo = self.classdist.confident(targets.label, targets.confidence, targets.valid)
            views = semi_views(both["feat"].chunk(2)[0], batch, p.labeled.streams, pseudo)
            losses = self.add_classdist(losses, *views)
        return losses

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        heads = self.feature_heads()
        return {"model": segmenter_optimizer(self.model, self.cfg.optim, extra_heads=heads)}

    def eval_model(self) -> nn.Module:
        return self.model
