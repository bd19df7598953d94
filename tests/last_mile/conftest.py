"""Fixtures of the last-mile tests (issue 25): one tiny trained run shared by the modules."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from segshift.cli import main

TRAIN = [
    "data.num_workers=0",
    "data.streams.labeled.batch_size=2",
    "data.streams.labeled.crop_size=[32,32]",
    "data.val.batch_size=2",
    "train.iters=2",
    "train.eval_every=1",
    "train.ckpt_every=2",
    "train.log_every=1",
    "train.progress=plain",
    "schedule.warmup_iters=0",
]


def train_args(data: Path, out: Path, name: str, *extra: str) -> list[str]:
    """`segshift train` of the demo's source-only config on a tiny folder, 2 steps."""
    return [
        "train",
        "demo/source_only",
        f"data.streams.labeled.root={data}",
        f"data.val.root={data}",
        f"output_dir={out}",
        f"name={name}",
        *TRAIN,
        *extra,
    ]


@pytest.fixture(name="train_args", scope="session")
def train_args_fixture():
    """:func:`train_args`, for the test modules."""
    return train_args


@pytest.fixture(scope="session")
def trained(tmp_path_factory, folder_factory) -> tuple[Path, Path]:
    """(run directory, its data): 6 images 32x40 in camvid's classes, 2 training steps."""
    base = tmp_path_factory.mktemp("last_mile")
    data = folder_factory(base / "data")
    assert main(train_args(data, base / "runs", "run")) == 0
    return base / "runs" / "run", data


@pytest.fixture
def run_copy(trained, tmp_path: Path) -> Path:
    """A copy of the trained run this test may change."""
    return Path(shutil.copytree(trained[0], tmp_path / "run"))
