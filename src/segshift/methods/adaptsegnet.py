"""AdaptSegNet: output-space adversarial adaptation (Tsai et al., "Learning to Adapt Structured
Output Space for Semantic Segmentation", CVPR 2018; official code wasidennis/AdaptSegNet,
``train_gta2cityscapes_multi.py``, ``model/discriminator.py``).

A discriminator per output level learns to tell the segmenter's softmax maps on source images
(label 0) from those on target images (label 1); the segmenter is trained to make target maps
look like source maps::

    L = CE(main_s) + lambda_seg * CE(aux_s)
        + lambda_adv_main * G(D_main(P_t_main)) + lambda_adv_aux * G(D_aux(P_t_aux))
    L_D = sum over levels of [ g(D(P_s), 0) + g(D(P_t), 1) ] / 2      (inputs detached)

Shapes: source images (B,3,H,W) with labels (B,H,W); target images (B,3,H',W'), no labels.
P_s, P_t = softmax over classes of the logits upsampled to the input size (B,C,H,W), with the
model's ``align_corners``. Each D is AdaptSegNet's ``FCDiscriminator`` (B,C,H,W) -> (B,1,H/32,W/32).
g is BCE-with-logits (``gan_mode: vanilla``, the paper) or least squares (``ls``, the README's
LS-GAN). The aux level (layer3 classifier) exists with ``model.params.multi_level: true``; a
single-level model gets one discriminator, and a level whose weight is 0 gets none.

Defaults are the paper's multi-level ResNet-101 setting (the README's command, the script's
constants): lambda_seg 0.1, lambda_adv 0.001 (main) / 0.0002 (aux), D Adam lr 1e-4, betas
(0.9, 0.99), one Adam per discriminator, decayed by the run's poly schedule like the segmenter.
Evaluated model: the segmenter's main output (``eval_model``), as in ``evaluate_cityscapes.py``.

Differences from the official script:

- One backward per step (segshift's contract): the generator term is computed with the
  discriminators frozen and their terms on detached maps, so the gradients are the official
  ones. Source and target graphs are both alive until that backward (the official code frees the
  source graph first): more memory, same numbers.
- A discriminator whose weight is 0 is not built (the official single-level command still trains
  D1 with weight 0, which never reaches the segmenter).
- ``classdist`` (not in the paper; ``common/classdist.py``): the class-distribution contrast on
  the source images (labels) and target images (the segmenter's own detached predictions at
  ``classdist.confidence``), from the features of the same two passes.
- The README warns that the PyTorch >= 0.4 multi-level run needed smaller weights (5e-5 / 5e-4)
  to reproduce; the defaults keep the paper's.

Example config::

    method: {name: adaptsegnet, params: {lambda_adv_main: 0.001, gan_mode: vanilla}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig

from segshift.methods.common.classdist import ClassDistParams, FeatureView
from segshift.methods.common.multi_level import (
    MultiLevelMethod,
    check_gan_mode,
    level_adversarial_losses,
    level_discriminator_optimizers,
    level_discriminators,
    level_probabilities,
)
from segshift.methods.common.pseudo_label import pseudo_label
from segshift.registry import METHODS


@dataclass
class AdaptSegNetParams:
    lambda_seg: float = 0.1  # aux (layer3) source CE: LAMBDA_SEG
    lambda_adv_main: float = 0.001  # LAMBDA_ADV_TARGET2 (main classifier, D2)
    lambda_adv_aux: float = 0.0002  # LAMBDA_ADV_TARGET1 (aux classifier, D1)
    gan_mode: str = "vanilla"  # vanilla (BCE, the paper) | ls (least squares, --gan LS)
    lr_d: float = 1e-4  # LEARNING_RATE_D
    betas_d: list[float] = field(default_factory=lambda: [0.9, 0.99])
    ndf: int = 64
    classdist: ClassDistParams = field(default_factory=ClassDistParams)  # off at weight 0

    def __post_init__(self) -> None:
        check_gan_mode(self.gan_mode)


@METHODS.register("adaptsegnet")
class AdaptSegNet(MultiLevelMethod):
    """Output-space adversarial adaptation at one or two levels (see the module docstring)."""

    Params = AdaptSegNetParams

    def __init__(self, cfg: DictConfig, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__(cfg, num_classes, ignore_index)
        self.adv_weights = self.level_weights(
            self.params.lambda_adv_main, self.params.lambda_adv_aux
        )
        self.discriminators = level_discriminators(
            tuple(self.adv_weights), num_classes, self.params.ndf
        )
        self.build_classdist(self.model)

    def training_step(self, batch: dict[str, dict[str, Any]], step: int) -> dict[str, torch.Tensor]:
        source, target = batch["source"], batch["target"]
        out_s = self.model(source["image"], **self.feature_kwargs)
        out_t = self.model(target["image"], **self.feature_kwargs)
        seg, metrics = self.source_loss(out_s, source["label"])
        levels, align = tuple(self.adv_weights), self.model.align_corners
        p_s = level_probabilities(out_s, source["image"].shape[-2:], levels, align_corners=align)
        p_t = level_probabilities(out_t, target["image"].shape[-2:], levels, align_corners=align)
        adv, adv_metrics = level_adversarial_losses(
            self.discriminators, p_s, p_t, self.adv_weights, self.params.gan_mode
        )
        losses = {"loss": seg + adv, **metrics, **adv_metrics}
        if self.classdist is not None:
            own = pseudo_label(out_t["out"], size=target["image"].shape[-2:], align_corners=align)
            losses = self.add_classdist(
                losses,
                FeatureView(out_s["feat"], source["label"], source.get("domain")),
                FeatureView(
                    out_t["feat"],
                    self.classdist.confident(own.label, own.confidence, target.get("valid")),
                    target.get("domain"),
                ),
            )
        return losses

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        discriminators = level_discriminator_optimizers(
            self.discriminators, self.params.lr_d, self.params.betas_d
        )
        return {**super().configure_optimizers(), **discriminators}
