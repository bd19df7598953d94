"""Crash-safe checkpoints.

A checkpoint is written to a temporary file in the same directory, flushed and fsynced, and only
then renamed over the old one (``os.replace`` is atomic on POSIX). The previous checkpoint is kept
as ``<name>.prev.pt``. Loading a corrupt ``latest`` falls back to the previous one with a warning.
Weights for sharing are exported as safetensors plus a ``config.json``.

Checkpoints are read with ``torch.load(weights_only=True)``: only tensors, plain containers and
numbers unpickle, plus the allow-list below (NumPy's RNG state in checkpoints written before it
was stored as a tensor). A file carrying code (a pickled ``__reduce__``) is refused with a
`CheckpointError` instead of running it.
"""

from __future__ import annotations

import errno
import json
import pickle
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save

from segshift.errors import CheckpointError
from segshift.fileio import atomic_write, atomic_write_bytes
from segshift.models.weights import unpickling_refusal


def previous_path(path: Path) -> Path:
    return path.with_name(path.stem + ".prev" + path.suffix)


def save_checkpoint(path: str | Path, state: dict[str, Any], keep_previous: bool = True) -> None:
    """Write ``state`` (nested dicts of tensors and plain values) atomically with torch.save.

    ``keep_previous``: move the existing file to ``<stem>.prev<suffix>`` first. The trainer turns
    it off when it rewrites a checkpoint of the same step, so that ``.prev`` stays a distinct,
    earlier state.
    """
    path = Path(path)
    previous = previous_path(path) if keep_previous else None
    atomic_write(path, lambda handle: _torch_save(state, handle), keep_previous=previous)


class _RecordingWriter:
    """A file handle's ``write`` that remembers the ``OSError`` it raised: torch.save's zip
    writer swallows it and raises ``RuntimeError("... unexpected pos ...")`` instead."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.handle.flush()


def _torch_save(state: dict[str, Any], handle: Any) -> None:
    """torch.save into ``handle``; a failed write (a full disk) is an ``OSError`` with its errno,
    so :func:`segshift.fileio.atomic_write` reports it in one line and removes the temp file."""
    writer = _RecordingWriter(handle)
    try:
        torch.save(state, writer)
    except RuntimeError as err:
        if writer.error is not None:
            raise writer.error from None
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OSError(errno.EIO, f"torch.save failed ({first}); is the disk full?") from None


def _safe_globals() -> list[Any]:
    """Types besides tensors and plain values a segshift checkpoint may hold (NumPy's RNG state
    in files written before it was stored as a tensor)."""
    multiarray = getattr(np, "_core", None) or np.core
    return [
        multiarray.multiarray._reconstruct,
        np.ndarray,
        np.dtype,
        type(np.dtype(np.uint32)),
        multiarray.multiarray.scalar,
        type(np.dtype(np.float64)),
    ]


def _load(path: Path) -> dict[str, Any]:
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # a well-formed pickle naming a callable that is not allow-listed: code, not corruption
        culprit = [line for line in str(err).splitlines() if "GLOBAL" in line.upper()]
        if not culprit:
            raise
        raise CheckpointError(unpickling_refusal(path, err)) from None
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path} is not a segshift checkpoint")
    return state


def non_finite_entries(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold NaN or infinity."""
    return [
        name
        for name, value in state.items()
        if torch.is_tensor(value)
        and value.is_floating_point()
        and not bool(torch.isfinite(value).all())
    ]


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
        except CheckpointError as err:
            if "weights_only=True" in str(err):  # unsafe, not corrupt: never fall back silently
                raise
            errors.append(str(err))
            continue
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
    """Python, NumPy, torch (and CUDA) RNG states as tensors and plain values (weights_only)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [
            kind,
            torch.from_numpy(keys.astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(gauss),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    if torch.is_tensor(numpy_state[1]):
        kind, keys, pos, has_gauss, gauss = numpy_state
        numpy_state = (kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss)
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
