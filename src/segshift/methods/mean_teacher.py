"""Mean Teacher for semantic segmentation (Tarvainen & Valpola, "Mean teachers are better role
models", NeurIPS 2017), as TorchSemiSeg trains it (charlesCXK/TorchSemiSeg
``exp.voc/voc8.res50v3+.MeanTeacher``; docs/METHODS.md, "Mean Teacher").

A student and its exponential-moving-average teacher see the same images: the labeled batch x
(B_l,3,H,W) with labels y (B_l,H,W) and the unlabeled batch u (B,3,H,W)::

    s      = student(cat(x, u)),   t = teacher(cat(x, u))   (no grad), logits at image size
    L      = CE(s[:B_l], y) + w(t) * mean_{B,C,H,W} (softmax(s) - softmax(t))^2
    theta_T <- a theta_T + (1 - a) theta_S                 after each step, a = 0.99

TorchSemiSeg's defaults: w = 100, constant (``rampup_iters: 0``), and a constant EMA decay (no
1 - 1/(t+1) warm-up) over the parameters only. ``rampup_iters`` > 0 gives the sigmoid ramp-up of
the Mean Teacher paper, w(t) = w * exp(-5 (1 - min(t, T) / T)^2). The consistency covers the
labeled images too (official). The student is evaluated (official ``Network.forward`` returns
``branch1`` in eval mode).

Deviations, each a parameter: ``teacher_train_mode`` (official: true, the teacher's BatchNorm uses
batch statistics; default: the teacher predicts in eval mode with averaged statistics, the
project's policy, see dacs.py), ``ema_parameters_only`` (official: true; default: the whole
state, BatchNorm statistics included, which an eval-mode teacher needs) and ``separate_passes``
(official: true, ``train.py`` calls the network once on x and once on u, so BatchNorm normalises
each batch with its own statistics; default: one pass over cat(x, u), as the other
semi-supervised methods here).

Example config::

    method: {name: mean_teacher, params: {weight: 100, alpha: 0.99}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from segshift.methods.base import Method
from segshift.methods.common.consistency import sigmoid_rampup, softmax_mse
from segshift.methods.common.ema import ema_update, make_teacher
from segshift.methods.common.losses import resize_logits
from segshift.methods.common.optim import segmenter_optimizer
from segshift.methods.common.semi import Labeled, labeled_batch, semi_streams, supervised_loss
from segshift.models import build_model
from segshift.registry import METHODS


@dataclass
class MeanTeacherParams:
    """Mean Teacher hyperparameters; defaults from TorchSemiSeg's VOC config."""

    labeled: Labeled = field(default_factory=Labeled)
    weight: float = 100.0  # unsup_weight
    rampup_iters: int = 0  # 0: constant weight (TorchSemiSeg); > 0: sigmoid ramp-up
    alpha: float = 0.99  # ema_decay
    ema_warmup: bool = False  # TorchSemiSeg: constant decay
    teacher_train_mode: bool = False  # official: true
    ema_parameters_only: bool = False  # official: true
    separate_passes: bool = False  # official: true (x and u through the networks one by one)


@METHODS.register("mean_teacher")
class MeanTeacher(Method):
    """A student trained on labels and on consistency with its EMA teacher."""

    Params = MeanTeacherParams

    def __init__(self, cfg: DictConfig, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__(cfg, num_classes, ignore_index)
        self.streams = semi_streams(self.params.labeled)
        self.model = build_model(cfg.model, num_classes)
        self.teacher = make_teacher(self.model)
        self.train()

    def train(self, mode: bool = True) -> MeanTeacher:
        super().train(mode)
        if not self.params.teacher_train_mode:
            self.teacher.eval()
        return self

    def training_step(self, batch: dict[str, dict[str, Any]], step: int) -> dict[str, torch.Tensor]:
        p, align = self.params, self.model.align_corners
        labeled = labeled_batch(batch, p.labeled.streams)
        parts = (labeled["image"], batch["unlabeled"]["image"])
        if not p.separate_passes:
            parts = (torch.cat(parts),)
        size = tuple(parts[0].shape[-2:])
        student = torch.cat([resize_logits(self.model(x)["out"], size, align) for x in parts])
        with torch.no_grad():
            teacher = torch.cat([resize_logits(self.teacher(x)["out"], size, align) for x in parts])
        n_labeled = len(labeled["image"])
        loss_sup = supervised_loss(
            student[:n_labeled], labeled["label"], p.labeled, self.ignore_index, align_corners=align
        )
        loss_cons = softmax_mse(student, teacher)
        weight = p.weight * sigmoid_rampup(step, p.rampup_iters)
        return {
            "loss": loss_sup + weight * loss_cons,
            "sup": loss_sup.detach(),
            "consistency": loss_cons.detach(),
            "weight": torch.tensor(weight),
        }

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": segmenter_optimizer(self.model, self.cfg.optim)}

    def after_step(self, step: int) -> None:
        ema_update(
            self.teacher,
            self.model,
            self.params.alpha,
            step,
            warmup=self.params.ema_warmup,
            parameters_only=self.params.ema_parameters_only,
        )

    def eval_model(self) -> nn.Module:
        return self.model
