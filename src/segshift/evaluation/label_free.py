"""Run the label-free scores (`segshift.evaluation.scores`) of a model over unlabeled images.

``score_model`` predicts every batch of a loader once (whole or sliding-window inference as the
run's ``eval`` says, without test-time augmentation), feeds the scores' accumulators and returns
``{name: value}``; ``agreement`` and ``mixval`` run the extra forward passes they need.
``source_statistics`` reads labeled source images for the two scores that compare with the
source: its label histogram (``class_shift``) and ATC's threshold (the model's confidence on
source pixels, fitted so that the share above it equals the source pixel accuracy).

Example::

    >>> loader = evaluation_loader(target_set, spread_indices(len(target_set), 64), 4)
    >>> source = source_statistics(model, source_loader, 11, fit_atc=True)
    >>> score_model(model, loader, 11, ["entropy", "atc"], source=source)
    {'entropy': -0.31, 'atc': 0.62}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from segshift.evaluation.inference import predict
from segshift.evaluation.scores import ATC_BINS, SCORES, ScoreInput, atc_threshold, build_scores

IGNORE = 255


@dataclass
class SourceStatistics:
    """What the source-comparing scores need: label pixels per class (C,), ATC's threshold
    (None: not fitted) and the source pixel accuracy it was fitted to."""

    counts: torch.Tensor
    threshold: float | None = None
    accuracy: float | None = None
    images: int = 0


def spread_indices(length: int, count: int | None) -> list[int]:
    """A fixed subset of ``min(count, length)`` indices spread evenly over ``range(length)``
    (``k * length // count``): the same images every time (all of them for None)."""
    if count is None or count >= length:
        return list(range(length))
    return [k * length // count for k in range(count)]


def inference_options(eval_cfg: Any) -> dict[str, Any]:
    """`predict` keyword arguments from a run's ``eval`` node: the inference mode and window,
    no test-time augmentation (the scores measure the plain model)."""
    return {
        "mode": eval_cfg.mode,
        "crop_size": tuple(eval_cfg.crop_size) if eval_cfg.crop_size else None,
        "stride": tuple(eval_cfg.stride) if eval_cfg.stride else None,
    }


def needs_source(names: Iterable[str]) -> list[str]:
    """The scores among ``names`` that cannot run without labeled source images."""
    return [name for name in names if SCORES[name][0]]


def _device(model: nn.Module, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def source_statistics(
    model: nn.Module | None,
    loader: Iterable[Mapping[str, Any]],
    num_classes: int,
    *,
    fit_atc: bool,
    options: dict[str, Any] | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> SourceStatistics:
    """Label histogram of labeled batches and, with ``fit_atc``, ATC's threshold for ``model``
    (its max-softmax confidence on the valid source pixels)."""
    counts = torch.zeros(num_classes, dtype=torch.float64)
    histogram = torch.zeros(ATC_BINS, dtype=torch.float64)
    correct = valid = images = 0
    fit_atc = fit_atc and model is not None
    device = _device(model, device) if model is not None else torch.device("cpu")
    training = model.training if model is not None else False
    if model is not None:
        model.eval()
    try:
        for batch in tqdm(loader, desc="source", disable=not progress, leave=False):
            label = batch["label"].to(device)
            keep = label != IGNORE
            counts += torch.bincount(label[keep].cpu(), minlength=num_classes)[:num_classes]
            images += label.shape[0]
            if not fit_atc:
                continue
            probs = predict(
                model,
                batch["image"].to(device),
                num_classes,
                output_size=tuple(label.shape[-2:]),
                **(options or {}),
            )
            confidence, prediction = probs.max(dim=1)
            bins = (confidence[keep] * ATC_BINS).long().clamp_(0, ATC_BINS - 1)
            histogram += torch.bincount(bins.cpu(), minlength=ATC_BINS).double()
            correct += int((prediction[keep] == label[keep]).sum())
            valid += int(keep.sum())
    finally:
        if model is not None:
            model.train(training)
    stats = SourceStatistics(counts, images=images)
    if fit_atc and valid:
        stats.accuracy = correct / valid
        stats.threshold = atc_threshold(histogram, stats.accuracy)
    return stats


def score_model(
    model: nn.Module,
    loader: Iterable[Mapping[str, Any]],
    num_classes: int,
    names: list[str],
    *,
    source: SourceStatistics | None = None,
    options: dict[str, Any] | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
    images: int | None = None,
) -> dict[str, float]:
    """The scores ``names`` of ``model`` over the images of ``loader`` (batches with ``image``
    (B, 3, H, W) RGB in [0, 1]; labels are not read), switched to eval mode and back.

    ``source``: needed by ``class_shift``; ``atc`` uses its threshold when fitted.
    ``options``: `predict` keyword arguments (:func:`inference_options`). ``images``: the
    number of images (SND spreads its pixel sample over them); default ``len(loader.dataset)``.
    """
    if images is None:
        images = len(loader.dataset)  # type: ignore[attr-defined]
    scores = build_scores(
        names,
        num_classes,
        images,
        source_counts=source.counts if source is not None else None,
        atc_threshold=source.threshold if source is not None else None,
    )
    device = _device(model, device)
    options = options or {}

    def forward(x: torch.Tensor) -> torch.Tensor:
        return predict(model, x, num_classes, **options)

    training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in tqdm(loader, desc="score", disable=not progress, leave=False):
                x = batch["image"].to(device)
                step = ScoreInput(images=x, probs=forward(x), predict=forward)
                for score in scores.values():
                    score.update(step)
            return {name: score.compute() for name, score in scores.items()}
    finally:
        model.train(training)
