"""Label-free scores during training: ``eval.unlabeled_scores`` and translation quality.

`UnlabeledScores` (built by the trainer when ``eval.unlabeled_scores`` names scores) scores the
eval model at every evaluation on a fixed subset of the method's unlabeled stream: at most
``eval.unlabeled_images`` images spread evenly over the stream's dataset
(`segshift.evaluation.label_free.spread_indices`), read through the evaluation transform (its
``resize``, no crop or random augmentation). The stream is ``eval.unlabeled_stream``, else the
first unlabeled stream the method reads (UDA: ``target``; semi-supervised: ``unlabeled``).
``class_shift`` and ``atc`` read the same number of images of the first labeled stream the
method reads (``source`` / ``labeled``) for the source label histogram and ATC's threshold.
The values are logged with the evaluation's metrics as ``score.<name>`` (log.jsonl and
TensorBoard ``eval/score.<name>``); the main process computes them and broadcasts them.

`TranslationScores` (built for a method with a ``translate`` function, e.g. CycleGAN) measures
translation quality at every sample-grid step on fixed images of the ``source`` and ``target``
streams (at most ``eval.unlabeled_images`` each, augmentation seed 0), logged as
``translation.*`` (`segshift.evaluation.translation_scores`).
"""

from __future__ import annotations

from typing import Any

import torch

from segshift.data import build_dataset
from segshift.engine.loaders import collate, evaluation_loader
from segshift.errors import ConfigError
from segshift.evaluation.label_free import (
    inference_options,
    needs_source,
    score_model,
    source_statistics,
    spread_indices,
)
from segshift.evaluation.translation_scores import translation_scores


def _stream_node(method: Any, cfg: Any, name: str, labeled: bool) -> Any:
    node = method.stream_config(cfg.data.streams, name).copy()
    node.labeled = labeled
    return node


class UnlabeledScores:
    """``eval.unlabeled_scores`` of one run (see the module docstring)."""

    def __init__(self, cfg: Any, method: Any, num_classes: int, device: torch.device) -> None:
        ev = cfg.eval
        self.names = list(ev.unlabeled_scores)
        self.num_classes, self.device = num_classes, device
        self.options = inference_options(ev)
        streams = [n for n in method.streams if method.stream_config(cfg.data.streams, n)]
        unlabeled = [n for n in streams if not method.stream_config(cfg.data.streams, n).labeled]
        labeled = [n for n in streams if n not in unlabeled]
        name = ev.unlabeled_stream or (unlabeled[0] if unlabeled else None)
        if name is None or name not in streams:
            raise ConfigError(
                "eval.unlabeled_stream: "
                + (f"'{name}' is not a stream" if name else "no unlabeled stream")
                + f" of method '{cfg.method.name}' (it reads {', '.join(streams) or 'none'}); "
                "name one for eval.unlabeled_scores"
            )
        self.stream = name
        target = build_dataset(_stream_node(method, cfg, name, False), train=False)
        batch = method.stream_config(cfg.data.streams, name).batch_size
        indices = spread_indices(len(target), ev.unlabeled_images)
        if len(indices) < 3:
            raise ConfigError(f"eval.unlabeled_scores: data.streams.{name} has < 3 images")
        self.loader = evaluation_loader(target, indices, batch, cfg.data.num_workers)
        self.source_loader = None
        wanted = needs_source(self.names) + (["atc"] if "atc" in self.names else [])
        if wanted and labeled:
            source = build_dataset(_stream_node(method, cfg, labeled[0], True), train=False)
            indices = spread_indices(len(source), ev.unlabeled_images)
            self.source_loader = evaluation_loader(source, indices, batch, cfg.data.num_workers)
        elif needs_source(self.names):
            raise ConfigError(
                f"eval.unlabeled_scores: {', '.join(needs_source(self.names))} needs a labeled "
                f"stream of method '{cfg.method.name}' (it reads {', '.join(streams)})"
            )

    @classmethod
    def for_trainer(cls, trainer: Any) -> UnlabeledScores | None:
        """The scorer of a trainer's run, or None without ``eval.unlabeled_scores``."""
        cfg = trainer.cfg
        if not cfg.eval.unlabeled_scores or trainer.method.eval_model() is None:
            return None
        return cls(cfg, trainer.method, trainer.num_classes, trainer.fabric.device)

    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        """``{"score.<name>": value}`` of ``model`` (its mode is kept)."""
        source = None
        if self.source_loader is not None:
            source = source_statistics(
                model,
                self.source_loader,
                self.num_classes,
                fit_atc="atc" in self.names,
                options=self.options,
                device=self.device,
            )
        values = score_model(
            model,
            self.loader,
            self.num_classes,
            self.names,
            source=source,
            options=self.options,
            device=self.device,
        )
        return {f"score.{name}": float(value) for name, value in values.items()}

    def measure(self, fabric: Any, model: torch.nn.Module) -> dict[str, float]:
        """Scores computed by the main process, the same on every process."""
        values = self(model) if fabric.global_rank == 0 else None
        if fabric.world_size > 1:
            values = fabric.broadcast(values, src=0)
        return values


class TranslationScores:
    """Translation quality of a method with ``translate`` (see the module docstring)."""

    def __init__(self, method: Any, streams: dict[str, Any], count: int) -> None:
        self.method = method
        self.images = {}
        for name in ("source", "target"):
            dataset = streams[name].dataset
            indices = spread_indices(len(dataset), count)
            self.images[name] = collate([dataset[(k, 0)] for k in indices])["image"]

    @classmethod
    def for_trainer(cls, trainer: Any) -> TranslationScores | None:
        """For a method with ``translate`` and source / target streams, else None."""
        method = trainer.method
        if not callable(getattr(method, "translate", None)):
            return None
        if not {"source", "target"} <= set(trainer.streams):
            return None
        return cls(method, trainer.streams, trainer.cfg.eval.unlabeled_images)

    def __call__(self, device: torch.device, batch_size: int = 8) -> dict[str, float]:
        """``translation.*`` values (the caller sets eval mode and no_grad)."""
        source = self.images["source"].to(device)
        translated = torch.cat(
            [
                self.method.translate(source[i : i + batch_size]).float()
                for i in range(0, source.shape[0], batch_size)
            ]
        )
        segmenter = getattr(self.method, "segmenter", None)
        values = translation_scores(source, translated, self.images["target"].to(device), segmenter)
        return {f"translation.{name}": value for name, value in values.items()}
