"""Rectified pseudo-label learning (Zheng & Yang, "Rectifying Pseudo Label Learning via
Uncertainty Estimation for Domain Adaptive Semantic Segmentation", IJCV 2021; Seg-Uncertainty).

Stage 2 of Seg-Uncertainty: a segmenter with two classifiers (main and auxiliary) is fine-tuned on
pseudo-labeled target images. Where the two heads disagree, the pseudo-label is probably wrong,
so its cross-entropy is damped; the disagreement itself is minimised too::

    a, b     = main, aux logits upsampled to the (B,H,W) labels       (B,C,H,W)
    V_a      = sum_c p_b (ln p_b - ln p_a) = KL(p_b || p_a)            (B,H,W), neither detached
    L_a      = mean_{B,H,W}[ CE_w(a, y) * exp(-V_a) ] + mean_{B,H,W}[ V_a ]
    L        = L_main(a vs b) + lambda_aux * L_aux(b vs a)             lambda_aux = 0.5

CE_w is the per-pixel cross-entropy with class weights, 0 on ignored pixels (255), and both means
run over all B*H*W pixels, so ignored pixels still add their V. The class weights
(docs/METHODS.md, "Seg-Uncertainty"; ``--class-balance --often-balance --max-value 7``) are
recomputed on every batch of pseudo-labels from the pixel counts n_c of its N images::

    w_c     = max_weight if n_c < small_class_pixels * N else 1
    often   <- m * often + (1 - m) * (max_weight where n_c = 0 else 1)     m = 0.9, running state
    weight  = w * often

``often`` is a buffer (saved in checkpoints: resume is exact). With several processes the counts
are summed over them first, as the official DataParallel run counted the whole batch.

Streams: ``target``, the pseudo-labeled real images (a ``segshift pseudo-label`` folder, 255 =
not kept; ``labeled: true``). With ``labeled: false`` the target images are labeled on the fly by
a frozen copy of the initial network (``model.init_from``, the stage-1 model), as the official
``generate_plabel_cityscapes.py``: argmax of main + 0.5 x aux, no threshold (without test-time
flips and scales). The paper trains on the target alone ("we do not use source-domain training
data"); ``source_weight > 0`` adds the labeled ``source`` stream with plain cross-entropy on both
heads (main + lambda_aux x aux, over valid pixels).

Two heads: a multi-level DeepLab-v2 (``model.params.multi_level: true``) has its own auxiliary
classifier on layer3 (output ``aux``). Other models (the smp ones, e.g. ``fast``) predict one
output; then the method owns a small auxiliary classifier (3x3 conv to ``aux_channels``,
BatchNorm, ReLU, 1x1 conv to the classes) on the encoder stage ``aux_feature`` (default -2, the
stage before the last, as DeepLab-v2's layer3). Its last layer starts at N(0, 0.001), as the
official classifiers, so it first predicts near-uniformly instead of confidently disagreeing with
a trained main head. It is trained by the model's optimizer at the head learning rate, saved with
the method's state, and left out of the exported model, which evaluates the main output.

Not reproduced: the paper's DeepLab-v2 heads (GroupNorm, SE blocks, dropout, main head on
layer3 + layer4); the crop retries looking for > 10 classes; the fused main + 0.5 x aux
prediction at test time (segshift evaluates ``out``). Official ``train_ft.py`` also forwards
unlabeled target images for adversarial terms that README's stage-2 command weights 0.

Example config::

    method: {name: uncertainty, params: {lambda_aux: 0.5, max_weight: 7.0}}
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from segshift.errors import ConfigError
from segshift.methods.base import Method
from segshift.methods.common.ema import make_teacher
from segshift.methods.common.losses import cross_entropy, resize_logits
from segshift.methods.common.optim import build_optimizer, param_groups
from segshift.models import build_model
from segshift.registry import METHODS

logger = logging.getLogger(__name__)

PSEUDO_LABEL_AUX_WEIGHT = 0.5  # generate_plabel_cityscapes.py: softmax(0.5 * aux + main)


@dataclass
class UncertaintyParams:
    """Defaults from the README's stage-2 command (``train_ft.py``); docs/METHODS.md,
    "Seg-Uncertainty"."""

    lambda_aux: float = 0.5  # --lambda-seg 0.5: weight of the auxiliary head's rectified loss
    class_balance: bool = True  # --class-balance: max_weight for classes rare in the batch
    often_balance: bool = True  # --often-balance: the running 'often' weights of absent classes
    max_weight: float = 7.0  # --max-value 7 (train_ft.py's default is 2)
    small_class_pixels: int = 64 * 64  # per image: a class below it in the batch is "small"
    often_momentum: float = 0.9  # often <- 0.9 often + 0.1 often_now
    source_weight: float = 0.0  # the paper fine-tunes on pseudo-labeled target images only
    aux_feature: int = -2  # encoder stage of the method's own aux classifier (models without aux)
    aux_channels: int = 64  # width of that classifier's hidden 3x3 conv


def prediction_variance(logits: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Seg-Uncertainty's variance of ``logits`` against ``other`` (both (B,C,H,W)): the per-pixel
    KL(softmax(other) || softmax(logits)) in nats, (B,H,W). Gradients flow into both."""
    return F.kl_div(
        torch.log_softmax(logits.float(), dim=1),
        torch.softmax(other.float(), dim=1),
        reduction="none",
    ).sum(dim=1)


def rectified_loss(
    logits: torch.Tensor,
    other: torch.Tensor,
    label: torch.Tensor,
    *,
    class_weight: torch.Tensor | None = None,
    ignore_index: int = 255,
    align_corners: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean(CE_w(logits, label) * exp(-V)) + mean(V)`` over all pixels, V from
    :func:`prediction_variance`; returns (loss, V).

    ``logits``/``other`` (B,C,h,w) are upsampled to the (B,H,W) ``label`` first; ``class_weight``
    (C,) multiplies each pixel's CE by its label's weight (as ``nn.CrossEntropyLoss(weight=...,
    reduction='none')``). With identical heads V = 0 and the loss is the CE averaged over all
    pixels, ignored ones counting 0.
    """
    size = tuple(label.shape[-2:])
    logits = resize_logits(logits, size, align_corners).float()
    other = resize_logits(other, size, align_corners).float()
    variance = prediction_variance(logits, other)
    weight = torch.exp(-variance)
    if class_weight is not None:
        known = label.clamp(max=class_weight.numel() - 1)  # ignored pixels: CE is 0 anyway
        weight = weight * class_weight.to(weight)[known]
    ce = cross_entropy(logits, label, ignore_index, average="all", weight=weight)
    return ce + variance.mean(), variance


def class_weights(
    counts: torch.Tensor,
    num_images: float | torch.Tensor,
    often: torch.Tensor,
    *,
    max_weight: float = 7.0,
    small_class_pixels: int = 64 * 64,
    often_balance: bool = True,
    momentum: float = 0.9,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seg-Uncertainty's class weights from one batch's (C,) pixel ``counts`` over
    ``num_images`` images and the running (C,) ``often``; returns (weight, updated often).

    ``w_c = max_weight`` if ``counts_c < small_class_pixels * num_images`` else 1; ``often``
    moves by ``momentum`` towards ``max_weight`` for classes absent from the batch, towards 1 for
    the others (towards 1 for all without ``often_balance``); the weight is ``w * often``.
    """
    counts = counts.float()
    ones = torch.ones_like(counts)
    small = torch.where(counts < small_class_pixels * num_images, max_weight * ones, ones)
    often_now = torch.where(counts == 0, max_weight * ones, ones) if often_balance else ones
    often = momentum * often.to(counts) + (1.0 - momentum) * often_now
    return small * often, often


class AuxiliaryClassifier(nn.Sequential):
    """The method's own second head for models without one: (B,in,h,w) -> (B,classes,h,w)."""

    def __init__(self, in_channels: int, hidden: int, num_classes: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, num_classes, 1),
        )
        # As the official classifiers' N(0, 0.001): near-uniform predictions at first, so a new
        # head does not start out confidently disagreeing with a trained main head.
        nn.init.normal_(self[-1].weight, 0.0, 0.001)
        nn.init.zeros_(self[-1].bias)


@METHODS.register("uncertainty")
class Uncertainty(Method):
    """A segmenter with two heads, fine-tuned on pseudo-labels by the rectified loss."""

    Params = UncertaintyParams

    def __init__(self, cfg: DictConfig, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__(cfg, num_classes, ignore_index)
        params = self.params
        self._check_params()
        self.streams = ("target", "source") if params.source_weight > 0 else ("target",)
        self.model = build_model(cfg.model, num_classes)
        self.register_buffer("often_weight", torch.ones(num_classes))
        has_aux, channels = self._probe()
        self.aux_head = (
            None if has_aux else AuxiliaryClassifier(channels, params.aux_channels, num_classes)
        )
        self.teacher = None
        if not OmegaConf.select(cfg, "data.streams.target.labeled", default=True):
            self.teacher = make_teacher(self.model)
        self.train()

    def _check_params(self) -> None:
        p = self.params
        for key in ("lambda_aux", "source_weight", "small_class_pixels"):
            if getattr(p, key) < 0:
                raise ConfigError(f"method.params.{key}: must be >= 0, got {getattr(p, key)}")
        if p.max_weight < 1:
            raise ConfigError(f"method.params.max_weight: must be >= 1, got {p.max_weight}")
        if not 0.0 <= p.often_momentum <= 1.0:
            raise ConfigError(
                f"method.params.often_momentum: must be in [0, 1], got {p.often_momentum}"
            )
        if p.aux_channels < 1:
            raise ConfigError(f"method.params.aux_channels: must be >= 1, got {p.aux_channels}")

    def train(self, mode: bool = True) -> Uncertainty:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # generate_plabel predicts in eval mode
        return self

    @torch.no_grad()
    def _probe(self) -> tuple[bool, int]:
        """(model predicts "aux", channels of encoder stage ``aux_feature``) from one eval-mode
        forward of a blank image (BatchNorm statistics and the RNG are left alone)."""
        was_training = self.model.training
        self.model.eval()
        try:
            device = next(self.model.parameters()).device
            outputs, features, _ = self._forward_caught(torch.zeros(1, 3, 64, 64, device=device))
        finally:
            self.model.train(was_training)
        if "aux" in outputs:
            return True, 0
        return False, self._aux_stage(features).shape[1]

    def _forward_caught(self, image: torch.Tensor) -> tuple[dict[str, torch.Tensor], Any, Any]:
        """The model's outputs, what its encoder returned and the encoder's input (H, W).

        A forward hook on ``model.encoder`` catches its features in the model's own forward, so
        the encoder runs once; the hook lives for this call only.
        """
        caught: dict[str, Any] = {}

        def catch(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            caught["features"], caught["size"] = output, tuple(inputs[0].shape[-2:])

        handle = self.model.encoder.register_forward_hook(catch)
        try:
            outputs = self.model(image)
        finally:
            handle.remove()
        return outputs, caught.get("features"), caught.get("size")

    def _aux_stage(self, features: Any) -> torch.Tensor:
        """Stage ``aux_feature`` of the encoder's features (a list of (B,C_i,h_i,w_i))."""
        key = self.params.aux_feature
        if not isinstance(features, (list, tuple)) or not -len(features) <= key < len(features):
            stages = len(features) if isinstance(features, (list, tuple)) else "no list of"
            raise ConfigError(
                f"method.params.aux_feature: {key} is not a stage of the encoder of "
                f"model.arch={self.cfg.model.arch} ({stages} stages); the model has no 'aux' "
                "output, so the method puts its auxiliary classifier on that stage"
            )
        return features[key]

    def predict(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(main, aux) logits of (B,3,H,W) RGB images in [0, 1], each at its head's stride."""
        if self.aux_head is None:
            outputs = self.model(image)
            return outputs["out"], outputs["aux"]
        outputs, features, (padded_h, padded_w) = self._forward_caught(image)
        aux = self.aux_head(self._aux_stage(features))
        # smp models pad the input to their stride; keep the cells of the real image, as they do
        rows = math.ceil(image.shape[-2] * aux.shape[-2] / padded_h)
        cols = math.ceil(image.shape[-1] * aux.shape[-1] / padded_w)
        return outputs["out"], aux[..., :rows, :cols]

    @torch.no_grad()
    def online_pseudo_labels(self, image: torch.Tensor) -> torch.Tensor:
        """(B,H,W) argmax of the frozen initial network's main + 0.5 x aux logits, no threshold."""
        outputs = self.teacher(image)
        logits = outputs["out"].float()
        if "aux" in outputs:
            logits = logits + PSEUDO_LABEL_AUX_WEIGHT * outputs["aux"].float()
        size = tuple(image.shape[-2:])
        return resize_logits(logits, size, self.model.align_corners).argmax(dim=1)

    @torch.no_grad()
    def update_class_weights(self, label: torch.Tensor) -> torch.Tensor | None:
        """This batch's (C,) class weights; updates the running ``often_weight``. None without
        ``class_balance`` (the official weights then stay 1)."""
        p = self.params
        if not p.class_balance:
            return None
        valid = label[label < self.num_classes]
        totals = torch.cat(
            [
                torch.bincount(valid, minlength=self.num_classes).float(),
                torch.tensor([float(label.shape[0])], device=label.device),
            ]
        )
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(totals)  # the whole batch over all processes, as DataParallel's
        weight, often = class_weights(
            totals[:-1],
            totals[-1],
            self.often_weight,
            max_weight=p.max_weight,
            small_class_pixels=p.small_class_pixels,
            often_balance=p.often_balance,
            momentum=p.often_momentum,
        )
        self.often_weight.copy_(often)
        return weight

    def training_step(self, batch: dict[str, dict[str, Any]], step: int) -> dict[str, torch.Tensor]:
        params, align = self.params, self.model.align_corners
        target = batch["target"]
        image = target["image"]
        label = target["label"] if self.teacher is None else self.online_pseudo_labels(image)
        class_weight = self.update_class_weights(label)
        main, aux = self.predict(image)
        common = {"class_weight": class_weight, "ignore_index": self.ignore_index}
        loss_main, variance = rectified_loss(main, aux, label, align_corners=align, **common)
        loss_aux, _ = rectified_loss(aux, main, label, align_corners=align, **common)
        loss = loss_main + params.lambda_aux * loss_aux
        out = {
            "rectified": loss_main.detach(),
            "rectified_aux": loss_aux.detach(),
            "variance": variance.mean().detach(),
            "kept": (label != self.ignore_index).float().mean(),
        }
        if params.source_weight > 0:
            source = batch["source"]
            source_main, source_aux = self.predict(source["image"])
            ce = cross_entropy(source_main, source["label"], self.ignore_index, align_corners=align)
            ce_aux = cross_entropy(
                source_aux, source["label"], self.ignore_index, align_corners=align
            )
            source_loss = ce + params.lambda_aux * ce_aux
            loss = loss + params.source_weight * source_loss
            out["ce_source"] = source_loss.detach()
        return {"loss": loss, **out}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        # Warned here, where training starts: restoring a run for evaluation drops init_from.
        if self.teacher is not None and not OmegaConf.select(self.cfg, "model.init_from"):
            logger.warning(
                "uncertainty: data.streams.target is unlabeled, so the initial network labels it; "
                "without model.init_from (the stage-1 run) those labels are random"
            )
        optim = self.cfg.optim
        groups = param_groups(
            self.model, optim.lr, optim.head_lr_mult, optim.official_param_repeats
        )
        if self.aux_head is not None:
            groups.append(
                {
                    "params": list(self.aux_head.parameters()),
                    "lr": optim.lr * optim.head_lr_mult,
                    "name": "aux_head",
                }
            )
        return {"model": build_optimizer(optim, groups)}

    def eval_model(self) -> nn.Module:
        return self.model
