"""CCT: Cross-Consistency Training (Ouali et al., "Semi-Supervised Semantic Segmentation with
Cross-Consistency Training", CVPR 2020; official code yassouali/CCT, docs/METHODS.md, "CCT").

The segmentation model is CCT's shared encoder plus main decoder: ``model(x, return_feat=True)``
gives the main logits ``out`` and ``z = feat`` (B, model.feat_channels, h, w), the features the
model's head reads. K auxiliary decoders (this method's modules) each read a perturbed copy of
the unlabeled ``z`` and are pulled towards the detached main prediction::

    L    = L_sup(model(x_l), y_l) + w(t) * (1/K) sum_k L_c(g_k(perturb_k(z_u)), model(x_u))
    L_c  = mean_{B,C,H,W} (softmax(aux_k) - softmax(main).detach())^2      ("mse", default)
    w(t) = 30 * exp(-5 (1 - min(t, T_r) / T_r)^2),  T_r = ramp_up * train.iters  (ramp_up 0.1)

Aux and main logits are compared at the unlabeled image size (``resize_logits`` with
``model.align_corners``); the main decoder gets no gradient from unlabeled data, the encoder gets
it through the aux decoders (z is not detached). Each aux decoder is CCT's ``upsample``: 1x1 conv
feat_channels -> C (no bias), then log2(upscale) x [1x1 conv C -> 4C (ICNR init), ReLU,
PixelShuffle 2], so its logits are >= 0 (quirk 1). ``upscale`` should be the stride of ``feat``
(8: CCT's PSPNet OS8, DeepLab-v2; 4: the ``fast`` FPN).

Perturbations (counts as the paper / ``configs/config.json``; M_fg = argmax(main) != background):

- ``vat`` (2): z + eps * r, r = the L2-normalised (per sample) gradient w.r.t. d of
  KL(softmax(g(z)) || softmax(g(z + xi d))) (batchmean), d ~ U(-.5, .5) normalised; z detached
  for r, g the same aux decoder; xi 1e-6, eps 2, 1 iteration. ``torch.autograd.grad``, not
  ``.backward()`` inside forward (same direction, parameters' gradients untouched).
- ``drop`` (6): channel dropout (Dropout2d) p 0.5, survivors x 2.
- ``cutout`` (6): inside the bounding box of each external contour of M_fg with more than 50
  points (cv2.findContours, EXTERNAL, SIMPLE), a random int(0.4 h_bb) x int(0.4 w_bb) box is
  zeroed (16% of the box, docs/METHODS.md); the mask is nearest-resized to z. CHAIN_APPROX_SIMPLE
  keeps only the corners of straight runs, so a rectangular or round blob (4 / about 36 points)
  is never cut: only ragged contours are (as in CCT).
- ``context_masking`` (2): z * M_fg.  ``object_masking`` (2): z * (1 - M_fg).
- ``feature_drop`` (6): keep where mean_c(z) < gamma * max(mean_c(z)), gamma ~ U(.7, .9).
- ``feature_noise`` (6): z * (1 + n), n ~ U(-.3, .3) of shape (C, h, w), shared over the batch.

The guided perturbations (cutout, context, object masking) need a background class:
``background_class`` (default 0, VOC). Datasets without one (Cityscapes, CamVid) must switch them
off (``cutout: 0, context_masking: 0, object_masking: 0``); otherwise class 0 (road, sky) is taken
as background.

L_sup: CE over valid pixels (``labeled`` params, OHEM available), or ``sup_loss: abce``: CCT's
annealed bootstrapped CE, the mean CE over valid pixels whose true-class probability is below
max(eta_t, the (B+1)-th smallest such probability), eta_t = 1/C + (1 - e^{-5 t/T}) (0.9 - 1/C),
t clipped at T = 0.4 * train.iters. ``consistency``: mse (default), kl (KL(main || aux), mean over
elements), js (CCT's argument order). ``eval_model()`` is the model (main decoder).

Deviations from the official code:

- The main decoder is the model's own head (smp PSPNet: 3x3 conv + bilinear x8), not CCT's 1x1
  conv + pixel shuffle, so the main logits are not >= 0; the aux decoders are CCT's.
- Randomness comes from per-step generators (``step_seed``; one stream per aux decoder), not the
  global RNG; the dropout masks are drawn from them rather than by ``nn.Dropout2d``.
- The guided masks come from the main prediction resized to the image size (CCT's main decoder
  outputs at that size). Labelled and unlabelled images pass the model separately (BN statistics
  separate), as in CCT. The consistency averages over every pixel, crop padding included (CCT
  pads with the mean colour and does the same).
- Aux logits are resized to the image size with ``resize_logits``; with ``upscale`` equal to the
  feat stride and crops that are multiples of it (320 / 8) this is the identity, as in CCT.
- Not implemented: confidence masking and the pair-wise loss (both off in CCT; the pair-wise loss
  is never optimised there), weak labels, focal loss.

Example config::

    method: {name: cct, params: {upscale: 8, cutout: 6, background_class: 0}}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from segshift.errors import ConfigError
from segshift.methods.base import Method
from segshift.methods.common.augment import step_seed
from segshift.methods.common.consistency import sigmoid_rampup
from segshift.methods.common.losses import resize_logits
from segshift.methods.common.optim import segmenter_optimizer
from segshift.methods.common.semi import Labeled, labeled_batch, semi_streams, supervised_loss
from segshift.models import build_model
from segshift.registry import METHODS

# Aux decoder kinds, in CCT's order (models/model.py): the count params share these names.
KINDS = ("vat", "drop", "cutout", "context_masking", "object_masking", "feature_drop",
         "feature_noise")  # fmt: skip
GUIDED = ("cutout", "context_masking", "object_masking")
AUX_SALT = 100  # aux decoder k draws from step_seed(seed, step, AUX_SALT + k)


@dataclass
class CctParams:
    """CCT hyperparameters; defaults from the paper / the official ``configs/config.json``."""

    labeled: Labeled = field(default_factory=Labeled)
    weight: float = 30.0  # unsupervised_w, reached after the ramp-up
    ramp_up: float = 0.1  # sigmoid ramp over this fraction of train.iters (8 of 80 epochs)
    consistency: str = "mse"  # mse | kl | js (un_loss)
    sup_loss: str = "ce"  # ce | abce (annealed bootstrapped CE)
    abce_ramp: float = 0.4  # abCE threshold ramp over this fraction of train.iters
    upscale: int = 8  # aux decoders' pixel-shuffle factor: the stride of the model's feat
    background_class: int = 0  # M_fg = argmax != this (guided perturbations)
    vat: int = 2
    xi: float = 1e-6
    eps: float = 2.0
    vat_iterations: int = 1
    drop: int = 6
    drop_rate: float = 0.5
    spatial: bool = True  # Dropout2d (whole channels); false: element-wise dropout
    cutout: int = 6
    erase: float = 0.4
    context_masking: int = 2
    object_masking: int = 2
    feature_drop: int = 6
    feature_drop_range: list[float] = field(default_factory=lambda: [0.7, 0.9])
    feature_noise: int = 6
    uniform_range: float = 0.3


# ---------------------------------------------------------------- schedules and losses


def consistency_weight(step: int, total: int, final: float = 30.0, ramp_up: float = 0.1) -> float:
    """CCT's sigmoid ramp: final * exp(-5 (1 - min(t, T_r)/T_r)^2), T_r = ramp_up * total."""
    return final * sigmoid_rampup(step, ramp_up * total)


def abce_threshold(step: int, total: int, num_classes: int, ramp: float = 0.4) -> float:
    """abCE's eta_t = 1/C + (1 - exp(-5 t/T)) (0.9 - 1/C), t clipped at T = ramp * total."""
    length = ramp * total
    start = 1.0 / num_classes
    progress = 1.0 if length <= 0 else 1.0 - math.exp(-5.0 * min(max(step, 0), length) / length)
    return start + progress * (0.9 - start)


def abce_loss(
    logits: torch.Tensor,
    label: torch.Tensor,
    threshold: float,
    ignore_index: int = 255,
    *,
    align_corners: bool = False,
) -> torch.Tensor:
    """Mean CE over the valid pixels whose true-class probability is below
    max(threshold, the (B+1)-th smallest of those probabilities); 0 when none is."""
    logits = resize_logits(logits, tuple(label.shape[-2:]), align_corners).float()
    per_pixel = F.cross_entropy(logits, label, ignore_index=ignore_index, reduction="none")
    valid = label != ignore_index
    with torch.no_grad():
        safe = torch.where(valid, label, torch.zeros_like(label)).unsqueeze(1)
        true_prob = torch.softmax(logits, dim=1).gather(1, safe).squeeze(1)[valid]
        floor = 0.0
        if true_prob.numel():
            floor = true_prob.sort().values[min(label.shape[0], true_prob.numel() - 1)].item()
        kept = true_prob < max(floor, threshold)
    losses = per_pixel[valid][kept]
    return losses.mean() if losses.numel() else per_pixel.sum() * 0.0


def consistency_loss(kind: str, aux: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_c of (B,C,H,W) aux logits against (B,C,H,W) target probabilities (CCT utils/losses.py)."""
    aux = aux.float()
    if kind == "mse":
        return F.mse_loss(torch.softmax(aux, dim=1), target)
    log_p = torch.log_softmax(aux, dim=1)
    if kind == "kl":
        return F.kl_div(log_p, target, reduction="mean")
    middle = 0.5 * (log_p.exp() + target)  # "js", with CCT's argument order
    return 0.5 * (
        F.kl_div(log_p, middle, reduction="mean")
        + F.kl_div(torch.log(target + 1e-5), middle, reduction="mean")
    )


# ---------------------------------------------------------------- perturbations of z


def feature_noise(z: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """z * (1 + n) with n (C,h,w), the same for every image of the batch."""
    return z + z * noise.unsqueeze(0)


def feature_dropout(z: torch.Tensor, gamma: float) -> torch.Tensor:
    """Zero the positions whose channel mean reaches gamma x its per-image maximum."""
    attention = z.mean(dim=1, keepdim=True)
    top = attention.flatten(1).max(dim=1).values.view(-1, 1, 1, 1)
    return z * (attention < top * gamma).to(z.dtype)


def guided_masking(z: torch.Tensor, foreground: torch.Tensor, keep: str) -> torch.Tensor:
    """z * M_fg (``keep="foreground"``: context masking) or z * (1 - M_fg) (object masking);
    ``foreground`` (B,H,W) bool is nearest-resized to z."""
    mask = F.interpolate(foreground.unsqueeze(1).float(), size=z.shape[-2:], mode="nearest")
    return z * (mask if keep == "foreground" else 1.0 - mask).to(z.dtype)


def cutout_mask(foreground: torch.Tensor, erase: float, generator: torch.Generator) -> torch.Tensor:
    """(B,H,W) float, 0 on one random int(erase h) x int(erase w) box inside the bounding box of
    each external contour of ``foreground`` (B,H,W) with more than 50 points, 1 elsewhere."""
    masks = []
    for image in foreground.cpu().numpy().astype(np.uint8):
        keep = np.ones_like(image, dtype=np.float32)
        contours, _ = cv2.findContours(image, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for contour in (c.reshape(-1, 2) for c in contours if c.shape[0] > 50):
            (x0, y0), (x1, y1) = contour.min(axis=0), contour.max(axis=0)
            box_w, box_h = int(x1 - x0), int(y1 - y0)
            dx = int(torch.randint(int(box_w * (1 - erase)) + 1, (), generator=generator))
            dy = int(torch.randint(int(box_h * (1 - erase)) + 1, (), generator=generator))
            top, left = y0 + dy, x0 + dx
            keep[top : top + int(box_h * erase), left : left + int(box_w * erase)] = 0.0
        masks.append(torch.from_numpy(keep))
    return torch.stack(masks).to(foreground.device)


def l2_normalize(d: torch.Tensor) -> torch.Tensor:
    """d divided by (its L2 norm per sample over C,h,w + 1e-8)."""
    return d / (d.flatten(1).norm(dim=1).view(-1, *[1] * (d.dim() - 1)) + 1e-8)


def vat_noise(
    z: torch.Tensor, decoder: nn.Module, d: torch.Tensor, xi: float, eps: float, iterations: int
) -> torch.Tensor:
    """eps x the normalised adversarial direction of ``decoder`` at detached z, from noise d."""
    z = z.detach()
    with torch.no_grad():
        target = torch.softmax(decoder(z).float(), dim=1)
    d = l2_normalize(d)
    for _ in range(iterations):
        with torch.enable_grad():  # also under no_grad: the direction is a gradient
            d = d.detach().requires_grad_()
            log_p = torch.log_softmax(decoder(z + xi * d).float(), dim=1)
            distance = F.kl_div(log_p, target, reduction="batchmean")
            (grad,) = torch.autograd.grad(distance, d)
        d = l2_normalize(grad)
    return eps * d.detach()


# ---------------------------------------------------------------- aux decoders


class AuxDecoder(nn.Sequential):
    """CCT's ``upsample``: 1x1 conv to C (no bias), then log2(upscale) x [1x1 conv C -> 4C
    (ICNR), ReLU, PixelShuffle(2)]."""

    def __init__(self, in_channels: int, num_classes: int, upscale: int) -> None:
        first = nn.Conv2d(in_channels, num_classes, 1, bias=False)
        nn.init.kaiming_normal_(first.weight, nonlinearity="relu")
        layers: list[nn.Module] = [first]
        for _ in range(int(math.log2(upscale))):
            conv = nn.Conv2d(num_classes, 4 * num_classes, 1)
            with torch.no_grad():  # ICNR: the four sub-pixels of a channel start equal
                base = nn.init.kaiming_normal_(torch.empty(num_classes, num_classes, 1, 1))
                conv.weight.copy_(base.repeat_interleave(4, dim=0))
            layers += [conv, nn.ReLU(inplace=True), nn.PixelShuffle(2)]
        super().__init__(*layers)


@METHODS.register("cct")
class Cct(Method):
    """A model (encoder + main decoder) and K auxiliary decoders on perturbed features."""

    Params = CctParams

    def __init__(self, cfg: DictConfig, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__(cfg, num_classes, ignore_index)
        p = self.params
        self.streams = semi_streams(p.labeled)
        self.check_choices(consistency=("mse", "kl", "js"), sup_loss=("ce", "abce"))
        counts = {kind: getattr(p, kind) for kind in KINDS}
        if min(counts.values()) < 0 or sum(counts.values()) == 0:
            raise ConfigError(f"method.params: aux decoder counts must be >= 0, not all 0 {counts}")
        if p.upscale < 1 or p.upscale & (p.upscale - 1):
            raise ConfigError(f"method.params.upscale: a power of 2, got {p.upscale}")
        if not 0.0 <= p.drop_rate < 1.0:
            raise ConfigError(f"method.params.drop_rate: in [0, 1), got {p.drop_rate}")
        if len(p.feature_drop_range) != 2:
            raise ConfigError("method.params.feature_drop_range: [low, high] of gamma")
        if any(counts[k] for k in GUIDED) and not 0 <= p.background_class < num_classes:
            raise ConfigError(
                f"method.params.background_class: {p.background_class} is not a class; the "
                "guided perturbations (cutout, context/object masking) need one (else set them 0)"
            )
        if p.sup_loss == "abce" and p.labeled.ohem:
            raise ConfigError("method.params.sup_loss=abce replaces labeled.ohem; use one of them")
        self.model = build_model(cfg.model, num_classes)
        self.kinds = [kind for kind in KINDS for _ in range(counts[kind])]
        self.aux_decoders = nn.ModuleList(
            AuxDecoder(self.model.feat_channels, num_classes, p.upscale) for _ in self.kinds
        )

    def perturb(
        self, kind: str, z: torch.Tensor, decoder: nn.Module, fg: torch.Tensor, seed: int
    ) -> torch.Tensor:
        """z perturbed by aux decoder ``kind``; every draw comes from ``seed``."""
        p = self.params
        cpu = torch.Generator().manual_seed(seed)
        device = torch.Generator(device=z.device).manual_seed(seed)
        if kind == "vat":
            d = torch.rand(z.shape, generator=device, device=z.device, dtype=z.dtype) - 0.5
            return z + vat_noise(z, decoder, d, p.xi, p.eps, p.vat_iterations)
        if kind == "drop":
            shape = z.shape[:2] + (1, 1) if p.spatial else z.shape
            keep = torch.rand(shape, generator=device, device=z.device) >= p.drop_rate
            return z * keep.to(z.dtype) / (1.0 - p.drop_rate)
        if kind == "cutout":
            mask = cutout_mask(fg, p.erase, cpu).unsqueeze(1)
            return z * F.interpolate(mask, size=z.shape[-2:], mode="nearest").to(z.dtype)
        if kind in ("context_masking", "object_masking"):
            return guided_masking(
                z, fg, "foreground" if kind == "context_masking" else "background"
            )
        if kind == "feature_drop":
            low, high = p.feature_drop_range
            return feature_dropout(z, low + (high - low) * float(torch.rand((), generator=cpu)))
        r = p.uniform_range  # feature_noise
        noise = (torch.rand(z.shape[1:], generator=device, device=z.device) * 2 - 1) * r
        return feature_noise(z, noise.to(z.dtype))

    def training_step(self, batch: dict[str, dict[str, Any]], step: int) -> dict[str, torch.Tensor]:
        p, align, iters = self.params, self.model.align_corners, self.cfg.train.iters
        labeled = labeled_batch(batch, p.labeled.streams)
        logits = self.model(labeled["image"])["out"]
        if p.sup_loss == "abce":
            eta = abce_threshold(step, iters, self.num_classes, p.abce_ramp)
            sup = abce_loss(logits, labeled["label"], eta, self.ignore_index, align_corners=align)
        else:
            sup = supervised_loss(
                logits, labeled["label"], p.labeled, self.ignore_index, align_corners=align
            )

        images = batch["unlabeled"]["image"]
        size = tuple(images.shape[-2:])
        out = self.model(images, return_feat=True)
        main = resize_logits(out["out"].detach().float(), size, align)
        target = torch.softmax(main, dim=1)
        fg = main.argmax(dim=1) != p.background_class
        losses = []
        for k, (kind, decoder) in enumerate(zip(self.kinds, self.aux_decoders, strict=True)):
            seed = step_seed(self.cfg.seed, step, AUX_SALT + k)
            z = self.perturb(kind, out["feat"], decoder, fg, seed)
            aux = resize_logits(decoder(z), size, align)
            losses.append(consistency_loss(p.consistency, aux, target))
        unsup = torch.stack(losses).mean()
        weight = consistency_weight(step, iters, p.weight, p.ramp_up)
        return {
            "loss": sup + weight * unsup,
            "sup": sup.detach(),
            "unsup": unsup.detach(),
            "unsup_weight": torch.tensor(weight),
        }

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": segmenter_optimizer(self.model, self.cfg.optim, (self.aux_decoders,))}

    def eval_model(self) -> nn.Module:
        return self.model  # CCT evaluates the encoder + main decoder
