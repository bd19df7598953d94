"""Per-level pieces of the output-space methods: AdaptSegNet, ADVENT (AdvEnt) and MinEnt.

A multi-level DeepLab-v2 (``model.params.multi_level: true``) predicts at two *levels*: ``main``
(the classifier on layer4, output key ``out``) and ``aux`` (the one on layer3, key ``aux``). These
methods treat the levels alike, each with its own weight:

- source cross-entropy, main + ``lambda_seg`` x aux (AdaptSegNet's LAMBDA_SEG, ADVENT's
  LAMBDA_SEG_AUX; both 0.1);
- softmax of the logits **upsampled to the input size** first, as both official trainers do
  (``interp`` / ``interp_target`` before ``F.softmax``), with the model's ``align_corners``;
- per level: a fully convolutional discriminator with its own Adam (AdaptSegNet, AdvEnt), or an
  entropy term (MinEnt).

A level whose weight is 0, or that the model does not predict, is skipped: no discriminator is
built or trained for it (the segmenter's updates are those of a discriminator weighted 0).

Example (MinEnt's step)::

    class MinEnt(MultiLevelMethod):  # builds self.model, finds self.levels
        def training_step(self, batch, step):
            seg, metrics = self.source_loss(self.model(src_images), src_labels)
            probs = level_probabilities(self.model(tgt_images), tgt_images.shape[-2:], self.levels)
            ent, ent_metrics = level_entropy_losses(probs, {"main": 0.001, "aux": 0.0002})
            return {"loss": seg + ent, **metrics, **ent_metrics}
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from segshift.errors import ConfigError
from segshift.methods.base import Method
from segshift.methods.common.gan import (
    GAN_MODES,
    adversarial_losses,
    build_discriminator,
    discriminator_optimizer,
)
from segshift.methods.common.losses import cross_entropy, entropy_map, resize_logits
from segshift.methods.common.optim import segmenter_optimizer
from segshift.models import build_model

LEVELS = {"main": "out", "aux": "aux"}  # level name -> key of the model's output dict


@torch.no_grad()
def output_levels(model: nn.Module, size: int = 64) -> tuple[str, ...]:
    """The levels ``model`` predicts, from one forward of a blank (1,3,size,size) image.

    The forward runs in eval mode without gradients, so BatchNorm statistics and the RNG are
    left as they were; the model's mode is restored.
    """
    was_training = model.training
    model.eval()
    try:
        parameter = next(model.parameters())
        outputs = model(torch.zeros(1, 3, size, size, device=parameter.device))
    finally:
        model.train(was_training)
    return tuple(level for level, key in LEVELS.items() if key in outputs)


def check_gan_mode(mode: str, key: str = "method.params.gan_mode") -> None:
    """A ConfigError naming ``key`` unless ``mode`` is one of ``gan.GAN_MODES``."""
    if mode not in GAN_MODES:
        raise ConfigError(f"{key}: '{mode}' is not one of {list(GAN_MODES)}")


def source_segmentation_loss(
    outputs: dict[str, torch.Tensor],
    label: torch.Tensor,
    *,
    lambda_seg: float,
    ignore_index: int = 255,
    align_corners: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CE(main) + lambda_seg x CE(aux) over valid pixels, logits upsampled to the (B,H,W) labels.

    Returns the loss and the detached terms ``ce`` (and ``ce_aux`` when the model has an aux
    output and ``lambda_seg > 0``).
    """
    ce = cross_entropy(outputs["out"], label, ignore_index, align_corners=align_corners)
    loss, metrics = ce, {"ce": ce.detach()}
    if "aux" in outputs and lambda_seg > 0:
        aux = cross_entropy(outputs["aux"], label, ignore_index, align_corners=align_corners)
        loss = loss + lambda_seg * aux
        metrics["ce_aux"] = aux.detach()
    return loss, metrics


def level_probabilities(
    outputs: dict[str, torch.Tensor],
    size: tuple[int, int],
    levels: tuple[str, ...],
    *,
    align_corners: bool = False,
) -> dict[str, torch.Tensor]:
    """{level: (B,C,H,W) float32 softmax of that level's logits upsampled to ``size``}."""
    return {
        level: torch.softmax(
            resize_logits(outputs[LEVELS[level]], tuple(size), align_corners).float(), dim=1
        )
        for level in levels
    }


def level_discriminators(levels: tuple[str, ...], in_channels: int, ndf: int = 64) -> nn.ModuleDict:
    """One ``fc_discriminator`` per level (AdaptSegNet's D2/D1, ADVENT's d_main/d_aux)."""
    return nn.ModuleDict({level: build_discriminator(in_channels, ndf) for level in levels})


def level_discriminator_optimizers(
    discriminators: nn.ModuleDict, lr: float, betas: list[float] | tuple[float, float]
) -> dict[str, torch.optim.Optimizer]:
    """{"discriminator_<level>": Adam} per discriminator, as the official trainers (one each).

    Adam is element-wise, so one optimizer over both would step identically; separate ones also
    keep each discriminator's gradient clipping (``optim.clip_grad_norm``) to itself.
    """
    if len(betas) != 2:
        raise ConfigError(f"method.params.betas_d: needs 2 values, got {list(betas)}")
    return {
        f"discriminator_{level}": discriminator_optimizer(
            d.parameters(), lr=lr, betas=(betas[0], betas[1])
        )
        for level, d in discriminators.items()
    }


def level_adversarial_losses(
    discriminators: nn.ModuleDict,
    source_maps: dict[str, torch.Tensor],
    target_maps: dict[str, torch.Tensor],
    weights: dict[str, float],
    mode: str = "vanilla",
) -> tuple[torch.Tensor | float, dict[str, torch.Tensor]]:
    """Sum over levels of ``weights[level] * G_level + D_level`` (``gan.adversarial_losses``).

    ``*_maps``: {level: what that level's discriminator sees}. G pushes D(target) to the source
    label with D frozen; D's term (source -> 0, target -> 1, halved) uses detached maps. Metrics:
    ``adv_<level>`` (G, unweighted) and ``d_<level>``.
    """
    total: torch.Tensor | float = 0.0
    metrics: dict[str, torch.Tensor] = {}
    for level, discriminator in discriminators.items():
        g_loss, d_loss = adversarial_losses(
            discriminator, source_maps[level], target_maps[level], mode
        )
        total = total + weights[level] * g_loss + d_loss
        metrics[f"adv_{level}"] = g_loss.detach()
        metrics[f"d_{level}"] = d_loss.detach()
    return total, metrics


def level_entropy_losses(
    probs: dict[str, torch.Tensor], weights: dict[str, float]
) -> tuple[torch.Tensor | float, dict[str, torch.Tensor]]:
    """Sum over levels of ``weights[level] * entropy_loss``: MinEnt (Vu et al., CVPR 2019).

    ``entropy_loss`` is ADVENT's: the mean over (B,H,W) of the per-pixel entropy normalised by
    log C, in [0, 1] (a uniform prediction gives 1). Metrics: ``ent_<level>`` (unweighted).
    """
    total: torch.Tensor | float = 0.0
    metrics: dict[str, torch.Tensor] = {}
    for level, weight in weights.items():
        entropy = entropy_map(probs[level]).mean()
        total = total + weight * entropy
        metrics[f"ent_{level}"] = entropy.detach()
    return total, metrics


class MultiLevelMethod(Method):
    """What AdaptSegNet, AdvEnt and MinEnt share: a segmenter ``self.model`` trained on labeled
    ``source`` and unlabeled ``target`` batches, the levels it predicts (``self.levels``), the
    source loss, its optimizer (``model``) and evaluation of its main output.

    Subclasses need ``lambda_seg`` in their ``Params``.
    """

    streams = ("source", "target")

    def __init__(self, cfg: DictConfig, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__(cfg, num_classes, ignore_index)
        self.model = build_model(cfg.model, num_classes)
        self.levels = output_levels(self.model)

    def level_weights(self, main: float, aux: float) -> dict[str, float]:
        """{level: weight} for the levels the model predicts, zero weights left out."""
        weights = {"main": main, "aux": aux}
        return {level: weights[level] for level in self.levels if weights[level]}

    def source_loss(self, outputs: dict[str, torch.Tensor], label: torch.Tensor) -> Any:
        """(CE(main) + lambda_seg x CE(aux), {"ce", "ce_aux"}) on a source batch."""
        return source_segmentation_loss(
            outputs,
            label,
            lambda_seg=self.params.lambda_seg,
            ignore_index=self.ignore_index,
            align_corners=self.model.align_corners,
        )

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        heads = self.feature_heads()
        return {"model": segmenter_optimizer(self.model, self.cfg.optim, extra_heads=heads)}

    def eval_model(self) -> nn.Module:
        return self.model
