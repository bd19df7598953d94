"""Parity of an exported ONNX model with its PyTorch model on real images.

`validation_images` reads the first batches of a run's validation set exactly as evaluation does
(``data.val``'s transform and resize, batches of one stored size); `compare` runs both models on
them and measures the largest absolute logit difference and the share of pixels whose argmax
class agrees. Used by ``segshift export`` (which fails when parity is off) and by
``benchmarks/export_onnx.py``.

Example::

    images = validation_images(cfg, batches=4)
    parity = compare(Deployable(model, "logits"), OnnxSegmenter("model.onnx"), images)
    print(parity.line())  # "32 images: max abs logit difference 1.4e-05, argmax agreement 100.000%"
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segshift.data import build_dataset
from segshift.engine.loaders import evaluation_loader
from segshift.errors import ConfigError
from segshift.models.onnx_runtime import OnnxSegmenter


@dataclass
class Parity:
    """What `compare` measured. ``max_abs_diff`` and ``max_abs_logit`` are None for an argmax
    export (its graph has no logits); ``agreement`` is a fraction of ``pixels``."""

    images: int
    pixels: int
    agreement: float
    max_abs_diff: float | None
    max_abs_logit: float | None

    def line(self) -> str:
        diff = "n/a (argmax output)" if self.max_abs_diff is None else f"{self.max_abs_diff:.3g}"
        return (
            f"{self.images} images: max abs logit difference {diff}, argmax agreement "
            f"{100 * self.agreement:.3f}%"
        )

    def relative_diff(self) -> float | None:
        """``max_abs_diff`` relative to the logits' scale (max |logit|, at least 1)."""
        if self.max_abs_diff is None or self.max_abs_logit is None:
            return None
        return self.max_abs_diff / max(1.0, self.max_abs_logit)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def validation_images(cfg: Any, batches: int, workers: int = 0) -> list[torch.Tensor]:
    """The first ``batches`` batches (``data.val.batch_size`` images each, one stored size per
    batch) of ``cfg.data.val`` as (B, 3, H, W) RGB [0, 1] tensors; a ConfigError without data.val.
    """
    val = cfg.data.val
    if val is None:
        raise ConfigError(
            "data.val: the run has no validation set to check the export on; give one "
            "(data.val.name=... data.val.root=...) or --verify-batches 0"
        )
    dataset = build_dataset(val, train=False)
    count = min(len(dataset), batches * max(1, int(val.batch_size)))
    loader = evaluation_loader(dataset, range(count), int(val.batch_size), workers)
    return [batch["image"] for _, batch in zip(range(batches), loader)]


def fit_size(images: torch.Tensor, size: Sequence[int] | None) -> torch.Tensor:
    """``images`` resized bilinearly to ``size`` (a fixed-size export's input), if it differs."""
    if size is None or tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=tuple(size), mode="bilinear", align_corners=False)


class ParityCounter:
    """Accumulates `Parity` over batches of (PyTorch output, ONNX output) pairs.

    ``output``: "logits" ((B, C, h, w); the argmax is compared at input size, logits at another
    stride, DeepLab-v2's 1/8, resized with ``align_corners`` first, as
    `segshift.evaluation.predict` does) or "argmax" ((B, H, W) class ids).
    """

    def __init__(self, output: str = "logits", align_corners: bool = False) -> None:
        self.output, self.align = output, align_corners
        self.agree = self.pixels = self.images = 0
        self.max_diff = self.max_logit = 0.0

    def update(self, ours: torch.Tensor, theirs: torch.Tensor, size: Sequence[int]) -> None:
        """One batch: ``ours`` from PyTorch, ``theirs`` from ONNX Runtime, inputs of ``size``."""
        if tuple(ours.shape) != tuple(theirs.shape):
            raise ConfigError(
                f"the ONNX output {tuple(theirs.shape)} differs from PyTorch's "
                f"{tuple(ours.shape)} on {tuple(size)} inputs"
            )
        ours, theirs = ours.cpu(), theirs.cpu()
        if self.output == "logits":
            self.max_diff = max(self.max_diff, float((ours - theirs).abs().max()))
            self.max_logit = max(self.max_logit, float(ours.abs().max()))
            ours, theirs = (_classes(t, tuple(size), self.align) for t in (ours, theirs))
        self.agree += int((ours == theirs).sum())
        self.pixels += ours.numel()
        self.images += len(ours)

    def result(self) -> Parity:
        logits = self.output == "logits"
        return Parity(
            images=self.images,
            pixels=self.pixels,
            agreement=self.agree / max(1, self.pixels),
            max_abs_diff=self.max_diff if logits else None,
            max_abs_logit=self.max_logit if logits else None,
        )


def compare(
    reference: nn.Module, exported: OnnxSegmenter, images: Sequence[torch.Tensor]
) -> Parity:
    """Run ``reference`` (the PyTorch module that was exported, returning logits or class ids)
    and ``exported`` on each batch of ``images`` (resized to a fixed-size export's size); return
    the largest absolute difference of the logits and the argmax agreement (`ParityCounter`)."""
    counter = ParityCounter(exported.output, exported.align_corners)
    reference.eval()
    with torch.inference_mode():
        for batch in images:
            batch = fit_size(batch, exported.fixed_size)
            counter.update(reference(batch), exported.run(batch), batch.shape[-2:])
    return counter.result()


def _classes(logits: torch.Tensor, size: tuple[int, int], align: bool) -> torch.Tensor:
    if tuple(logits.shape[-2:]) != size:
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=align)
    return logits.argmax(dim=1)
