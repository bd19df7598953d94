"""Thread settings: train.threads, SEGSHIFT_THREADS, the auto cap, one thread per loader worker."""

from __future__ import annotations

import subprocess
import sys

import cv2
import pytest
import torch
from torch.utils.data import Dataset

from segshift.engine import threads
from segshift.engine.loaders import evaluation_loader
from segshift.engine.threads import setup_threads
from segshift.engine.trainer import Trainer
from segshift.errors import ConfigError


@pytest.fixture(autouse=True)
def restore_threads():
    saved = torch.get_num_threads(), cv2.getNumThreads()
    yield
    torch.set_num_threads(saved[0])
    cv2.setNumThreads(saved[1])


def test_config_value_sets_the_count() -> None:
    torch.set_num_threads(1)
    assert setup_threads(2, environ={}) == "threads: 2 (train.threads)"
    assert torch.get_num_threads() == 2 and cv2.getNumThreads() == 1  # OpenCV: always 1


def test_environment_wins_over_the_config() -> None:
    torch.set_num_threads(1)
    message = setup_threads(1, environ={"SEGSHIFT_THREADS": "2"})
    assert message == "threads: 2 (SEGSHIFT_THREADS=2)"
    assert torch.get_num_threads() == 2
    assert setup_threads("auto", environ={"SEGSHIFT_THREADS": " 1 "}).startswith("threads: 1 ")
    assert torch.get_num_threads() == 1


def test_auto_keeps_torch_count_within_the_cores_per_process(monkeypatch) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    torch.set_num_threads(8)
    assert setup_threads("auto", environ={}) == "threads: 4 (auto: 4 cores)"
    torch.set_num_threads(8)
    assert setup_threads("auto", processes=2, environ={}) == (
        "threads: 2 (auto: 4 cores, 2 processes)"
    )
    torch.set_num_threads(1)
    assert setup_threads("auto", environ={}) == "threads: 1 (auto: 4 cores)"
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_bad_environment_value_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="SEGSHIFT_THREADS"):
        setup_threads("auto", environ={"SEGSHIFT_THREADS": value})


def test_bad_config_value_names_the_key(tiny_config) -> None:
    with pytest.raises(ConfigError, match="train.threads"):
        tiny_config("train.threads=0")
    assert tiny_config("train.threads=3").train.threads == 3


class _ThreadCounts(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> dict:
        return {"torch": torch.get_num_threads(), "cv2": cv2.getNumThreads()}


def test_loader_workers_use_one_thread() -> None:
    setup_threads(2, environ={})
    batches = list(evaluation_loader(_ThreadCounts(), [0, 1], batch_size=1, num_workers=1))
    assert [(int(b["torch"]), int(b["cv2"])) for b in batches] == [(1, 1), (1, 1)]
    assert torch.get_num_threads() == 2


HANG = """
import concurrent.futures, cv2, numpy as np, torch
from segshift.engine.loaders import evaluation_loader
from segshift.engine.threads import setup_threads
image = np.random.rand(1200, 1200, 3).astype(np.float32)
cv2.setNumThreads(2)  # OpenCV's pool running in the parent before training starts
with concurrent.futures.ThreadPoolExecutor(2) as pool:
    list(pool.map(lambda _: cv2.resize(image, (900, 900)).sum(), range(6)))
setup_threads(2, environ={})
class Data(torch.utils.data.Dataset):
    def __len__(self):
        return 2
    def __getitem__(self, i):
        return {"v": float(cv2.resize(image, (50, 50)).sum())}
for _ in range(2):
    assert len(list(evaluation_loader(Data(), [0, 1], batch_size=1, num_workers=1))) == 2
print("ok")
"""


def test_forked_workers_do_not_hang_after_the_parent_used_opencv_threads() -> None:
    """Regression: a worker's cv2.setNumThreads after fork deadlocked once the parent's
    OpenCV pool had run (a benchmark hung in its first step)."""
    result = subprocess.run(
        [sys.executable, "-c", HANG], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_trainer_applies_and_prints_the_choice(tiny_config, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SEGSHIFT_THREADS", "1")
    torch.set_num_threads(2)
    trainer = Trainer(tiny_config("train.threads=2", "train.iters=1", "train.eval_every=0"))
    assert torch.get_num_threads() == 1
    trainer.fit()
    assert "threads: 1 (SEGSHIFT_THREADS=1)" in capsys.readouterr().out
