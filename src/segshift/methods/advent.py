"""AdvEnt: adversarial entropy minimisation (Vu et al., "ADVENT: Adversarial Entropy Minimization
for Domain Adaptation in Semantic Segmentation", CVPR 2019; official code valeoai/ADVENT,
``advent/domain_adaptation/train_UDA.py`` ``train_advent``, ``advent/utils/func.py``).

AdaptSegNet's adversarial structure (``adaptsegnet.py``), but each discriminator sees the
*weighted self-information* map of a level instead of its softmax::

    I[b, c, h, w] = -P[b, c, h, w] * log P[b, c, h, w] / log C       (``prob_2_entropy``)

    L = CE(main_s) + lambda_seg * CE(aux_s)
        + lambda_adv_main * G(D_main(I_t_main)) + lambda_adv_aux * G(D_aux(I_t_aux))
        + lambda_ent_main * Ent(P_t_main) + lambda_ent_aux * Ent(P_t_aux)
    L_D = sum over levels of [ BCE(D(I_s), 0) + BCE(D(I_t), 1) ] / 2     (inputs detached)

Shapes: source (B,3,H,W) + labels (B,H,W), target (B,3,H',W'). P = softmax of the logits
upsampled to the input size (model ``align_corners``), I has the same (B,C,H,W) shape, and its
channels sum to the normalised entropy (in [0, 1]). Ent is MinEnt's loss, the mean of that
entropy (``minent.py``).

Defaults are the official ``advent.yml`` / ``config.py``: lambda_seg 0.1 (LAMBDA_SEG_AUX),
lambda_adv 0.001 (main) / 0.0002 (aux), D Adam lr 1e-4, betas (0.9, 0.99), one Adam per
discriminator, BCE (``gan_mode: vanilla``; ``ls`` is offered as in AdaptSegNet).
``lambda_ent_*`` default to 0, i.e. AdvEnt alone. Setting them trains AdvEnt and MinEnt jointly
in one model; that is **not** the paper's "AdvEnt+MinEnt" row (45.5 GTA5, 41.2/48.0 SYNTHIA),
which averages the predictions of two separately trained models, AdvEnt and MinEnt + entropy
ranking (maintainer, valeoai/ADVENT issue #7; ``advent+minent_pretrained.yml``).
Evaluated model: the segmenter's main output.

Differences from the official trainer: one backward per step with the discriminators frozen for
the generator term (the same gradients; see ``methods/base.py``); a level with weight 0 gets no
discriminator. Not implemented: the class-ratio prior (+CP) and entropy ranking (ER).

Example config::

    method: {name: advent, params: {lambda_adv_main: 0.001, lambda_adv_aux: 0.0002}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig

from segshift.methods.common.losses import self_information
from segshift.methods.common.multi_level import (
    MultiLevelMethod,
    check_gan_mode,
    level_adversarial_losses,
    level_discriminator_optimizers,
    level_discriminators,
    level_entropy_losses,
    level_probabilities,
)
from segshift.registry import METHODS


@dataclass
class AdvEntParams:
    lambda_seg: float = 0.1  # LAMBDA_SEG_AUX (LAMBDA_SEG_MAIN is 1)
    lambda_adv_main: float = 0.001  # LAMBDA_ADV_MAIN
    lambda_adv_aux: float = 0.0002  # LAMBDA_ADV_AUX
    lambda_ent_main: float = 0.0  # optional joint MinEnt term (not the paper's AdvEnt)
    lambda_ent_aux: float = 0.0
    gan_mode: str = "vanilla"  # vanilla (BCE, official) | ls (least squares)
    lr_d: float = 1e-4  # LEARNING_RATE_D
    betas_d: list[float] = field(default_factory=lambda: [0.9, 0.99])
    ndf: int = 64

    def __post_init__(self) -> None:
        check_gan_mode(self.gan_mode)


@METHODS.register("advent")
class AdvEnt(MultiLevelMethod):
    """Adversarial alignment of self-information maps (see the module docstring)."""

    Params = AdvEntParams

    def __init__(self, cfg: DictConfig, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__(cfg, num_classes, ignore_index)
        p = self.params
        self.adv_weights = self.level_weights(p.lambda_adv_main, p.lambda_adv_aux)
        self.ent_weights = self.level_weights(p.lambda_ent_main, p.lambda_ent_aux)
        self.discriminators = level_discriminators(tuple(self.adv_weights), num_classes, p.ndf)

    def training_step(self, batch: dict[str, dict[str, Any]], step: int) -> dict[str, torch.Tensor]:
        source, target = batch["source"], batch["target"]
        out_s = self.model(source["image"])
        out_t = self.model(target["image"])
        seg, metrics = self.source_loss(out_s, source["label"])
        levels, align = tuple(self.adv_weights), self.model.align_corners
        target_levels = tuple(dict.fromkeys((*levels, *self.ent_weights)))
        p_s = level_probabilities(out_s, source["image"].shape[-2:], levels, align_corners=align)
        p_t = level_probabilities(
            out_t, target["image"].shape[-2:], target_levels, align_corners=align
        )
        adv, adv_metrics = level_adversarial_losses(
            self.discriminators,
            {level: self_information(p_s[level]) for level in levels},
            {level: self_information(p_t[level]) for level in levels},
            self.adv_weights,
            self.params.gan_mode,
        )
        ent, ent_metrics = level_entropy_losses(p_t, self.ent_weights)
        return {"loss": seg + adv + ent, **metrics, **adv_metrics, **ent_metrics}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        discriminators = level_discriminator_optimizers(
            self.discriminators, self.params.lr_d, self.params.betas_d
        )
        return {**super().configure_optimizers(), **discriminators}
