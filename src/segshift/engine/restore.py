"""Rebuild a trained method from a run directory or a checkpoint file, for eval and predict.

An exported ``.onnx`` file (``segshift export``) stands in for a checkpoint in eval and predict:
its state is ``{"onnx": OnnxSegmenter, "label_space": ...}`` and its config the run's, stored
in the file (`segshift.models.onnx_runtime`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from safetensors import SafetensorError
from safetensors.torch import load_file

from segshift.config import Config, merge_into_schema
from segshift.engine.checkpoint import load_checkpoint
from segshift.engine.trainer import build_method, load_method_state
from segshift.errors import CheckpointError, ConfigError
from segshift.models import drop_pretrained_weights
from segshift.models.official import load_official_deeplabv2, read_official_checkpoint
from segshift.models.onnx_runtime import OnnxSegmenter, is_onnx_file


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


def read_eval_checkpoint(path: str | Path) -> tuple[dict[str, Any], Path]:
    """(state, path) of a segshift checkpoint or run directory, or ``({"official": weights},
    path)`` for a released official DeepLab-v2 state dict (see `segshift.models.official`)."""
    if is_onnx_file(path):
        return onnx_state(path), Path(path)
    path = find_checkpoint(path)
    official = read_official_checkpoint(path)
    if official is not None:
        return {"official": official}, path
    return load_checkpoint(path)


def onnx_state(path: str | Path) -> dict[str, Any]:
    """An exported model as a checkpoint state: ``onnx`` (the model, run by ONNX Runtime),
    ``label_space`` and ``config`` (the run's) from the file's metadata."""
    model = OnnxSegmenter(path)
    meta = model.metadata
    return {"onnx": model, "label_space": meta["label_space"], "config": meta.get("config")}


def class_order(
    state: dict[str, Any], origin: Path, class_names: Sequence[str]
) -> list[int] | None:
    """The checkpoint's output channel of each configured class (``data.val``), by name.

    The weights of a checkpoint with as many classes load whatever the classes are called, so
    class ``k`` of the model would be scored as class ``k`` of the data. Same names in the same
    order, or a checkpoint that stores none (official weights): None. The same names in another
    order (a ``classes.yaml`` listing ``[sidewalk, road]`` for a model of ``[road, sidewalk]``):
    ``order[k]`` is the model's channel of ``class_names[k]``. Other names: a ConfigError
    naming both lists.
    """
    saved = (state.get("label_space") or {}).get("class_names")
    if saved is None or list(saved) == list(class_names):
        return None
    saved = list(saved)
    if sorted(saved) != sorted(class_names):
        raise ConfigError(
            f"{origin} was trained on the classes {saved}, but the data of data.val has "
            f"{list(class_names)}: the scores would compare different classes; evaluate on "
            "data with the checkpoint's classes (set them in its classes.yaml or options.classes)"
        )
    return [saved.index(name) for name in class_names]


def load_eval_weights(
    method: Any,
    state: dict[str, Any],
    origin: Path,
    class_names: Sequence[str] | None = None,
) -> list[int] | None:
    """Load what `read_eval_checkpoint` returned: official weights go into ``eval_model()``.

    ``class_names``: the configured data's classes, checked against the checkpoint's before
    loading (see `class_order`). Returns the class order to evaluate with (None: as stored);
    a reordering is noted on stderr.
    """
    order = None
    if class_names is not None:
        order = class_order(state, origin, class_names)
        if order is not None:
            print(
                f"note: data.val lists the classes of {origin} in another order; its predictions "
                "are matched to the data's classes by name",
                file=sys.stderr,
                flush=True,
            )
    if "onnx" in state:
        return order  # the model is the file's: Trainer.evaluate(model=state["onnx"])
    if "official" in state:
        load_official_deeplabv2(method.eval_model(), state["official"], str(origin))
    else:
        load_method_state(method, state["method"], origin)
    return order


def eval_output_dir(state: dict[str, Any], origin: Path) -> Path:
    """``<run>/eval`` for a segshift checkpoint, ``<file stem>_eval`` beside an official or
    ONNX file."""
    if "official" in state or "onnx" in state:
        return origin.parent / f"{origin.stem}_eval"
    return origin.parent.parent / "eval"


def _merged(config: dict[str, Any], overrides: list[str] | None, origin: Path) -> DictConfig:
    layers: list[Any] = [config]
    if overrides:
        layers.append(OmegaConf.from_dotlist(list(overrides)))
    return merge_into_schema(Config(), *layers, origin=str(origin))


def config_from_checkpoint(
    path: str | Path, overrides: list[str] | None = None
) -> tuple[DictConfig, dict[str, Any], Path]:
    """Return (config with overrides, checkpoint state, checkpoint path) for a run dir or file
    (an exported ``.onnx`` file too)."""
    if is_onnx_file(path):
        state, origin = onnx_state(path), Path(path)
    else:
        state, origin = load_checkpoint(find_checkpoint(path))
    if "config" not in state or "label_space" not in state:
        raise CheckpointError(f"{origin} holds no config or label space: not a segshift checkpoint")
    _require_segmentation(state["label_space"], state["config"], origin)
    return _merged(state["config"], overrides, origin), state, origin


def _require_segmentation(label_space: Any, config: Any, origin: Path) -> None:
    """A CheckpointError unless the run trained a segmentation model (a CycleGAN run has no
    classes and no segmenter)."""
    if label_space is not None:
        return
    method = ((config or {}).get("method") or {}).get("name", "?")
    raise CheckpointError(
        f"{origin} is not a segmentation run: method {method} trains no segmentation model "
        "(translation runs are applied with `segshift translate apply`)"
    )


def _load_export(
    weights: Path, overrides: list[str] | None
) -> tuple[DictConfig, Any, dict[str, Any], int | None]:
    """A shared export: ``weights`` (the eval model's, safetensors) + ``config.json`` beside it;
    the last item is the step it was exported at."""
    meta_path = weights.parent / "config.json"
    try:
        meta = json.loads(meta_path.read_text())
        config, label_space = meta["config"], meta["label_space"]
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"{meta_path}: not a segshift export config ({err})") from None
    _require_segmentation(label_space, config, meta_path)
    cfg = _merged(config, overrides, meta_path)
    drop_pretrained_weights(cfg.model)
    method = build_method(cfg, len(label_space["class_names"]) if label_space else 0)
    try:
        method.eval_model().load_state_dict(load_file(str(weights)))
    except (RuntimeError, OSError, SafetensorError) as err:
        summary = " ".join(str(err).split())[:600]
        raise CheckpointError(
            f"{weights} does not fit the model of {meta_path}: {summary}"
        ) from None
    method.eval()
    return cfg, method, label_space, meta.get("step")


def load_trained(
    path: str | Path, overrides: list[str] | None = None
) -> tuple[DictConfig, Any, dict[str, Any]]:
    """Return (config, method in eval mode, label-space info) from a run directory, a checkpoint
    file, an export directory (``model.safetensors`` + ``config.json``) or its
    ``model.safetensors``."""
    return load_trained_step(path, overrides)[:3]


def load_trained_step(
    path: str | Path, overrides: list[str] | None = None
) -> tuple[DictConfig, Any, dict[str, Any], int | None]:
    """:func:`load_trained` and the training step of the weights (None where not recorded)."""
    path = Path(path)
    if path.suffix == ".safetensors" and path.is_file():
        return _load_export(path, overrides)
    if (path / "model.safetensors").is_file():
        return _load_export(path / "model.safetensors", overrides)
    cfg, state, origin = config_from_checkpoint(path, overrides)
    label_space = state["label_space"]
    drop_pretrained_weights(cfg.model)  # the checkpoint holds the trained weights; no download
    method = build_method(cfg, len(label_space["class_names"]) if label_space else 0)
    load_method_state(method, state["method"], origin)
    method.eval()
    step = state.get("step")
    return cfg, method, label_space, int(step) if step is not None else None


def load_segmenter(
    path: str | Path, overrides: list[str] | None = None
) -> tuple[DictConfig, Any, dict[str, Any]]:
    """(config, segmentation model in eval mode, label-space info) for inference: what
    `load_trained` reads (the method's ``eval_model()``), or an exported ``.onnx`` file run by
    ONNX Runtime (`segshift.models.onnx_runtime.OnnxSegmenter`, config from the file)."""
    if is_onnx_file(path):
        cfg, state, _ = config_from_checkpoint(path, overrides)
        return cfg, state["onnx"], state["label_space"]
    cfg, method, label_space = load_trained(path, overrides)
    model = method.eval_model()
    if model is None:
        raise ConfigError(
            f"{path} is an image-translation run (method {cfg.method.name}): it has no "
            "segmentation model"
        )
    return cfg, model.eval(), label_space
