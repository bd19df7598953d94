"""CycleGAN: unpaired image translation source <-> target (Zhu et al., "Unpaired Image-to-Image
Translation using Cycle-Consistent Adversarial Networks", ICCV 2017; official code
junyanz/pytorch-CycleGAN-and-pix2pix, ``models/cycle_gan_model.py``), with CyCADA's optional
semantic consistency (Hoffman et al., "CyCADA: Cycle-Consistent Adversarial Domain Adaptation",
ICML 2018).

G_st maps source images to the target style (the official G_A), G_ts back (G_B); D_t tells real
target images from G_st's (D_A), D_s real source images from G_ts's (D_B)::

    L_G = g(D_t(G_st(s)), 1) + g(D_s(G_ts(t)), 1)                               (D frozen)
        + lambda * (|G_ts(G_st(s)) - s|_1 + |G_st(G_ts(t)) - t|_1)              cycle
        + lambda * lambda_idt * (|G_st(t) - t|_1 + |G_ts(s) - s|_1)             identity
        + w_sem * (CE(f(G_st(s)), y_s) + CE(f(G_ts(t)), argmax f(t)))           semantic (optional)
    L_D = 0.5 * [g(D_t(t), 1) + g(D_t(pool_t(G_st(s))), 0)] + the same for D_s  (inputs detached)

g is least squares (MSE to 1 / 0, ``gan_mode: ls``) or BCE (``vanilla``); the L1 terms are means
over elements; lambda 10, lambda_idt 0.5; each pool holds 50 generated images (`ImagePool`).
Images are the batch's [0, 1] RGB mapped to [-1, 1]. Shapes: source (B,3,H,W), target
(B,3,H',W'); labels are not needed (unlabeled streams work). f is a frozen segshift segmenter
(``semantic.checkpoint``: a finished run directory, its export/ or model.safetensors) in eval
mode; y_s is argmax f(s), or the source labels with ``semantic.use_labels`` when the batch has
them.

Optimisers and schedule come from the run's ``optim`` / ``schedule``: one optimizer over both
generators, one over both discriminators, each with its own scheduler (the paper: Adam 2e-4,
betas (0.5, 0.999), no weight decay, ``schedule.name: linear_decay``). One backward per step:
the generator terms are computed with the discriminators frozen and the discriminator terms on
detached images, so the gradients equal the official G-then-D updates (D's parameters do not
change in between, and the official D step also sees the images generated before G's update).

No segmenter: ``eval_model()`` is None, the trainer evaluates nothing and writes sample grids
(``visualise``); ``export/model.safetensors`` holds ``source_to_target.*`` and
``target_to_source.*`` (the two `ResnetGenerator` state dicts).

Differences from the official code: per-iteration rather than per-epoch schedule steps; under
DDP each process keeps its own pools (the official code trains on one process), and a resumed
multi-process run restores every process's pools from the main process's checkpoint.

Example config::

    method: {name: cyclegan, params: {n_blocks: 9, lambda_cycle: 10.0, pool_size: 50}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from segshift.config import ModelConfig, merge_into_schema
from segshift.errors import ConfigError
from segshift.methods.base import Method
from segshift.methods.common.augment import step_generator
from segshift.methods.common.gan import GAN_MODES, ImagePool, frozen, gan_loss
from segshift.methods.common.losses import cross_entropy
from segshift.methods.common.optim import build_optimizer
from segshift.models import build_model, drop_pretrained_weights
from segshift.models.cyclegan import ResnetGenerator, from_gan_range, to_gan_range
from segshift.models.discriminators import patchgan
from segshift.registry import METHODS

POOL_SALTS = {"target": 71, "source": 72}  # step_generator salts of the two pools
GRID_GAP = 2  # pixels between the tiles of a sample grid


@dataclass
class Semantic:
    """CyCADA's semantic consistency (off while ``checkpoint`` is null)."""

    checkpoint: str | None = None
    weight: float = 1.0
    use_labels: bool = False  # source ground truth instead of the segmenter's source predictions


@dataclass
class CycleGANParams:
    ngf: int = 64  # generator width
    n_blocks: int = 9  # residual blocks: 9 (256x256, the paper), 6 (128x128), fewer on CPU
    ndf: int = 64  # PatchGAN width
    n_layers_d: int = 3  # 3: the 70x70 PatchGAN
    lambda_cycle: float = 10.0  # lambda_A = lambda_B
    lambda_identity: float = 0.5  # relative to lambda_cycle (identity weight 5)
    pool_size: int = 50
    gan_mode: str = "ls"  # ls (least squares, the paper) | vanilla (BCE)
    semantic: Semantic = field(default_factory=Semantic)

    def __post_init__(self) -> None:
        for key in ("ngf", "ndf", "n_layers_d"):
            if getattr(self, key) < 1:
                raise ConfigError(f"method.params.{key}: must be >= 1, got {getattr(self, key)}")
        for key in ("n_blocks", "pool_size", "lambda_cycle", "lambda_identity"):
            if getattr(self, key) < 0:
                raise ConfigError(f"method.params.{key}: must be >= 0, got {getattr(self, key)}")
        if self.gan_mode not in GAN_MODES:
            raise ConfigError(
                f"method.params.gan_mode: '{self.gan_mode}' is not one of {', '.join(GAN_MODES)}"
            )


def load_segmenter(path: str) -> tuple[nn.Module, list[str]]:
    """A frozen segmenter in eval mode and its class names, from a finished segshift run (its
    ``export/``), an export directory or its ``model.safetensors``."""
    key = "method.params.semantic.checkpoint"
    from segshift.models import trained_weights_file

    try:
        weights = trained_weights_file(path)
    except ConfigError:
        raise ConfigError(
            f"{key}: no trained segmenter at {path} (give a finished run directory, its export/ "
            "directory or a model.safetensors)"
        ) from None
    meta_path = weights.parent / "config.json"
    try:
        meta = json.loads(meta_path.read_text())
        model_node, classes = meta["config"]["model"], list(meta["label_space"]["class_names"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{key}: {meta_path} is not a segmenter's export ({err})") from None
    model_cfg = merge_into_schema(ModelConfig(), model_node, origin=str(meta_path))
    drop_pretrained_weights(model_cfg)
    model = build_model(model_cfg, len(classes))
    try:
        model.load_state_dict(load_file(str(weights)))
    except (RuntimeError, SafetensorError) as err:
        summary = " ".join(str(err).split())[:400]
        raise ConfigError(f"{key}: {weights} does not fit its config ({summary})") from None
    return model.requires_grad_(False).eval(), classes


def image_grid(rows: list[list[torch.Tensor]], gap: int = GRID_GAP) -> torch.Tensor:
    """Tiles (3,h,w) in [0, 1], row by row, ``gap`` white pixels apart -> one (3,H,W) image."""
    lines = []
    for tiles in rows:
        height = max(t.shape[-2] for t in tiles)
        padded = [F.pad(t, (0, gap, 0, height - t.shape[-2]), value=1.0) for t in tiles]
        lines.append(torch.cat(padded, dim=-1)[..., :-gap])
    width = max(line.shape[-1] for line in lines)
    lines = [F.pad(line, (0, width - line.shape[-1], 0, gap), value=1.0) for line in lines]
    return torch.cat(lines, dim=-2)[..., :-gap, :].clamp(0.0, 1.0)


@METHODS.register("cyclegan")
class CycleGAN(Method):
    """CycleGAN (+ CyCADA semantic consistency) between the source and target streams."""

    streams = ("source", "target")
    sample_streams = ("source", "target")
    segments = False
    Params = CycleGANParams

    def __init__(self, cfg: DictConfig, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__(cfg, num_classes, ignore_index)
        p = self.params
        self.source_to_target = ResnetGenerator(ngf=p.ngf, n_blocks=p.n_blocks)  # G_A
        self.target_to_source = ResnetGenerator(ngf=p.ngf, n_blocks=p.n_blocks)  # G_B
        self.target_discriminator = patchgan(3, p.ndf, p.n_layers_d)  # D_A
        self.source_discriminator = patchgan(3, p.ndf, p.n_layers_d)  # D_B
        self.target_pool = ImagePool(p.pool_size)  # generated target-style images
        self.source_pool = ImagePool(p.pool_size)
        # one history per process: DDP must not broadcast the main process's pools
        self._ddp_params_and_buffers_to_ignore = [
            f"{pool}.{buffer}"
            for pool in ("target_pool", "source_pool")
            for buffer in ("images", "count")
        ]
        self.segmenter: nn.Module | None = None
        if p.semantic.checkpoint:
            self.segmenter, classes = load_segmenter(p.semantic.checkpoint)
            if p.semantic.use_labels and num_classes and len(classes) != num_classes:
                raise ConfigError(
                    f"method.params.semantic.checkpoint: the segmenter has {len(classes)} "
                    f"classes, the labeled data {num_classes}: semantic.use_labels needs the same"
                )

    def train(self, mode: bool = True) -> CycleGAN:
        super().train(mode)
        if self.segmenter is not None:  # frozen: always predicts in eval mode
            self.segmenter.eval()
        return self

    def training_step(self, batch: dict[str, dict[str, Any]], step: int) -> dict[str, torch.Tensor]:
        p = self.params
        source, target = batch["source"], batch["target"]
        real_s, real_t = to_gan_range(source["image"]), to_gan_range(target["image"])
        fake_t = self.source_to_target(real_s)
        fake_s = self.target_to_source(real_t)
        d_t, d_s = self.target_discriminator, self.source_discriminator
        with frozen(d_t, d_s):
            adversarial = gan_loss(d_t(fake_t), 1.0, p.gan_mode) + gan_loss(
                d_s(fake_s), 1.0, p.gan_mode
            )
        cycle = p.lambda_cycle * (
            F.l1_loss(self.target_to_source(fake_t).float(), real_s.float())
            + F.l1_loss(self.source_to_target(fake_s).float(), real_t.float())
        )
        identity = torch.zeros((), device=real_s.device)
        if p.lambda_identity > 0:
            identity = (
                p.lambda_cycle
                * p.lambda_identity
                * (
                    F.l1_loss(self.source_to_target(real_t).float(), real_t.float())
                    + F.l1_loss(self.target_to_source(real_s).float(), real_s.float())
                )
            )
        out = {
            "g_gan": adversarial.detach(),
            "cycle": cycle.detach(),
            "identity": identity.detach(),
        }
        generator = adversarial + cycle + identity
        if self.segmenter is not None:
            semantic = self.semantic_loss(source, target, fake_t, fake_s)
            generator = generator + p.semantic.weight * semantic
            out["semantic"] = semantic.detach()
        seed = self.cfg.seed
        pooled_t = self.target_pool.query(fake_t, step_generator(seed, step, POOL_SALTS["target"]))
        pooled_s = self.source_pool.query(fake_s, step_generator(seed, step, POOL_SALTS["source"]))
        d_target = 0.5 * (
            gan_loss(d_t(real_t), 1.0, p.gan_mode) + gan_loss(d_t(pooled_t), 0.0, p.gan_mode)
        )
        d_source = 0.5 * (
            gan_loss(d_s(real_s), 1.0, p.gan_mode) + gan_loss(d_s(pooled_s), 0.0, p.gan_mode)
        )
        out.update(d_target=d_target.detach(), d_source=d_source.detach())
        return {"loss": generator + d_target + d_source, **out}

    def semantic_loss(
        self,
        source: dict[str, Any],
        target: dict[str, Any],
        fake_t: torch.Tensor,
        fake_s: torch.Tensor,
    ) -> torch.Tensor:
        """CE(f(G_st(s)), y_s) + CE(f(G_ts(t)), argmax f(t)) with the frozen segmenter f."""
        seg = self.segmenter
        assert seg is not None
        align = bool(getattr(seg, "align_corners", False))
        labels_s = source.get("label") if self.params.semantic.use_labels else None
        with torch.no_grad():
            if labels_s is None:
                labels_s = self._predicted_labels(source["image"])
            labels_t = self._predicted_labels(target["image"])
        loss_s = cross_entropy(
            seg(from_gan_range(fake_t))["out"], labels_s, self.ignore_index, align_corners=align
        )
        loss_t = cross_entropy(
            seg(from_gan_range(fake_s))["out"], labels_t, self.ignore_index, align_corners=align
        )
        return loss_s + loss_t

    def _predicted_labels(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.segmenter(images)["out"]  # type: ignore[misc]
        align = bool(getattr(self.segmenter, "align_corners", False))
        logits = F.interpolate(
            logits.float(), images.shape[-2:], mode="bilinear", align_corners=align
        )
        return logits.argmax(dim=1)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        generators = [*self.source_to_target.parameters(), *self.target_to_source.parameters()]
        discriminators = [
            *self.target_discriminator.parameters(),
            *self.source_discriminator.parameters(),
        ]
        optim = self.cfg.optim
        return {
            "generators": build_optimizer(optim, [{"params": generators, "name": "generators"}]),
            "discriminators": build_optimizer(
                optim, [{"params": discriminators, "name": "discriminators"}]
            ),
        }

    def eval_model(self) -> None:
        return None

    def export_model(self) -> nn.Module:
        return nn.ModuleDict(
            {"source_to_target": self.source_to_target, "target_to_source": self.target_to_source}
        )

    def translate(self, images: torch.Tensor) -> torch.Tensor:
        """Source images (B, 3, H, W) RGB in [0, 1] in the target style, RGB in [0, 1] (the
        trainer's translation scores call it; `segshift.engine.label_free`)."""
        return from_gan_range(self.source_to_target(to_gan_range(images)))

    def visualise(self, batches: dict[str, dict[str, Any]]) -> torch.Tensor:
        """Rows ``source | translated | reconstructed`` for each fixed source image, then
        ``target | translated | reconstructed`` for each fixed target image."""
        rows = []
        for name, forward, backward in (
            ("source", self.source_to_target, self.target_to_source),
            ("target", self.target_to_source, self.source_to_target),
        ):
            real = batches[name]["image"]
            fake = forward(to_gan_range(real))
            rebuilt = backward(fake)
            for tiles in zip(real, from_gan_range(fake), from_gan_range(rebuilt)):
                rows.append([t.float() for t in tiles])
        return image_grid(rows)
