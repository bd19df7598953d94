"""MinEnt: direct entropy minimisation on the target (Vu et al., "ADVENT: Adversarial Entropy
Minimization for Domain Adaptation in Semantic Segmentation", CVPR 2019, section 3.1; official
code valeoai/ADVENT, ``advent/domain_adaptation/train_UDA.py`` ``train_minent``,
``advent/utils/loss.py`` ``entropy_loss``).

Supervised on the source, and the target predictions are pushed to be confident::

    L = CE(main_s) + lambda_seg * CE(aux_s)
        + lambda_ent_main * Ent(P_t_main) + lambda_ent_aux * Ent(P_t_aux)
    Ent(P) = mean over (b, h, w) of  -sum_c P[b,c,h,w] log P[b,c,h,w] / log C     in [0, 1]

Shapes: source (B,3,H,W) + labels (B,H,W), target (B,3,H',W'); P_t = softmax of the target
logits upsampled to (H',W') (model ``align_corners``), (B,C,H',W'). A uniform prediction gives
Ent = 1, a one-hot one 0. The aux level exists with ``model.params.multi_level: true``.

Defaults are the official ``minent.yml`` / ``config.py``: lambda_seg 0.1 (LAMBDA_SEG_AUX),
lambda_ent 0.001 (main) / 0.0002 (aux). No discriminator. Evaluated model: the segmenter's main
output. Differences from the official trainer: one backward on the sum instead of two
accumulated backwards (the same gradients). Not implemented: entropy ranking (the paper's
"MinEnt + ER" row and the released ``gta2cityscapes_minent_ER.pth``) and the class-ratio prior.

Example config::

    method: {name: minent, params: {lambda_ent_main: 0.001, lambda_ent_aux: 0.0002}}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig

from segshift.methods.common.multi_level import (
    MultiLevelMethod,
    level_entropy_losses,
    level_probabilities,
)
from segshift.registry import METHODS


@dataclass
class MinEntParams:
    lambda_seg: float = 0.1  # LAMBDA_SEG_AUX (LAMBDA_SEG_MAIN is 1)
    lambda_ent_main: float = 0.001  # LAMBDA_ENT_MAIN
    lambda_ent_aux: float = 0.0002  # LAMBDA_ENT_AUX


@METHODS.register("minent")
class MinEnt(MultiLevelMethod):
    """Source cross-entropy plus the target's mean normalised entropy per level."""

    Params = MinEntParams

    def __init__(self, cfg: DictConfig, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__(cfg, num_classes, ignore_index)
        self.ent_weights = self.level_weights(
            self.params.lambda_ent_main, self.params.lambda_ent_aux
        )

    def training_step(self, batch: dict[str, dict[str, Any]], step: int) -> dict[str, torch.Tensor]:
        source, target = batch["source"], batch["target"]
        seg, metrics = self.source_loss(self.model(source["image"]), source["label"])
        p_t = level_probabilities(
            self.model(target["image"]),
            target["image"].shape[-2:],
            tuple(self.ent_weights),
            align_corners=self.model.align_corners,
        )
        ent, ent_metrics = level_entropy_losses(p_t, self.ent_weights)
        return {"loss": seg + ent, **metrics, **ent_metrics}
