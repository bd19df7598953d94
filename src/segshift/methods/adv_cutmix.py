"""adv_cutmix: output-space adversarial alignment plus cross-domain CutMix self-training.

segshift's own combination, not a published method: AdaptSegNet's output-space adversarial term
(Tsai et al., CVPR 2018) and DACS's mixed samples (Tranheden et al., WACV 2021) with CutMix boxes
(Yun et al., ICCV 2019), trained on ONE segmentation network. Our notes record 56.39 mIoU on
GTA5 -> Cityscapes (DeepLab-v2 R101, DACS-like settings; unpublished, see the recipe)::

    L_seg  = CE(student(x_s), y_s)                             mean over valid pixels
    L_adv  = BCE(D(softmax(student(x_t))), source label 0)     D frozen (generator term)
    x_m, y_m, w_m = DACS's mixed sample with a CutMix box M    (see methods/dacs.py)
    L_cm   = mean_{B,H,W}[ w_m * CE(student(x_m), y_m) ]        teacher pseudo-labels on x_t
    L      = L_seg + lambda_adv * L_adv + lambda_cm * L_cm     (+ D's own term, detached inputs)

The discriminator is AdaptSegNet's: fully convolutional, on softmax maps upsampled to the input
size, BCE with source = 0 and target = 1, D loss (D(p_s) -> 0)/2 + (D(p_t) -> 1)/2, Adam 1e-4,
betas (0.9, 0.99) (``common/gan.py``). The EMA teacher (whole state, eval mode; alpha 0.99 with
the 1 - 1/(t+1) warm-up) pseudo-labels the target image with DACS's threshold 0.968 and its
per-batch weight omega = share of pixels at or above it; the box's source pixels keep their labels
(weight 1). Mixed images get DACS's strong augmentation (``augment``; our notes do not say
whether the mixed images were augmented: ``augment.jitter_p=0 augment.blur_p=0`` turns it off).
The student is evaluated.
An ``aux`` output (multi-level DeepLab-v2) is ignored: there is one discriminator, on ``out``.

Shapes: source and target batches (B,3,H,W) RGB in [0, 1] of the same size; labels (B,H,W).

Note: our notes also record a variant that, by mistake, counted the source loss twice; this file
implements the intended formula above, with the source loss once.

Example config::

    method: {name: adv_cutmix, params: {lambda_adv: 0.001, lambda_cm: 1.0, mix_mask: cut}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from segshift.methods.base import Method
from segshift.methods.common.augment import StrongAugment, step_generator, step_seed, strong_augment
from segshift.methods.common.ema import ema_update, make_teacher
from segshift.methods.common.gan import (
    GAN_MODES,
    adversarial_losses,
    build_discriminator,
    discriminator_optimizer,
)
from segshift.methods.common.losses import cross_entropy, resize_logits
from segshift.methods.common.mixing import MIX_MASKS, mix_masks, mixed_batch
from segshift.methods.common.optim import segmenter_optimizer
from segshift.methods.common.pseudo_label import pseudo_label
from segshift.models import build_model
from segshift.registry import METHODS

MASK_SALT = 1  # step_generator salts: one independent random stream per draw site
AUGMENT_SALT = 2


@dataclass
class AdvCutMixParams:
    """Weights of the three terms, the mixing, the teacher and the discriminator."""

    lambda_adv: float = 0.001  # AdaptSegNet's single-level lambda_adv (main output)
    lambda_cm: float = 1.0  # DACS's consistency_weight
    mix_mask: str = "cut"  # cut (CutMix box of half the image) | class (ClassMix, as DACS)
    threshold: float = 0.968  # DACS's pseudo-label confidence threshold
    alpha: float = 0.99  # EMA decay of the teacher (DACS)
    d_lr: float = 1e-4  # discriminator Adam learning rate (AdaptSegNet)
    d_betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    gan_mode: str = "vanilla"  # vanilla (BCE, AdaptSegNet's default) | ls
    augment: StrongAugment = field(default_factory=StrongAugment)  # DACS's jitter and blur


@METHODS.register("adv_cutmix")
class AdvCutMix(Method):
    """One segmenter with an output-space discriminator and an EMA teacher for CutMix samples."""

    streams = ("source", "target")
    Params = AdvCutMixParams

    def __init__(self, cfg: DictConfig, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__(cfg, num_classes, ignore_index)
        self.check_choices(mix_mask=MIX_MASKS, gan_mode=GAN_MODES)
        self.model = build_model(cfg.model, num_classes)
        self.teacher = make_teacher(self.model)
        self.discriminator = build_discriminator(in_channels=num_classes)
        self.train()

    def train(self, mode: bool = True) -> AdvCutMix:
        super().train(mode)
        self.teacher.eval()  # segshift's policy: the teacher predicts with running statistics
        return self

    def training_step(self, batch: dict[str, dict[str, Any]], step: int) -> dict[str, torch.Tensor]:
        source, target = batch["source"], batch["target"]
        params, align = self.params, self.model.align_corners
        size = tuple(target["image"].shape[-2:])
        source_logits = self.model(source["image"])["out"]
        target_logits = self.model(target["image"])["out"]
        seg_loss = cross_entropy(
            source_logits, source["label"], self.ignore_index, align_corners=align
        )
        adv_loss, d_loss = adversarial_losses(
            self.discriminator,
            torch.softmax(resize_logits(source_logits, size, align), dim=1),
            torch.softmax(resize_logits(target_logits, size, align), dim=1),
            mode=params.gan_mode,
        )

        with torch.no_grad():
            teacher_logits = self.teacher(target["image"])["out"]
        pseudo = pseudo_label(
            teacher_logits, size=size, threshold=params.threshold, align_corners=align
        )
        mask = mix_masks(
            params.mix_mask,
            source["label"],
            step_generator(self.cfg.seed, step, MASK_SALT),
            ignore_index=self.ignore_index,
        )
        image, label, weight = mixed_batch(source, target, pseudo, mask)
        image = strong_augment(image, step_seed(self.cfg.seed, step, AUGMENT_SALT), params.augment)
        mix_loss = cross_entropy(
            self.model(image)["out"],
            label,
            self.ignore_index,
            average="all",  # DACS's mixed loss: mean over all pixels
            weight=weight,
            align_corners=align,
        )

        total = seg_loss + params.lambda_adv * adv_loss + params.lambda_cm * mix_loss + d_loss
        return {
            "loss": total,
            "seg": seg_loss.detach(),
            "adv": adv_loss.detach(),
            "mixed": mix_loss.detach(),
            "d": d_loss.detach(),
            "pseudo_weight": pseudo.weight.mean(),
        }

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        discriminator = discriminator_optimizer(
            self.discriminator.parameters(), lr=self.params.d_lr, betas=tuple(self.params.d_betas)
        )
        return {
            "model": segmenter_optimizer(self.model, self.cfg.optim),
            "discriminator": discriminator,
        }

    def after_step(self, step: int) -> None:
        ema_update(self.teacher, self.model, self.params.alpha, step)

    def eval_model(self) -> nn.Module:
        return self.model  # the student, as DACS evaluates it
