"""DACS: Domain Adaptation via Cross-domain Mixed Sampling (Tranheden et al., WACV 2021).

An EMA teacher pseudo-labels each target image; half of the classes of the source image at the
same batch index (ClassMix) are pasted onto it, with their true labels. The student learns from
the source batch and from the mixed batch::

    M            = class_mix(y_s)                        (B,H,W), 1 on pasted source pixels
    y_hat, conf  = argmax / max softmax(teacher(x_t))    (B,H,W), teacher logits resized to H x W
    omega        = #(conf >= 0.968) / (B*H*W)            one scalar per batch
    x_m          = strong_aug(M x_s + (1-M) x_t)         colour jitter, blur (same geometry)
    y_m, w_m     = M y_s + (1-M) y_hat,  M + (1-M) omega
    L            = CE(student(x_s), y_s)                 mean over valid pixels
                 + mean_{B,H,W}[ w_m * CE(student(x_m), y_m) ]   ignored pixels count as 0

Then the teacher follows the student: theta_T <- a_t theta_T + (1 - a_t) theta_S with
a_t = min(1 - 1/(t+1), 0.99). Images are (B,3,H,W) RGB in [0, 1]; source and target batches must
have the same shape. The paper evaluates the student (vikolss/DACS ``evaluateUDA.py`` loads
``model``), so ``eval_model()`` is the student. The network has one classifier: an ``aux``
output (multi-level DeepLab-v2) is ignored.

Defaults follow the paper and ``configs/configUDA.json`` of vikolss/DACS. Deviations from the
official ``trainUDA.py``, each reachable by a parameter (the GPU recipe sets them):

- ``include_ignore`` (official: true): the official ClassMix keeps 255 among the candidate
  classes, so ignored source pixels are pasted (and count as 0 in the mixed loss). Default: left
  out, so only real classes are pasted.
- ``ema_parameters_only`` (official: true): the official EMA averages parameters only. Default:
  the whole state, BatchNorm statistics included.
- ``teacher_train_mode`` (official: true): the official teacher stays in ``train()``, so its
  BatchNorm normalises with the target batch's statistics. Default: the teacher predicts in eval
  mode, with the averaged running statistics.

Not reproduced: the official coins for jitter and blur are shared by the two images of a batch
(here each image draws its own, see ``common/augment.py``). ``mix_mask: cut`` gives the paper's
CutMix ablation (one box of half the image).

``classdist`` (``common/classdist.py``) adds the class-distribution contrast on the source images
(their labels) and the target images (the teacher's pseudo-labels at ``classdist.confidence``);
the student then also sees the clean target batch, one more forward and backward pass per step
(its BatchNorm statistics follow target batches too).

Example config::

    method: {name: dacs, params: {threshold: 0.968, mix_mask: class}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from segshift.methods.base import Method
from segshift.methods.common.augment import StrongAugment, step_generator, step_seed, strong_augment
from segshift.methods.common.classdist import ClassDistParams, FeatureView
from segshift.methods.common.ema import ema_update, make_teacher
from segshift.methods.common.losses import cross_entropy
from segshift.methods.common.mixing import MIX_MASKS, mix_masks, mixed_batch
from segshift.methods.common.optim import segmenter_optimizer
from segshift.methods.common.pseudo_label import WEIGHTINGS, pseudo_label
from segshift.models import build_model
from segshift.registry import METHODS

MASK_SALT = 1  # step_generator salts: one independent random stream per draw site
AUGMENT_SALT = 2


@dataclass
class DacsParams:
    """DACS hyperparameters; defaults from the paper / the official ``configUDA.json``."""

    alpha: float = 0.99  # EMA decay (``alpha_teacher``), with the 1 - 1/(t+1) warm-up
    threshold: float = 0.968  # confidence that counts a pseudo-label as reliable
    weighting: str = "fraction"  # "threshold_uniform" pixel weight: the share of reliable pixels
    mix_mask: str = "class"  # class (ClassMix) | cut (CutMix ablation)
    include_ignore: bool = False  # official: true (255 among the ClassMix candidates)
    ema_parameters_only: bool = False  # official: true (BatchNorm buffers never averaged)
    teacher_train_mode: bool = False  # official: true (teacher BN uses target-batch statistics)
    augment: StrongAugment = field(default_factory=StrongAugment)  # jitter 0.25 p 0.8, blur p 0.5
    classdist: ClassDistParams = field(default_factory=ClassDistParams)  # off at weight 0


@METHODS.register("dacs")
class Dacs(Method):
    """Student + EMA teacher trained on source batches and source-on-target mixed batches."""

    streams = ("source", "target")
    Params = DacsParams

    def __init__(self, cfg: DictConfig, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__(cfg, num_classes, ignore_index)
        self.check_choices(mix_mask=MIX_MASKS, weighting=WEIGHTINGS)
        self.model = build_model(cfg.model, num_classes)
        self.teacher = make_teacher(self.model)
        self.build_classdist(self.model)
        self.train()

    def train(self, mode: bool = True) -> Dacs:
        super().train(mode)
        if not self.params.teacher_train_mode:
            self.teacher.eval()  # segshift's policy: the teacher predicts with running statistics
        return self

    def training_step(self, batch: dict[str, dict[str, Any]], step: int) -> dict[str, torch.Tensor]:
        source, target = batch["source"], batch["target"]
        params, align = self.params, self.model.align_corners
        source_out = self.model(source["image"], **self.feature_kwargs)
        source_logits = source_out["out"]
        source_loss = cross_entropy(
            source_logits, source["label"], self.ignore_index, align_corners=align
        )

        with torch.no_grad():
            teacher_logits = self.teacher(target["image"])["out"]
        pseudo = pseudo_label(
            teacher_logits,
            size=tuple(target["image"].shape[-2:]),
            threshold=params.threshold,
            weighting=params.weighting,
            align_corners=align,
        )
        mask = mix_masks(
            params.mix_mask,
            source["label"],
            step_generator(self.cfg.seed, step, MASK_SALT),
            ignore_index=self.ignore_index,
            include_ignore=params.include_ignore,
        )
        image, label, weight = mixed_batch(source, target, pseudo, mask)
        image = strong_augment(image, step_seed(self.cfg.seed, step, AUGMENT_SALT), params.augment)
        mixed_loss = cross_entropy(
            self.model(image)["out"],
            label,
            self.ignore_index,
            average="all",  # as official: ignored (pasted 255) pixels count as 0
            weight=weight,
            align_corners=align,
        )

        losses = {
            "loss": source_loss + mixed_loss,
            "source": source_loss.detach(),
            "mixed": mixed_loss.detach(),
            "pseudo_weight": pseudo.weight.mean(),
        }
        if self.classdist is not None:
            target_feat = self.model(target["image"], return_feat=True)["feat"]
            target_label = self.classdist.confident(
                pseudo.label, pseudo.confidence, target.get("valid")
            )
            losses = self.add_classdist(
                losses,
                FeatureView(source_out["feat"], source["label"], source.get("domain")),
                FeatureView(target_feat, target_label, target.get("domain")),
            )
        return losses

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        heads = self.feature_heads()
        return {"model": segmenter_optimizer(self.model, self.cfg.optim, extra_heads=heads)}

    def after_step(self, step: int) -> None:
        ema_update(
            self.teacher,
            self.model,
            self.params.alpha,
            step,
            parameters_only=self.params.ema_parameters_only,
        )

    def eval_model(self) -> nn.Module:
        return self.model  # the paper evaluates the student, not the teacher
