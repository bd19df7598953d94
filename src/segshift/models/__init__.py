"""Segmentation models and discriminators, built by name from `segshift.registry.MODELS`.

Every segmentation model maps (B, 3, H, W) RGB images in [0, 1] to a dict: "out" holds
(B, num_classes, h, w) logits at the model's own stride (consumers resize, with the model's
`align_corners`), "aux" the auxiliary classifier's logits where there is one. The model
normalises its input itself (`.input_norm`, from `model.normalization`, following the pretrained
weights). `.encoder` is the backbone; every other parameter belongs to the head.

The model in parts (`segshift.models.parts`): `forward(x, perturb=None, return_feat=False)`
applies `perturb` to the encoder's stage features before the decoder (feature perturbations:
UniMatch, CCT) and, with `return_feat`, adds "feat", the decoder features of `.feat_channels`
channels that the head reads (a method's projection head: U2PL, ReCo).

Segmentation builders are plain functions registered with `@MODELS.register(name)` and called as
`builder(num_classes, encoder, encoder_weights, **params)`, where `encoder_weights` is None or a
pretrained tag; `build_model` resolves local weight files itself.

Example::

    cfg = SimpleNamespace(arch="fast", encoder="resnet18", encoder_weights=None, params={})
    model = build_model(cfg, num_classes=11)
    logits = model(images)["out"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from torch import nn

from segshift.errors import ConfigError
from segshift.models import deeplabv2, discriminators, smp_models  # noqa: F401  (registration)
from segshift.models.discriminators import DISCRIMINATORS
from segshift.models.normalization import (
    InputNorm,
    Normalization,
    freeze_normalization,
    resolve_normalization,
)
from segshift.models.packaged_weights import (
    has_packaged_weights,
    load_packaged_encoder,
    resolve_packaged,
)
from segshift.models.weights import is_weight_file, load_encoder_weights
from segshift.registry import MODELS

__all__ = [
    "DISCRIMINATORS",
    "MODELS",
    "InputNorm",
    "load_trained_weights",
    "ModelSpec",
    "Normalization",
    "build_model",
    "drop_pretrained_weights",
    "freeze_normalization",
    "load_encoder_weights",
    "resolve_normalization",
]


class ModelSpec(Protocol):
    """The fields of the model config (`segshift.config`) that `build_model` reads."""

    arch: str
    encoder: str
    encoder_weights: str | None
    params: dict[str, Any]


def build_model(cfg: ModelSpec, num_classes: int) -> nn.Module:
    """Build segmentation model `cfg.arch` over `cfg.encoder` with `num_classes` outputs.

    `cfg.encoder_weights`: None (random init), a pretrained tag such as "imagenet" (from an
    installed package for the encoders in `packaged_weights.PACKAGED`, downloaded otherwise;
    ConfigError when that fails) or a local .pth/.pt/.safetensors file loaded into `.encoder`.
    The model's `input_norm` follows `cfg.normalization` (see `resolve_normalization`) and its
    `align_corners` attribute tells consumers how to resize its logits; `cfg.dropout` (Noisy
    Student's model noise) drops the head's input features in training mode.
    """
    if cfg.arch in DISCRIMINATORS:
        raise ConfigError(
            f"model.arch: '{cfg.arch}' is a discriminator, not a segmentation model; "
            f"build it with MODELS.build('{cfg.arch}', in_channels=...)"
        )
    try:
        builder = MODELS.get(cfg.arch)
    except KeyError as err:
        raise ConfigError(f"model.arch: {err.args[0]}") from err
    weights = cfg.encoder_weights
    local_file = weights is not None and is_weight_file(weights)
    packaged = resolve_packaged(cfg.encoder) if has_packaged_weights(cfg.encoder, weights) else None
    try:
        model = builder(
            num_classes=num_classes,
            encoder=cfg.encoder,
            encoder_weights=None if local_file or packaged else weights,
            **(cfg.params or {}),
        )
    except TypeError as err:
        raise ConfigError(f"model.params: {cfg.arch}: {err}") from err
    except KeyError as err:
        raise ConfigError(
            f"model.encoder / model.encoder_weights: {cfg.arch}: {err.args[0]}"
        ) from err
    except OSError as err:
        if weights is None or local_file:
            raise
        raise ConfigError(
            f"model.encoder_weights: the '{weights}' weights for encoder '{cfg.encoder}' could "
            f"not be downloaded ({err}); set model.encoder_weights to a local file path "
            "(.pth/.pt/.safetensors) or null"
        ) from err
    if local_file:
        if not Path(weights).expanduser().is_file():
            hint = getattr(cfg, "expected_weights", None)
            raise ConfigError(
                f"model.encoder_weights: file not found: {weights}"
                + (f" (this config expects {hint})" if hint else "")
                + "; give the downloaded file's path, or model.encoder_weights=null to start from "
                "random weights"
            )
        load_encoder_weights(model.encoder, weights)
    if packaged is not None:
        load_packaged_encoder(model.encoder, packaged)
        if hasattr(cfg, "weights_provenance"):
            cfg.weights_provenance = packaged.provenance()  # recorded in the run's config.yaml
    model.input_norm = InputNorm(resolve_normalization(cfg))
    model.align_corners = bool(getattr(cfg, "align_corners", False))
    dropout = float(getattr(cfg, "dropout", 0.0) or 0.0)
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"model.dropout: {dropout} is not in [0, 1)")
    model.head_dropout = dropout
    if getattr(cfg, "init_from", None):
        load_trained_weights(model, cfg.init_from)
    return model


def trained_weights_file(path: str | Path) -> Path:
    """The ``model.safetensors`` of a run directory, an export directory, or the file itself."""
    path = Path(path).expanduser()
    for candidate in (path / "export" / "model.safetensors", path / "model.safetensors", path):
        if candidate.is_file() and candidate.suffix == ".safetensors":
            return candidate
    raise ConfigError(
        f"model.init_from: no trained weights at {path} (give a finished run directory, its "
        "export/ directory or a model.safetensors file)"
    )


def load_trained_weights(model: nn.Module, path: str | Path) -> None:
    """Load a trained segshift model's weights (see `trained_weights_file`) into ``model``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = trained_weights_file(path)
    try:
        model.load_state_dict(load_file(str(file)))
    except (RuntimeError, SafetensorError) as err:
        summary = " ".join(str(err).split())[:400]
        raise ConfigError(
            f"model.init_from: {file} does not fit this model ({summary}); the run it came from "
            "must use the same model.arch, model.encoder, model.params and classes"
        ) from None


def drop_pretrained_weights(cfg: ModelSpec) -> None:
    """Set `encoder_weights` to None (the weights come from a checkpoint) after freezing the
    normalisation, which `auto` derives from the weights."""
    freeze_normalization(cfg)
    cfg.encoder_weights = None
    if hasattr(cfg, "init_from"):
        cfg.init_from = None
