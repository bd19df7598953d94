"""Supervised training on labeled streams: source-only, target oracle, labeled-only baselines and
the student of the synthetic-teacher loop.

Cross-entropy over valid pixels (optionally OHEM as in CPS/UniMatch). ``streams`` trains on
several labeled streams at once (the loop's student: ``[source, target]`` with pseudo-labeled
target images, their share of the batch set by the streams' batch sizes): the streams' images
(B_i,3,H,W) are concatenated into one batch, so BatchNorm sees them together and every labeled
pixel counts the same; their crops must match. ``mix_weight`` > 0 adds, as the loop's
optional student noise, ``mix_weight`` times the CE on CutMix images: a box of half of each image
of the first stream pasted onto the same-index image of the second, with both parts' labels
(``mix_mask: class`` pastes half of the first image's classes instead, ClassMix). With ``multi_level`` models
(DeepLab-v2 with the layer3 classifier, AdaptSegNet) the auxiliary output adds ``aux_weight`` times
its own CE (AdaptSegNet's lambda_seg = 0.1). ``classdist`` adds the class-distribution contrast
(``common/classdist.py``) on the images of every stream, their histograms from their labels
(pseudo-labels of the loop's student: the unkept pixels are 255 and do not count).

Example config::

    method: {name: supervised, params: {stream: labeled, ohem: false}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from segshift.errors import ConfigError
from segshift.methods.base import Method
from segshift.methods.common.augment import step_generator
from segshift.methods.common.classdist import ClassDistParams, stream_views
from segshift.methods.common.losses import cross_entropy, ohem_cross_entropy
from segshift.methods.common.mixing import MIX_MASKS, mix, mix_masks
from segshift.methods.common.optim import segmenter_optimizer
from segshift.models import build_model
from segshift.registry import METHODS

MIX_SALT = 1  # step_generator salt of the mixing masks


@dataclass
class SupervisedParams:
    stream: str = "labeled"
    streams: list[str] | None = None  # several labeled streams as one batch (overrides stream)
    mix_weight: float = 0.0  # CE on first-stream-on-second CutMix images (needs two streams)
    mix_mask: str = "cut"  # cut | class
    ohem: bool = False
    ohem_thresh: float = 0.7
    ohem_min_kept: int = 100_000
    aux_weight: float = 0.1
    loss_average: str = "valid"
    classdist: ClassDistParams = field(default_factory=ClassDistParams)  # off at weight 0


@METHODS.register("supervised")
class Supervised(Method):
    """Plain cross-entropy training of one segmentation network."""

    Params = SupervisedParams

    def __init__(self, cfg: DictConfig, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__(cfg, num_classes, ignore_index)
        self.streams = tuple(self.params.streams or (self.params.stream,))
        self.check_choices(mix_mask=MIX_MASKS)
        if self.params.mix_weight > 0 and len(self.streams) != 2:
            raise ConfigError(
                "method.params.mix_weight needs two streams (method.params.streams: "
                f"[source, target]); got {list(self.streams)}"
            )
        self.model = build_model(cfg.model, num_classes)
        self.build_classdist(self.model)

    def _loss(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        if self.params.ohem:
            return ohem_cross_entropy(
                logits,
                label,
                self.ignore_index,
                thresh=self.params.ohem_thresh,
                min_kept=self.params.ohem_min_kept,
                align_corners=self.model.align_corners,
            )
        return cross_entropy(
            logits,
            label,
            self.ignore_index,
            average=self.params.loss_average,
            align_corners=self.model.align_corners,
        )

    def training_step(self, batch: dict[str, dict[str, Any]], step: int) -> dict[str, torch.Tensor]:
        data = batch[self.streams[0]] if len(self.streams) == 1 else self._concat(batch)
        outputs = self.model(data["image"], **self.feature_kwargs)
        ce = self._loss(outputs["out"], data["label"])
        losses = {"loss": ce, "ce": ce.detach()}
        if "aux" in outputs and self.params.aux_weight > 0:
            aux = self._loss(outputs["aux"], data["label"])
            losses["loss"] = ce + self.params.aux_weight * aux
            losses["ce_aux"] = aux.detach()
        if self.params.mix_weight > 0:
            first, second = (batch[name] for name in self.streams)
            if first["label"].shape != second["label"].shape:
                raise ConfigError(
                    "method.params.mix_weight: the two streams need the same batch size and crop "
                    f"({tuple(first['label'].shape)} vs {tuple(second['label'].shape)})"
                )
            generator = step_generator(self.cfg.seed, step, MIX_SALT)
            mask = mix_masks(
                self.params.mix_mask, first["label"], generator, ignore_index=self.ignore_index
            )
            image = mix(mask, first["image"], second["image"])
            mixed = self._loss(self.model(image)["out"], mix(mask, first["label"], second["label"]))
            losses["loss"] = losses["loss"] + self.params.mix_weight * mixed
            losses["mixed"] = mixed.detach()
        if self.classdist is not None:
            losses = self.add_classdist(losses, *stream_views(outputs["feat"], batch, self.streams))
        return losses

    def _concat(self, batch: dict[str, dict[str, Any]]) -> dict[str, torch.Tensor]:
        shapes = {name: tuple(batch[name]["image"].shape[-2:]) for name in self.streams}
        if len(set(shapes.values())) > 1:
            raise ConfigError(
                f"method.params.streams: the streams' crops differ ({shapes}); give them the same "
                "data.streams.<name>.crop_size"
            )
        return {
            key: torch.cat([batch[name][key] for name in self.streams])
            for key in ("image", "label")
        }

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        heads = self.feature_heads()
        return {"model": segmenter_optimizer(self.model, self.cfg.optim, extra_heads=heads)}

    def eval_model(self) -> nn.Module:
        return self.model
