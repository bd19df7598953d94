"""CPS: cross pseudo supervision (Chen et al., "Semi-Supervised Semantic Segmentation with Cross
Pseudo Supervision", CVPR 2021; charlesCXK/TorchSemiSeg ``exp.city/city8.res50v3+.CPS(+CutMix)``;
docs/METHODS.md, "CPS").

Two networks of the same architecture with different initialisations (left and right; with a
pretrained encoder only their heads differ, as in the official code). Each is supervised on the
labeled images and by the other's hard pseudo-labels. Logits are resized to the image size first.

Plain CPS (``cutmix: false``), labeled x (B_l,3,H,W), y (B_l,H,W), unlabeled u (B,3,H,W)::

    P_k   = cat(f_k(x), f_k(u))                k = l, r  (labeled and unlabeled in separate passes)
    L_cps = CE(P_l, argmax P_r) + CE(P_r, argmax P_l)     mean over all pixels, labeled ones too

CPS + CutMix (``cutmix: true``, the default), with a second unlabeled batch u' (the
``unlabeled_mix`` stream, by default an independent pass over ``data.streams.unlabeled``) and box
masks M (B,H,W) (``box_masks``: 3 boxes of total area U(0.25, 0.5), toggled, 1 = take u')::

    Y_k   = argmax( f_k(u) (1 - M) + f_k(u') M )         no grad, train mode (as official)
    L_cps = CE(f_l(u (1 - M) + u' M), Y_r) + CE(f_r(u (1 - M) + u' M), Y_l)

Total: L = L_sup(f_l) + L_sup(f_r) + weight * L_cps, one optimizer per network, stepped together.
L_sup: CE, or OHEM with ``labeled.ohem`` (Cityscapes). Weights: Cityscapes 6 (CPS) / 5 (CutMix),
VOC 1.5 / 1.0; the default is 1.0 with CutMix (VOC). ``eval_model()`` is the left network
(the official ``Network.forward`` evaluates ``branch1``).

Example config::

    method: {name: cps, params: {cutmix: true, weight: 1.0}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from segshift.methods.base import Method
from segshift.methods.common.augment import step_generator
from segshift.methods.common.losses import cross_entropy, resize_logits
from segshift.methods.common.mixing import box_masks, mix
from segshift.methods.common.optim import segmenter_optimizer
from segshift.methods.common.semi import Labeled, labeled_batch, semi_streams, supervised_loss
from segshift.models import build_model
from segshift.registry import METHODS

MASK_SALT = 1


@dataclass
class CpsParams:
    """CPS hyperparameters; defaults: the VOC CPS+CutMix config of TorchSemiSeg."""

    labeled: Labeled = field(default_factory=Labeled)
    weight: float = 1.0  # cps_weight: Cityscapes 6 (plain) / 5 (CutMix); VOC 1.5 / 1.0
    cutmix: bool = True
    prop_range: list[float] = field(default_factory=lambda: [0.25, 0.5])
    n_boxes: int = 3


@METHODS.register("cps")
class Cps(Method):
    """Two networks, each trained on labels and on the other's argmax."""

    stream_defaults = {"unlabeled_mix": "unlabeled"}
    Params = CpsParams

    def __init__(self, cfg: DictConfig, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__(cfg, num_classes, ignore_index)
        streams = semi_streams(self.params.labeled)
        self.streams = (*streams, "unlabeled_mix") if self.params.cutmix else streams
        self.model = build_model(cfg.model, num_classes)  # left (branch 1): evaluated
        self.model_r = build_model(cfg.model, num_classes)  # right: another random init

    def _logits(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """(B,C,H,W) logits at the input's size."""
        return resize_logits(model(images)["out"], tuple(images.shape[-2:]), model.align_corners)

    def training_step(self, batch: dict[str, dict[str, Any]], step: int) -> dict[str, torch.Tensor]:
        p = self.params
        labeled = labeled_batch(batch, p.labeled.streams)
        u = batch["unlabeled"]["image"]
        nets = (self.model, self.model_r)
        if p.cutmix:
            u_mix = batch["unlabeled_mix"]["image"]
            generator = step_generator(self.cfg.seed, step, MASK_SALT)
            masks = box_masks(
                len(u),
                tuple(u.shape[-2:]),
                generator,
                prop_range=tuple(p.prop_range),
                n_boxes=p.n_boxes,
            ).to(u.device)
            with torch.no_grad():
                targets = [
                    mix(masks, self._logits(net, u_mix), self._logits(net, u)).argmax(1)
                    for net in nets
                ]
            mixed = mix(masks, u_mix, u)
            preds = [self._logits(net, mixed) for net in nets]
            sup = [self._logits(net, labeled["image"]) for net in nets]
        else:
            sup = [self._logits(net, labeled["image"]) for net in nets]
            preds = [torch.cat((s, self._logits(net, u))) for s, net in zip(sup, nets, strict=True)]
            targets = [pred.detach().argmax(1) for pred in preds]
        align = self.model.align_corners
        loss_sup = [
            supervised_loss(s, labeled["label"], p.labeled, self.ignore_index, align_corners=align)
            for s in sup
        ]
        loss_cps = cross_entropy(preds[0], targets[1], average="all") + cross_entropy(
            preds[1], targets[0], average="all"
        )
        return {
            "loss": loss_sup[0] + loss_sup[1] + p.weight * loss_cps,
            "sup_l": loss_sup[0].detach(),
            "sup_r": loss_sup[1].detach(),
            "cps": loss_cps.detach(),
            "agree": (targets[0] == targets[1]).float().mean(),
        }

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            "model": segmenter_optimizer(self.model, self.cfg.optim),
            "model_r": segmenter_optimizer(self.model_r, self.cfg.optim),
        }

    def eval_model(self) -> nn.Module:
        return self.model
