"""DAFormer self-training (Hoyer et al., CVPR 2022), optionally with MIC's masked image
consistency (Hoyer et al., CVPR 2023).

An EMA teacher pseudo-labels the target batch; onto each target image go the source pixels of
half of the classes of the *whole* source batch, drawn anew for every image (ClassMix); the
student learns from the source batch, the mixed batch and, with MIC, from the target batch with
most of its patches hidden::

    y_hat, conf = argmax / max softmax(teacher(x_t))      (B,H,W), logits resized to H x W
    w           = #(conf >= 0.968) / (B*H*W), then 0 on the top 15 / bottom 120 rows   (B,H,W)
    M_i         = [y_s,i in C_i], C_i = ceil(n/2) of the n classes of y_s (whole batch), per i
    x_m, y_m, w_m = aug(M x_s + (1-M) x_t),  M y_s + (1-M) y_hat,  M + (1-M) w
    L = CE(student(x_s), y_s) + fd_lambda * L_fd + CE_w_m(student(x_m), y_m)
        + mic_lambda * CE_w(student(mask(aug(x_t))), y_hat)

CE averages over all B*H*W pixels, ignored ones counting 0 (mmseg; ``loss_average``). Images are
(B,3,H,W) RGB in [0, 1]; source and target batches need the same shape.

- EMA: ``theta_T <- a_t theta_T + (1 - a_t) theta_S``, ``a_t = min(1 - 1/(t+1), 0.999)`` where t
  counts the optimizer steps taken, as DAFormer updates at the start of iteration t.
- Feature distance (FD): ``d = ||f_student - f_imagenet||_2`` over channels of the encoder's last
  stage on the source image (not squared), f_imagenet from a frozen copy of the initial
  (pretrained) network; averaged over feature cells whose label block (``downscale_label_ratio``)
  is one of ``fd_classes`` (Cityscapes' thing classes, by name). Needs ``model.encoder_weights``;
  without pretrained weights FD is off (a warning says so). The frozen copy is rebuilt from the
  pretrained weights, so it is kept out of checkpoints.
- MIC: the target image gets a fresh colour jitter / blur, then a grid of round(H/b) x round(W/b)
  blocks (b = ``mic_block_size``) of which each is kept with probability 1 - ``mic_ratio``.
  MIC zeroes hidden pixels of the *normalised* image, i.e. paints them in the normalisation mean
  colour; batches here are un-normalised [0, 1] RGB, so hidden pixels get the model's
  ``input_norm`` mean (mean / scale, in RGB order). It reuses y_hat and w (no separate teacher).

DAFormer evaluates the student (mmseg's ``UDADecorator.simple_test`` uses ``get_model()``), so
``eval_model()`` is the student. An ``aux`` output (multi-level DeepLab-v2) is ignored.

Defaults follow the papers and lhoyer/DAFormer ``configs/daformer/gta2cs_uda_warm_fdthings_rcs_
croppl_a999_daformer_mitb5_s0.py`` (MIC: lhoyer/MIC, block 32 at 512 crops, ratio 0.7).
Deviations from the official code, reachable by parameters where they change numbers:

- ``ema_parameters_only`` (official: true): the official EMA skips buffers. Default: whole state.
- ``teacher_train_mode`` (official: true): the official teacher keeps BatchNorm in train mode
  (dropout and drop-path off). Default: the teacher predicts in eval mode.
- ``include_ignore`` (official: true): 255 is among the ClassMix candidates. Default: left out.
- Jitter and blur coins are drawn per image (official: one coin per batch); MIC's blur follows
  ``augment`` (official MIC draws its blur coin even when the host's blur is off). kornia's
  current ``ColorJitter`` scales brightness; DAFormer's kornia 0.5.8 shifted it (``ColorJiggle``).
- FD with no thing-class cell gives 0 (official: NaN without gradient, which would stop the
  trainer). Label blocks are pooled adaptively to the feature grid: the same as DAFormer's
  ``avg_pool2d`` when the feature size divides the label size.

Example config::

    method: {name: selftrain, params: {mic_lambda: 1.0, mic_block_size: 32}}
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from timm.layers import DropPath
from torch import nn

from segshift.data import build_dataset
from segshift.errors import ConfigError
from segshift.methods.base import Method
from segshift.methods.common.augment import StrongAugment, step_generator, step_seed, strong_augment
from segshift.methods.common.ema import ema_update, make_teacher
from segshift.methods.common.losses import cross_entropy
from segshift.methods.common.mixing import class_mix_masks, mixed_batch
from segshift.methods.common.optim import segmenter_optimizer
from segshift.methods.common.pseudo_label import WEIGHTINGS, ignore_margins, pseudo_label
from segshift.models import build_model
from segshift.registry import METHODS

logger = logging.getLogger(__name__)

MIX_SALT, MIX_AUGMENT_SALT, MIC_AUGMENT_SALT, MIC_MASK_SALT = 1, 2, 3, 4
# Cityscapes train ids 6, 7, 11-18: DAFormer's imnet_feature_dist_classes.
THING_CLASSES = (
    "traffic light", "traffic sign", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip
FROZEN_COPY = "imagenet_model"


@dataclass
class SelfTrainParams:
    """DAFormer (+ MIC) hyperparameters; defaults from the papers' GTA5 -> Cityscapes configs."""

    alpha: float = 0.999  # EMA decay, with the min(1 - 1/(t+1), alpha) warm-up
    ema_parameters_only: bool = False  # official: true
    teacher_train_mode: bool = False  # official: true
    threshold: float = 0.968  # pseudo_threshold
    weighting: str = "fraction"  # share of confident pixels, one scalar per batch
    ignore_margins: list[int] = field(default_factory=lambda: [15, 120])  # top, bottom rows
    mix_classes_from: str = "batch"  # DAFormer: candidates from the whole source batch, drawn
    # per image; DACS: "image", the image's own classes
    include_ignore: bool = False  # official: true
    loss_average: str = "all"  # mmseg: mean over all pixels
    augment: StrongAugment = field(default_factory=lambda: StrongAugment(jitter=0.2, hue=0.2))
    fd_lambda: float = 0.005
    fd_classes: list[str] | None = field(default_factory=lambda: list(THING_CLASSES))
    fd_ratio: float = 0.75  # share a class needs in a label block to name it
    mic_lambda: float = 0.0  # 1.0 in MIC
    mic_block_size: int = 32
    mic_ratio: float = 0.7


@METHODS.register("selftrain")
class SelfTrain(Method):
    """Student + EMA teacher: source, ClassMix and (optionally) masked-target losses."""

    streams = ("source", "target")
    Params = SelfTrainParams

    def __init__(self, cfg: DictConfig, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__(cfg, num_classes, ignore_index)
        p = self.params
        self.check_choices(
            weighting=WEIGHTINGS, mix_classes_from=("image", "batch"), loss_average=("valid", "all")
        )
        if len(p.ignore_margins) != 2 or min(p.ignore_margins) < 0 or p.mic_block_size < 1:
            raise ConfigError(
                "method.params: ignore_margins needs [top, bottom] >= 0 and mic_block_size >= 1"
            )
        self.model = build_model(cfg.model, num_classes)
        self.teacher = make_teacher(self.model)
        self.imagenet_model: nn.Module | None = None
        self.fd_class_ids: list[int] | None = None
        if p.fd_lambda > 0 and cfg.model.encoder_weights is None:
            logger.warning(
                "selftrain: the ImageNet feature distance is off: model.encoder_weights"
                " is null, so there is no pretrained encoder to stay close to"
            )
        elif p.fd_lambda > 0:
            if not hasattr(self.model, "encode"):
                raise ConfigError(
                    f"method.params.fd_lambda: model '{cfg.model.arch}' has no encode()"
                )
            self.imagenet_model = make_teacher(self.model)  # frozen copy of the pretrained weights
            if p.fd_classes is not None:
                self.fd_class_ids = _class_ids(cfg, p.fd_classes)
            self.register_state_dict_post_hook(_drop_frozen_copy)
            self.register_load_state_dict_post_hook(_allow_missing_frozen_copy)
        self.train()

    def train(self, mode: bool = True) -> SelfTrain:
        super().train(mode)
        if not self.params.teacher_train_mode:
            self.teacher.eval()  # segshift's policy: the teacher predicts with running statistics
        else:  # DAFormer: BatchNorm uses the target batch, dropout and drop-path are off
            for module in self.teacher.modules():
                if isinstance(module, (nn.modules.dropout._DropoutNd, DropPath)):
                    module.eval()
        if self.imagenet_model is not None:
            self.imagenet_model.eval()
        return self

    def training_step(self, batch: dict[str, dict[str, Any]], step: int) -> dict[str, torch.Tensor]:
        source, target = batch["source"], batch["target"]
        p, align, seed = self.params, self.model.align_corners, self.cfg.seed

        def ce(images: torch.Tensor, label: torch.Tensor, weight: torch.Tensor | None = None):
            logits = self.model(images)["out"]
            return cross_entropy(
                logits,
                label,
                self.ignore_index,
                average=p.loss_average,
                weight=weight,
                align_corners=align,
            )

        fd_on = self.imagenet_model is not None
        with _last_stage(self.model.encoder) if fd_on else nullcontext([]) as features:
            source_loss = ce(source["image"], source["label"])
        out = {"source": source_loss.detach()}
        total = source_loss
        if fd_on:
            distance = self._feature_distance(source["image"], source["label"], features[-1])
            total = total + p.fd_lambda * distance
            out["feature_distance"] = distance.detach()

        with torch.no_grad():
            teacher_logits = self.teacher(target["image"])["out"]
        pseudo = pseudo_label(
            teacher_logits,
            size=tuple(target["image"].shape[-2:]),
            threshold=p.threshold,
            weighting=p.weighting,
            align_corners=align,
        )
        out["pseudo_weight"] = pseudo.weight.mean()  # the share of confident pixels
        pseudo = replace(pseudo, weight=ignore_margins(pseudo.weight, *p.ignore_margins))
        mask = class_mix_masks(
            source["label"],
            step_generator(seed, step, MIX_SALT),
            ignore_index=self.ignore_index,
            include_ignore=p.include_ignore,
            classes_from=p.mix_classes_from,
        )
        image, label, weight = mixed_batch(source, target, pseudo, mask)
        image = strong_augment(image, step_seed(seed, step, MIX_AUGMENT_SALT), p.augment)
        mixed_loss = ce(image, label, weight)
        total = total + mixed_loss
        out["mixed"] = mixed_loss.detach()

        if p.mic_lambda > 0:
            image = strong_augment(
                target["image"], step_seed(seed, step, MIC_AUGMENT_SALT), p.augment
            )
            generator = step_generator(seed, step, MIC_MASK_SALT)
            image = block_mask(image, p.mic_block_size, p.mic_ratio, self.fill_colour(), generator)
            masked_loss = ce(image, pseudo.label, pseudo.weight)
            total = total + p.mic_lambda * masked_loss
            out["masked"] = masked_loss.detach()
        return {"loss": total, **out}

    def _feature_distance(
        self, image: torch.Tensor, label: torch.Tensor, features: torch.Tensor
    ) -> torch.Tensor:
        """Mean L2 distance (B,h,w) to the frozen ImageNet features, over thing-class cells."""
        with torch.no_grad():
            reference = self.imagenet_model.encode(image)
        distance = torch.linalg.vector_norm((features - reference).float(), dim=1)
        if self.fd_class_ids is None:
            return distance.mean()
        blocks = downscale_label_ratio(
            label,
            tuple(distance.shape[-2:]),
            self.params.fd_ratio,
            self.num_classes,
            self.ignore_index,
        )
        keep = torch.isin(blocks, torch.tensor(self.fd_class_ids, device=blocks.device)).float()
        return (distance * keep).sum() / keep.sum().clamp(min=1)

    def fill_colour(self) -> tuple[float, float, float]:
        """The RGB [0, 1] colour that the model normalises to 0 (MIC's hidden pixels)."""
        norm = self.model.input_norm.norm
        colour = [m / norm.scale for m in norm.mean]
        return tuple(colour[::-1] if norm.channel_order == "bgr" else colour)  # type: ignore[return-value]

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": segmenter_optimizer(self.model, self.cfg.optim)}

    def after_step(self, step: int) -> None:
        # ``step`` is 0-based, so step + 1 optimizer steps have been taken: DAFormer's t.
        ema_update(
            self.teacher,
            self.model,
            self.params.alpha,
            step + 1,
            parameters_only=self.params.ema_parameters_only,
        )

    def eval_model(self) -> nn.Module:
        return self.model  # DAFormer evaluates the student


def downscale_label_ratio(
    label: torch.Tensor,
    size: tuple[int, int],
    min_ratio: float,
    num_classes: int,
    ignore_index: int = 255,
) -> torch.Tensor:
    """(B,H,W) labels -> (B,h,w) block labels: the majority class of each block if it covers at
    least ``min_ratio`` of the block (ignored pixels count as a class of their own), else
    ``ignore_index`` (DAFormer's ``downscale_label_ratio``; blocks via adaptive average pooling)."""
    classes = torch.where(label == ignore_index, num_classes, label)
    one_hot = F.one_hot(classes, num_classes + 1).permute(0, 3, 1, 2).float()
    ratio, block = F.adaptive_avg_pool2d(one_hot, size).max(dim=1)
    return block.masked_fill((block == num_classes) | (ratio < min_ratio), ignore_index)


def block_mask(
    images: torch.Tensor,
    block: int,
    ratio: float,
    fill: tuple[float, float, float],
    generator: torch.Generator,
) -> torch.Tensor:
    """MIC's ``BlockMaskGenerator``: keep each cell of a round(H/block) x round(W/block) grid when
    U(0,1) > ``ratio`` (per image), upsample by nearest, paint hidden pixels in ``fill`` (RGB)."""
    batch, _, height, width = images.shape
    grid = (max(1, round(height / block)), max(1, round(width / block)))
    keep = (torch.rand((batch, 1, *grid), generator=generator) > ratio).float()
    keep = F.interpolate(keep, size=(height, width), mode="nearest").to(images)
    colour = torch.tensor(fill, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return keep * images + (1 - keep) * colour


@contextmanager
def _last_stage(encoder: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the last-stage features ``encoder`` returns inside the block (what the model's
    ``encode`` gives), so FD uses the source forward itself, as DAFormer does."""
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        captured.append(output[-1] if isinstance(output, (list, tuple)) else output)

    handle = encoder.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def _class_ids(cfg: DictConfig, names: list[str]) -> list[int]:
    """Train ids of class ``names`` in the run's label space (validation set, else source)."""
    dataset_cfg = cfg.data.val if cfg.data.val is not None else cfg.data.streams["source"]
    class_names = list(build_dataset(dataset_cfg, train=False).label_space.class_names)
    missing = [n for n in names if n not in class_names]
    if missing:
        raise ConfigError(
            f"method.params.fd_classes: {missing} are not classes of this label "
            f"space ({', '.join(class_names)})"
        )
    return [class_names.index(n) for n in names]


def _drop_frozen_copy(module: nn.Module, state: dict, prefix: str, _meta: Any) -> None:
    for key in [k for k in state if k.startswith(f"{prefix}{FROZEN_COPY}.")]:
        del state[key]


def _allow_missing_frozen_copy(_module: nn.Module, keys: Any) -> None:
    keys.missing_keys[:] = [k for k in keys.missing_keys if FROZEN_COPY not in k.split(".")]
