"""Rebuild a trained method from a run directory or a checkpoint file, for eval and predict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from segshift.config import Config, merge_into_schema
from segshift.engine.checkpoint import load_checkpoint
from segshift.engine.trainer import build_method, load_method_state
from segshift.errors import CheckpointError


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given, or a run directory's best (else latest) checkpoint."""
    path = Path(path)
    if path.is_file():
        return path
    for name in ("best.pt", "latest.pt", "latest.prev.pt"):
        candidate = path / "checkpoints" / name
        if candidate.is_file():
            return candidate
    raise CheckpointError(f"no checkpoint at {path} (expected a .pt file or a run directory)")


def config_from_checkpoint(
    path: str | Path, overrides: list[str] | None = None
) -> tuple[DictConfig, dict[str, Any], Path]:
    """Return (config with overrides, checkpoint state, checkpoint path) for a run dir or file."""
    state, origin = load_checkpoint(find_checkpoint(path))
    if "config" not in state or "label_space" not in state:
        raise CheckpointError(f"{origin} holds no config or label space: not a segshift checkpoint")
    layers: list[Any] = [state["config"]]
    if overrides:
        layers.append(OmegaConf.from_dotlist(list(overrides)))
    cfg = merge_into_schema(Config(), *layers, origin=str(origin))
    return cfg, state, origin


def load_trained(
    path: str | Path, overrides: list[str] | None = None
) -> tuple[DictConfig, Any, dict[str, Any]]:
    """Return (config, method in eval mode, label-space info) from a run dir or checkpoint."""
    cfg, state, origin = config_from_checkpoint(path, overrides)
    label_space = state["label_space"]
    cfg.model.encoder_weights = None  # the checkpoint holds the trained weights; no download
    method = build_method(cfg, len(label_space["class_names"]))
    load_method_state(method, state["method"], origin)
    method.eval()
    return cfg, method, label_space
