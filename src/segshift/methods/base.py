"""The Method contract: an ``nn.Module`` that owns everything it trains.

A method builds its networks (student, EMA teacher, discriminators) from the run config, names
the data streams it consumes (``source``, ``target``, ``labeled``, ``unlabeled``), and computes one
training step::

    out = method.training_step({"labeled": batch}, step)   # {"loss": total, "ce": ..., ...}

The trainer calls ``backward`` once on ``out["loss"]``, clips gradients, steps every optimizer
returned by ``configure_optimizers`` and then calls ``after_step`` (EMA updates and the like).
Adversarial methods fit this single backward: the generator's adversarial term is computed with
the discriminator's parameters frozen, the discriminator's term on detached predictions.

An image-translation method (CycleGAN) has no segmenter: ``segments = False``, ``eval_model()``
returns None (the trainer skips the mIoU evaluation; ``data.val`` may be absent), ``export_model()``
returns the generators, and ``visualise`` draws sample grids from fixed images of its
``sample_streams`` every ``train.eval_every`` steps and at the end.

Extra losses on features: a method whose ``Params`` has ``classdist``
(``common.classdist.ClassDistParams``) calls ``build_classdist(model)`` once, runs its forward
passes with ``**self.feature_kwargs``, hands the images' features and (pseudo-)labels to
``add_classdist(losses, *views)`` and trains ``feature_heads()`` with its segmenter; while
``classdist.weight`` is 0 these add nothing (no keyword, no loss, no head, no state).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from omegaconf import DictConfig
from torch import nn

from segshift.config import to_dataclass
from segshift.errors import ConfigError
from segshift.methods.common.classdist import ClassDist, FeatureView


@dataclass
class NoParams:
    """A method without hyperparameters of its own."""


class Method(nn.Module):
    """Base class of training methods (see the module docstring)."""

    streams: ClassVar[tuple[str, ...]] = ()
    # a stream that, when data.streams has no entry of its name, is a second, independent pass
    # over another stream's data (its own shuffle and augmentation): UniMatch's ``loader_u_mix``,
    # CPS+CutMix's second unlabeled batch. {"unlabeled_mix": "unlabeled"}
    stream_defaults: ClassVar[dict[str, str]] = {}
    Params: ClassVar[type] = NoParams
    # False: an image-translation method without a segmenter (no label space needed)
    segments: ClassVar[bool] = True
    # streams whose fixed images `visualise` draws (sample grids); () draws none
    sample_streams: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: DictConfig, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.params: Any = to_dataclass(cfg.method.params, self.Params, "method.params")
        self.classdist: ClassDist | None = None

    def build_classdist(self, model: nn.Module) -> None:
        """The class-distribution contrast on ``model``'s decoder features, when the method's
        ``params.classdist.weight`` is > 0 (``common/classdist.py``); otherwise nothing."""
        params = getattr(self.params, "classdist", None)
        if params is not None and params.weight > 0:
            self.classdist = ClassDist(
                params, model.feat_channels, self.num_classes, self.ignore_index
            )

    @property
    def feature_kwargs(self) -> dict[str, bool]:
        """Keyword arguments of the model passes whose features ``add_classdist`` reads:
        ``{"return_feat": True}`` with the contrast on, else none (the plain forward call)."""
        return {"return_feat": True} if self.classdist is not None else {}

    def feature_heads(self) -> tuple[nn.Module, ...]:
        """The heads this method adds on its model's features (trained in the head group)."""
        return (self.classdist,) if self.classdist is not None else ()

    def add_classdist(
        self, losses: dict[str, torch.Tensor], *views: FeatureView
    ) -> dict[str, torch.Tensor]:
        """``losses`` with the class-distribution contrast of ``views`` added to ``"loss"`` and
        its terms logged (``classdist``, ``classdist_cross``, ``classdist_kept``)."""
        if self.classdist is None:
            return losses
        terms = self.classdist(views)
        return {**losses, **terms, "loss": losses["loss"] + terms["loss"]}

    def stream_config(self, data_streams: Any, name: str) -> Any:
        """The config of stream ``name``: ``data.streams.<name>``, else that of the stream it
        defaults to (``stream_defaults``); None when neither is configured."""
        if name in data_streams:
            return data_streams[name]
        fallback = self.stream_defaults.get(name)
        return data_streams.get(fallback) if fallback else None

    def check_choices(self, **choices: tuple[str, ...]) -> None:
        """ConfigError naming ``method.params.<key>`` when a param is not one of its choices."""
        for key, allowed in choices.items():
            value = getattr(self.params, key)
            if value not in allowed:
                raise ConfigError(
                    f"method.params.{key}: '{value}' is not one of {', '.join(allowed)}"
                )

    def forward(self, batch: dict[str, dict[str, Any]], step: int) -> dict[str, torch.Tensor]:
        return self.training_step(batch, step)

    def training_step(self, batch: dict[str, dict[str, Any]], step: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def after_step(self, step: int) -> None:
        """Called after the optimizers stepped (e.g. to update an EMA teacher)."""

    def eval_model(self) -> nn.Module | None:
        """The network used for evaluation and prediction (its forward returns ``{"out": ...}``);
        None for a method without a segmenter (``segments = False``): nothing is evaluated."""
        raise NotImplementedError

    def export_model(self) -> nn.Module:
        """What ``export/model.safetensors`` holds: the eval model, or a translation method's
        generators."""
        model = self.eval_model()
        if model is None:
            raise NotImplementedError(f"{type(self).__name__} has no model to export")
        return model

    def visualise(self, batches: dict[str, dict[str, Any]]) -> torch.Tensor | None:
        """A (3, H, W) image in [0, 1] drawn from fixed batches of ``sample_streams`` (called
        without gradients, on the main process only); None: nothing to draw."""
        return None
