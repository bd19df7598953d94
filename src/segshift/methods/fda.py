"""FDA: Fourier Domain Adaptation (Yang & Soatto, "FDA: Fourier Domain Adaptation for Semantic
Segmentation", CVPR 2020; official code YanchaoYang/FDA, ``train.py``, ``utils/__init__.py``
``FDA_source_to_target``, ``model/deeplab.py`` ``ResNet101.forward``).

Each source image takes the low-frequency amplitude of the target image at the same batch index
(its phase, i.e. its content, is kept: ``transforms.fourier.fda_swap``), and the segmenter is
trained with cross-entropy on these "source in target style" images plus a robust (Charbonnier)
entropy on the target predictions::

    x_s->t = F^-1([M_b * |F(x_t)| + (1 - M_b) * |F(x_s)|, phase F(x_s)]),  b = floor(min(H,W) beta)
    L = CE(x_s->t, y_s) + [step >= entropy_start] * lambda_ent * mean_{b,h,w} (H_n^2 + eps)^eta

Shapes: source (Bs,3,H,W) + labels (Bs,H,W), target (Bt,3,H',W'), all RGB in [0, 1] (the swap
runs on raw images before the model normalises them, as the README insists). Source image i is
paired with target image i mod Bt. If the target's size differs from the source's, the target
images are resized (bilinear, antialiased) to the source size for the swap only; the entropy
term sees them at their own size. H_n is the per-pixel entropy of the target logits at the
model's own output resolution (before upsampling, as the official code), divided by ln C.

Defaults (paper sec. 3.2 and the README command): beta 0.01 (the paper also trains 0.05 and
0.09), lambda_ent 0.005, eta 2, eps 1e-8 (the code's; the paper writes 0.001^2), entropy from
the first step (README ``--switch2entropy=0``; the code's default is 50000). With a multi-level
model the aux output adds ``aux_weight`` x its CE, as ``supervised``; FDA's network has none.
Evaluated model: the segmenter.

The window is the official code's square one (b from the shorter side; the paper's Eq. 2 writes
beta H x beta W). Differences from the official code: the entropy is normalised by ln C instead
of the hard-coded 2.9444 (ln 19 rounded); the official gate ``i > switch2entropy`` starts one
step later than ``step >= entropy_start`` (``entropy_start = switch2entropy + 1`` is the exact
equivalent); when the entropy term is off the target forward runs without gradients (it still
updates BatchNorm statistics, as the official target forward does).

Not part of this method: the multi-band ensemble (FDA-MBT: softmax averaged over three models
trained with beta 0.01/0.05/0.09) is an evaluation over several runs, and its self-training
rounds are a pipeline over them.

Example config::

    method: {name: fda, params: {beta: 0.01, entropy_weight: 0.005, eta: 2.0}}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from segshift.errors import ConfigError
from segshift.methods.base import Method
from segshift.methods.common.losses import cross_entropy, robust_entropy
from segshift.methods.common.optim import segmenter_optimizer
from segshift.models import build_model
from segshift.registry import METHODS
from segshift.transforms.fourier import fda_swap, fda_window


@dataclass
class FDAParams:
    beta: float = 0.01  # --LB in the README command (code default 0.1)
    entropy_weight: float = 0.005  # --entW
    eta: float = 2.0  # --ita
    entropy_eps: float = 1e-8
    entropy_start: int = 0  # README --switch2entropy=0
    aux_weight: float = 0.1


def source_in_target(source: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """Source images (Bs,3,H,W) with the low-frequency amplitude of target i mod Bt.

    Targets of another size are resized (bilinear, antialiased) to (H, W) first. A window of
    b = 0 returns the source images themselves.
    """
    height, width = source.shape[-2:]
    if fda_window(height, width, beta) == 0:
        return source
    target = target[torch.arange(source.shape[0], device=target.device) % target.shape[0]]
    if target.shape[-2:] != source.shape[-2:]:
        target = F.interpolate(
            target, size=(height, width), mode="bilinear", align_corners=False, antialias=True
        )
    return fda_swap(source, target, beta)


@METHODS.register("fda")
class FDA(Method):
    """Source images in target style + robust target entropy (see the module docstring)."""

    streams = ("source", "target")
    Params = FDAParams

    def __init__(self, cfg: DictConfig, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__(cfg, num_classes, ignore_index)
        p = self.params
        if not 0.0 <= p.beta <= 0.5:
            raise ConfigError(f"method.params.beta: {p.beta} is outside [0, 0.5]")
        if p.entropy_start < 0:
            raise ConfigError(f"method.params.entropy_start: {p.entropy_start} is negative")
        self.model = build_model(cfg.model, num_classes)

    def _ce(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return cross_entropy(
            logits, label, self.ignore_index, align_corners=self.model.align_corners
        )

    def training_step(self, batch: dict[str, dict[str, Any]], step: int) -> dict[str, torch.Tensor]:
        p = self.params
        source, target = batch["source"], batch["target"]
        with torch.no_grad():
            images = source_in_target(source["image"], target["image"], p.beta)
        outputs = self.model(images)
        ce = self._ce(outputs["out"], source["label"])
        losses = {"ce": ce.detach()}
        loss = ce
        if "aux" in outputs and p.aux_weight > 0:
            aux = self._ce(outputs["aux"], source["label"])
            loss = loss + p.aux_weight * aux
            losses["ce_aux"] = aux.detach()
        active = step >= p.entropy_start and p.entropy_weight > 0
        with torch.set_grad_enabled(active):
            entropy = robust_entropy(self.model(target["image"])["out"], p.eta, p.entropy_eps)
        if active:
            loss = loss + p.entropy_weight * entropy
        return {"loss": loss, **losses, "entropy": entropy.detach()}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": segmenter_optimizer(self.model, self.cfg.optim)}

    def eval_model(self) -> nn.Module:
        return self.model
