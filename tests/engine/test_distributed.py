"""Two CPU processes (gloo, torchrun) train and evaluate; metrics equal a one-process run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import segshift.methods  # noqa: F401  (registers the methods)
from helpers import every_stream, method_overrides
from segshift.registry import METHODS

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_two_process_training_and_evaluation(tmp_path: Path, folder_factory) -> None:
    data = folder_factory(tmp_path / "data", n=7)  # odd: ranks get unequal shards
    common = [
        f"data.streams.labeled.root={data}",
        f"data.val.root={data}",
        f"output_dir={tmp_path / 'runs'}",
        "data.num_workers=0",
        "data.streams.labeled.batch_size=2",
        "data.streams.labeled.crop_size=[32,32]",
        "data.val.batch_size=2",
        "train.iters=3",
        "train.eval_every=3",
        "train.ckpt_every=3",
        "train.log_every=1",
        "train.progress=plain",
        "train.accelerator=cpu",
    ]
    ddp = ["train.devices=2", "train.strategy=ddp"]
    cli = ["-m", "segshift.cli"]
    run(
        [
            *TORCHRUN,
            "--nproc_per_node",
            "2",
            *cli,
            "train",
            "demo/oracle",
            "name=ddp",
            *common,
            *ddp,
        ],
        tmp_path,
    )
    run_dir = tmp_path / "runs" / "ddp"
    assert (run_dir / "checkpoints" / "latest.pt").is_file()
    log = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["kind"] == "train"] == [1, 2, 3]

    out1, out2 = tmp_path / "eval1", tmp_path / "eval2"
    run([sys.executable, *cli, "eval", str(run_dir), "--out", str(out1)], tmp_path)
    run(
        [*TORCHRUN, "--nproc_per_node", "2", *cli, "eval", str(run_dir), *ddp, "--out", str(out2)],
        tmp_path,
    )
    one = json.loads((out1 / "metrics.json").read_text())
    two = json.loads((out2 / "metrics.json").read_text())
    assert one["confusion_matrix"] == two["confusion_matrix"]
    assert sum(map(sum, one["confusion_matrix"])) > 0
    assert one["miou"] == two["miou"] and one["classes"] == two["classes"]


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_trains_on_two_processes(method: str, tmp_path: Path, folder_factory) -> None:
    """Each registered method: 2 gloo processes, 2 steps, a checkpoint (DDP sees every
    parameter of the method: students, teachers, discriminators)."""
    data = folder_factory(tmp_path / "data", n=6)
    overrides = [
        *method_overrides(method),
        f"data.streams.labeled.root={data}",
        f"data.val.root={data}",
        f"output_dir={tmp_path / 'runs'}",
        "name=ddp",
        "data.num_workers=0",
        "data.streams.labeled.batch_size=2",
        "data.streams.labeled.crop_size=[32,32]",
        "data.val.batch_size=2",
        "train.iters=2",
        "train.eval_every=0",
        "train.ckpt_every=2",
        "train.log_every=1",
        "train.progress=plain",
        "train.accelerator=cpu",
        "train.devices=2",
        "train.strategy=ddp",
        *every_stream(data),
    ]
    run(
        [
            *TORCHRUN,
            "--nproc_per_node",
            "2",
            "-m",
            "segshift.cli",
            "train",
            "demo/oracle",
            *overrides,
        ],
        tmp_path,
    )
    log = [
        json.loads(x) for x in (tmp_path / "runs" / "ddp" / "log.jsonl").read_text().splitlines()
    ]
    losses = [r["loss"] for r in log if r["kind"] == "train"]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
