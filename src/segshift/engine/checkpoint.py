"""Crash-safe checkpoints.

A checkpoint is written to a temporary file in the same directory, flushed and fsynced, and only
then renamed over the old one (``os.replace`` is atomic on POSIX). The previous checkpoint is kept
as ``<name>.prev.pt``. Loading a corrupt ``latest`` falls back to the previous one with a warning.
Weights for sharing are exported as safetensors plus a ``config.json``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from segshift.errors import CheckpointError


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def previous_path(path: Path) -> Path:
    return path.with_name(path.stem + ".prev" + path.suffix)


def atomic_write(path: str | Path, write: Any) -> None:
    """Call ``write(file_object)`` on a temp file beside ``path``, fsync it, rename into place.

    If ``path`` exists it is first moved to ``<stem>.prev<suffix>``, so at every instant either the
    new or the previous checkpoint is complete on disk.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            os.replace(path, previous_path(path))
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (nested dicts of tensors and plain values) atomically with torch.save."""
    atomic_write(path, lambda handle: torch.save(state, handle))


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
    tmp = directory / ".model.safetensors.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, directory / "model.safetensors")
    atomic_write(directory / "config.json", lambda h: h.write(json.dumps(config, indent=2).encode()))
    previous_path(directory / "config.json").unlink(missing_ok=True)
