"""Fixtures shared across test packages: a tiny synthcity-like folder dataset and a run config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segshift.config import load_config

CAMVID_CLASSES_YAML = "label_space: camvid\n"


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny inputs gain nothing from threads, and spinning threads stall a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_folder_dataset(root: Path, n: int = 6, size: tuple[int, int] = (32, 40), seed: int = 0):
    """``root/images/*.png`` + ``root/masks/*.png`` (index) whose colours predict the class."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    colours = rng.integers(0, 256, size=(11, 3))
    for i in range(n):
        mask = np.zeros(size, np.uint8)
        h, w = size
        mask[: h // 3] = 0  # sky
        mask[h // 3 : 2 * h // 3] = rng.integers(1, 11)
        mask[2 * h // 3 :] = 3  # road
        mask[rng.integers(0, h), :] = 255
        image = colours[np.minimum(mask, 10)] + rng.integers(-20, 20, size=(*size, 3))
        image = np.clip(image, 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"img_{i:03d}.png")
        Image.fromarray(mask).save(root / "masks" / f"img_{i:03d}.png")
    (root / "classes.yaml").write_text(CAMVID_CLASSES_YAML)
    return root


@pytest.fixture(scope="session")
def folder_factory():
    """The :func:`make_folder_dataset` function, for tests that need several datasets."""
    return make_folder_dataset


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    return make_folder_dataset(tmp_path / "tiny")


def tiny_run_config(data_root: Path, out: Path, *extra: str):
    """A config that trains the fast model for a few steps on ``data_root`` (CPU, no workers)."""
    overrides = [
        f"data.streams.labeled.root={data_root}",
        f"data.val.root={data_root}",
        f"output_dir={out}",
        "name=tiny",
        "data.num_workers=0",
        "data.streams.labeled.batch_size=2",
        "data.streams.labeled.crop_size=[32,32]",
        "data.val.batch_size=2",
        "train.iters=4",
        "train.eval_every=2",
        "train.ckpt_every=2",
        "train.log_every=1",
        "train.progress=plain",
        "schedule.warmup_iters=0",
        *extra,
    ]
    return load_config("demo/source_only", overrides)


@pytest.fixture
def tiny_config(tiny_folder: Path, tmp_path: Path):
    return lambda *extra: tiny_run_config(tiny_folder, tmp_path / "runs", *extra)
