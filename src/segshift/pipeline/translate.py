"""Image translation runs (``segshift translate train``): train a translation method such as
CycleGAN on the ordinary trainer; ``segshift translate apply`` (`segshift.pipeline.translate_apply`)
writes the translated copy of a whole dataset with its generators.

A translation run is an ordinary run directory: ``checkpoints/`` (generators, discriminators,
image pools, optimizers: exact resume), ``log.jsonl`` and ``tb/`` (losses, sample grids),
``samples/step_XXXXXX.png`` (every ``train.eval_every`` steps and at the end) and
``export/model.safetensors`` + ``config.json`` (the generators: ``source_to_target.*``,
``target_to_source.*``), which ``translate apply`` loads.

Example::

    run_dir = train_translation(load_config("translate/synthcity", ["data.streams.source.root=SIM"]))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

import segshift.methods  # noqa: F401  (registers the methods)
from segshift.engine.trainer import Trainer
from segshift.errors import ConfigError
from segshift.registry import METHODS


def translation_methods() -> list[str]:
    """Registered methods that translate images (no segmenter: ``segments = False``)."""
    return [name for name in METHODS.names() if not METHODS.get(name).segments]


def check_translation_config(cfg: DictConfig | Any) -> None:
    """ConfigError unless ``method.name`` is an image-translation method."""
    name = cfg.method.name
    if METHODS.get(name).segments:
        raise ConfigError(
            f"method.name: '{name}' trains a segmenter, not an image translation; "
            f"`segshift translate train` needs one of {', '.join(translation_methods())} "
            "(train segmenters with `segshift train`)"
        )


def latest_sample_grid(run_dir: str | Path) -> Path | None:
    """The sample grid of the highest step in ``run_dir/samples``, if any."""
    grids = sorted(Path(run_dir, "samples").glob("step_*.png"))
    return grids[-1] if grids else None


def train_translation(
    cfg: DictConfig, run_dir: str | Path | None = None, overwrite: bool = False
) -> Path:
    """Train (or resume) a translation config; return its run directory.

    ``run_dir`` and ``overwrite`` are the trainer's (``--resume RUN_DIR``, ``--overwrite``).
    """
    check_translation_config(cfg)
    trainer = Trainer(cfg, run_dir=run_dir, overwrite=overwrite)
    trainer.fit()
    return trainer.run_dir


# --- translate apply ---------------------------------------------------------------------------
