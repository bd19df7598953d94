"""Crash-safe checkpoints.

A checkpoint is written to a temporary file in the same directory, flushed and fsynced, and only
then renamed over the old one (``os.replace`` is atomic on POSIX). The previous checkpoint is kept
as ``<name>.prev.pt``. Loading a corrupt ``latest`` falls back to the previous one with a warning.
Weights for sharing are exported as safetensors plus a ``config.json``.
"""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save

from segshift.errors import CheckpointError
from segshift.fileio import atomic_write, atomic_write_bytes


def previous_path(path: Path) -> Path:
    return path.with_name(path.stem + ".prev" + path.suffix)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (nested dicts of tensors and plain values) atomically with torch.save."""
    path = Path(path)
    atomic_write(path, lambda handle: torch.save(state, handle), keep_previous=previous_path(path))


def _load(path: Path) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path} is not a segshift checkpoint")
    return state


def load_checkpoint(path: str | Path, fallback: bool = True) -> tuple[dict[str, Any], Path]:
    """Load a checkpoint; if it is missing or corrupt, try ``<stem>.prev<suffix>`` with a warning.

    Returns the state and the path it came from.
    """
    path = Path(path)
    candidates = [path, previous_path(path)] if fallback else [path]
    errors: list[str] = []
    for candidate in candidates:
        if not candidate.exists():
            errors.append(f"{candidate}: missing")
            continue
        try:
            state = _load(candidate)
        except Exception as err:  # noqa: BLE001 - any unreadable file is "corrupt" here
            errors.append(f"{candidate}: {type(err).__name__}: {err}")
            continue
        if candidate != path:
            warnings.warn(
                f"checkpoint {path} is unreadable ({errors[0]}); resuming from the previous "
                f"checkpoint {candidate}",
                RuntimeWarning,
                stacklevel=2,
            )
        return state, candidate
    raise CheckpointError("no loadable checkpoint: " + "; ".join(errors))


def export_weights(directory: str | Path, model: torch.nn.Module, config: dict[str, Any]) -> None:
    """Write ``model.safetensors`` and ``config.json`` (what is needed to rebuild the model)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(directory / "model.safetensors", save(tensors))
    atomic_write_bytes(directory / "config.json", json.dumps(config, indent=2).encode())


def capture_rng() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
