"""Weak-to-strong consistency pieces of FixMatch and UniMatch (and the MSE of Mean Teacher).

Following the UniMatch repository (``unimatch.py``, ``fixmatch.py``): the weak view of an unlabeled
image gives hard pseudo-labels and confidences; a strong view is the weak crop with colour jitter,
grayscale and blur, and with probability 0.5 a CutMix box whose pixels come from the strong view of
*another* unlabeled image (the "mix" batch, a second pass over the unlabeled data). Inside the box
the target is the mix image's pseudo-label, confidence and validity.

The unlabeled loss of one view (shapes (B,C,h,w) logits, (B,H,W) targets)::

    L = sum( CE(pred, y) * [conf >= tau] * valid ) / sum(valid)

``valid`` is False only on padding (``batch["valid"]`` of an unlabeled stream), so the normaliser
counts every non-padding pixel, confident or not (docs/METHODS.md, "FixMatch and UniMatch"): with tau = 0
the loss is the mean CE over non-padding pixels.

Example::

    weak = Targets.from_logits(logits_u_w.detach(), size, valid_u, align_corners=True)
    mixed = weak.pasted(box, Targets.from_logits(logits_mix, size, valid_mix, True))
    loss = mixed.loss(pred_u_s, threshold=0.95, align_corners=True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from segshift.methods.common.augment import StrongAugment, step_generator, step_seed, strong_augment
from segshift.methods.common.losses import resize_logits
from segshift.methods.common.mixing import cutmix_box, mix

# UniMatch/FixMatch's strong view (dataset/semi.py): ColorJitter(0.5, 0.5, 0.5, 0.25) p 0.8,
# RandomGrayscale p 0.2, GaussianBlur sigma U(0.1, 2.0) p 0.5.
UNIMATCH_STRONG = dict(
    jitter=0.5, hue=0.25, jitter_p=0.8, grayscale_p=0.2, blur_p=0.5, blur_sigma=[0.1, 2.0]
)


def unimatch_strong() -> StrongAugment:
    """The strong photometric view of UniMatch and FixMatch (see ``UNIMATCH_STRONG``)."""
    return StrongAugment(**UNIMATCH_STRONG)


def valid_mask(batch: dict) -> torch.Tensor:
    """(B,H,W) bool: False on the pixels a crop padded (``batch["valid"]``), else all True."""
    image = batch["image"]
    if "valid" in batch:
        return batch["valid"].bool()
    return torch.ones(image.shape[0], *image.shape[-2:], dtype=torch.bool, device=image.device)


@dataclass
class Targets:
    """Hard pseudo-labels ``label`` (B,H,W) int64, ``confidence`` (B,H,W), ``valid`` (B,H,W) bool."""

    label: torch.Tensor
    confidence: torch.Tensor
    valid: torch.Tensor

    @classmethod
    @torch.no_grad()
    def from_logits(
        cls,
        logits: torch.Tensor,
        size: tuple[int, int],
        valid: torch.Tensor,
        align_corners: bool = False,
    ) -> Targets:
        """Targets from (B,C,h,w) logits resized to ``size`` (max softmax and its argmax)."""
        probs = torch.softmax(resize_logits(logits.detach().float(), size, align_corners), dim=1)
        confidence, label = probs.max(dim=1)
        return cls(label, confidence, valid)

    def pasted(self, box: torch.Tensor, other: Targets) -> Targets:
        """These targets with ``other``'s inside the (B,H,W) ``box`` (1 = take ``other``)."""
        inside = box.bool()
        return Targets(
            torch.where(inside, other.label, self.label),
            torch.where(inside, other.confidence, self.confidence),
            torch.where(inside, other.valid, self.valid),
        )

    def loss(
        self, logits: torch.Tensor, threshold: float, align_corners: bool = False
    ) -> torch.Tensor:
        """Sum of CE over confident valid pixels / number of valid pixels (module docstring)."""
        logits = resize_logits(logits, tuple(self.label.shape[-2:]), align_corners)
        per_pixel = F.cross_entropy(logits.float(), self.label, reduction="none")
        keep = (self.confidence >= threshold) & self.valid
        return (per_pixel * keep).sum() / self.valid.sum().clamp(min=1)


@torch.no_grad()
def eval_mode_targets(model: nn.Module, batch: dict, align_corners: bool = False) -> Targets:
    """Targets of an unlabeled ``batch`` from an eval-mode pass of ``model`` (UniMatch/FixMatch
    label the mix images this way); the model is back in train mode afterwards."""
    model.eval()
    logits = model(batch["image"])["out"]
    model.train()
    return Targets.from_logits(
        logits, tuple(batch["image"].shape[-2:]), valid_mask(batch), align_corners
    )


def strong_view(
    weak: torch.Tensor,
    mix_weak: torch.Tensor,
    seed: int,
    step: int,
    salt: int,
    augment: StrongAugment,
    cutmix_p: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A strong view of (B,3,H,W) ``weak`` with, with probability ``cutmix_p`` per image, a CutMix
    box (``cutmix_box``) filled from ``mix_weak``'s own strong view. Returns the image and the
    (B,H,W) box (1 = pixel from the mix image). Draws from (seed, step, salt .. salt + 2)."""
    strong = strong_augment(weak, step_seed(seed, step, salt), augment)
    mix_strong = strong_augment(mix_weak, step_seed(seed, step, salt + 1), augment)
    generator = step_generator(seed, step, salt + 2)
    box = cutmix_box(len(weak), tuple(weak.shape[-2:]), generator, p=cutmix_p).to(weak.device)
    return mix(box, mix_strong, strong), box


def softmax_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MSE between the softmaxes of (B,C,h,w) logits, mean over all B*C*h*w elements; the
    ``teacher`` side is detached (Mean Teacher, CCT's ``softmax_mse_loss``)."""
    return F.mse_loss(
        torch.softmax(student.float(), dim=1), torch.softmax(teacher.detach().float(), dim=1)
    )


def sigmoid_rampup(step: float, length: float) -> float:
    """exp(-5 (1 - min(t, T) / T)^2), 1 once t >= T or when T <= 0: the consistency-weight
    ramp-up of Laine & Aila and Mean Teacher, CCT's ``sigmoid_rampup``."""
    if length <= 0:
        return 1.0
    phase = 1.0 - min(max(step, 0.0), length) / length
    return math.exp(-5.0 * phase * phase)
