"""Loading backbone weights from local files, with a report of what did not fit."""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from segshift.errors import ConfigError

logger = logging.getLogger(__name__)

WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".tar", ".safetensors", ".bin")
# Wrappers that checkpoints commonly add in front of the backbone's own keys: DDP ("module."),
# a whole segmentation model ("encoder.", "backbone.") and the DeepLab-v2 init file ("Scale.").
_KEY_PREFIXES = ("module.", "encoder.", "backbone.", "Scale.")


def is_weight_file(encoder_weights: str) -> bool:
    """Whether `encoder_weights` names a local file rather than a pretrained tag like 'imagenet'."""
    return encoder_weights.endswith(WEIGHT_FILE_SUFFIXES) or "/" in encoder_weights


def unpickling_refusal(path: str | Path, err: Exception) -> str:
    """One line for a torch file that ``torch.load(weights_only=True)`` refused: it needs
    unpickling objects (which can run code), and how to convert a file one trusts."""
    named = re.search(r"GLOBAL ([\w.]+)", str(err))
    what = f" ({named[1]})" if named else ""
    stem = Path(path).with_suffix("").name
    return (
        f"{path} holds objects other than tensors and plain values{what}, possibly code: "
        "refused (segshift loads with weights_only=True). If you trust the file, convert it to "
        'plain tensors: python -c "import torch; from safetensors.torch import save_file; '
        f"s = torch.load('{path}', weights_only=False); s = s.get('state_dict', s); "
        f"save_file({{k: v.contiguous() for k, v in s.items() if torch.is_tensor(v)}}, "
        f"'{stem}.safetensors')\""
    )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a .safetensors file or a torch file (loaded with weights_only).

    A checkpoint that nests the weights under "state_dict" or "model" is unwrapped.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"model.encoder_weights: file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # torch's 6-8 lines say weights_only=False: no
        raise ConfigError(f"model.encoder_weights: {unpickling_refusal(path, err)}") from None
    except (OSError, RuntimeError, SafetensorError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"model.encoder_weights: cannot read {path}: {first}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise ConfigError(f"model.encoder_weights: {path} does not hold a state dict")
    return dict(state)


def _strip_prefixes(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _KEY_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def load_into(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load `state` into `module` non-strictly and log the keys that were missing or unexpected.

    Raises ConfigError when no key matches or a shape differs: such a file is the wrong one.
    """
    state = {_strip_prefixes(key): value for key, value in state.items()}
    expected = module.state_dict()
    # smp wraps timm (`tu-`) backbones as `.model`: a plain timm/torchvision file has no prefix.
    if any(key.startswith("model.") for key in expected):
        state = {
            f"model.{key}" if key not in expected and f"model.{key}" in expected else key: value
            for key, value in state.items()
        }
    matching = {key: value for key, value in state.items() if key in expected}
    if not matching:
        raise ConfigError(
            f"model.encoder_weights: no key of {source} matches the encoder "
            f"(file keys start with {sorted(state)[:3]}, encoder keys with {sorted(expected)[:3]})"
        )
    try:
        # smp's MiT encoder overrides load_state_dict without `strict`.
        nn.Module.load_state_dict(module, matching, strict=False)
    except RuntimeError as err:
        raise ConfigError(
            f"model.encoder_weights: {source} does not fit the encoder: {err}"
        ) from err
    # Files from PyTorch < 0.4.1 (the DeepLab-v2 inits) have no BatchNorm num_batches_tracked.
    missing = sorted(
        k for k in expected.keys() - matching.keys() if not k.endswith("num_batches_tracked")
    )
    unexpected = sorted(state.keys() - matching.keys())
    if missing:
        logger.warning(
            "%d encoder keys were not in %s and keep their initial values: %s",
            len(missing),
            source,
            ", ".join(missing[:10]),
        )
    if unexpected:
        logger.warning(
            "%d keys of %s are not in the encoder and were ignored: %s",
            len(unexpected),
            source,
            ", ".join(unexpected[:10]),
        )


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> None:
    """Load the weights in the local file `path` into `encoder` (see `load_into`)."""
    load_into(encoder, read_state_dict(path), str(path))
