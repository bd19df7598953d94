"""Two CPU processes (gloo, torchrun) train and evaluate; metrics equal a one-process run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import segshift.methods  # noqa: F401  (registers the methods)
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


@pytest.fixture(scope="module")
def ddp_methods(tmp_path_factory, folder_factory) -> tuple[Path, str]:
    """Every registered method trained 2 steps on 2 gloo processes in ONE torchrun launch
    (ddp_methods_worker.py; a launch per method cost ~6 s of start-up each). Returns the runs'
    directory and the launch's output (the failing method's traceback, if any)."""
    root = tmp_path_factory.mktemp("ddp_methods")
    data = folder_factory(root / "data", n=6)
    out = root / "runs"
    worker = Path(__file__).with_name("ddp_methods_worker.py")
    args = [*TORCHRUN, "--nproc_per_node", "2", str(worker), str(out), str(data)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [*args, *METHODS.names()], cwd=root, env=env, capture_output=True, text=True, timeout=900
    )
    return out, result.stdout[-4000:] + result.stderr[-4000:]


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_trains_on_two_processes(method: str, ddp_methods) -> None:
    """Each registered method: 2 gloo processes, 2 steps, a checkpoint (DDP sees every
    parameter of the method: students, teachers, discriminators)."""
    out, output = ddp_methods
    assert (out / method / "done").is_file(), f"{method} did not finish on 2 processes:\n{output}"
    log = [json.loads(x) for x in (out / method / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if r["kind"] == "train"]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert (out / method / "checkpoints" / "latest.pt").is_file()


def test_classdist_gathers_every_process_into_one_queue(tmp_path, folder_factory) -> None:
    """DACS and UniMatch with the class-distribution contrast on 2 gloo processes: after 2 steps
    of 2 + 2 images per process both processes hold the same queue of all 16 images."""
    data = folder_factory(tmp_path / "data", n=6)
    out = tmp_path / "runs"
    worker = Path(__file__).with_name("ddp_methods_worker.py")
    names = ["dacs+classdist", "unimatch+classdist"]
    run([*TORCHRUN, "--nproc_per_node", "2", str(worker), str(out), str(data), *names], tmp_path)
    for name in names:
        log = [json.loads(x) for x in (out / name / "log.jsonl").read_text().splitlines()]
        assert [r["classdist_kept"] for r in log if r["kind"] == "train"] == [1.0, 1.0]
        first, second = (torch.load(out / name / f"queue_{r}.pt") for r in (0, 1))
        assert first.keys() == second.keys()
        assert all(torch.equal(first[k], second[k]) for k in first)
        assert int(first["count"]) == 2 * 2 * 4  # steps x processes x images per process
