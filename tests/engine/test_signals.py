"""A real SIGTERM to a training process: checkpoint at the next step boundary, clear exit, resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from segshift.engine.checkpoint import load_checkpoint


def test_sigterm_checkpoints_and_resumes(tmp_path: Path, folder_factory) -> None:
    data = folder_factory(tmp_path / "data")
    run_dir = tmp_path / "runs" / "sig"
    args = [
        sys.executable, "-m", "segshift.cli", "train", "demo/source_only", "name=sig",
        f"data.streams.labeled.root={data}", f"data.val.root={data}",
        f"output_dir={tmp_path / 'runs'}", "data.num_workers=0",
        "data.streams.labeled.batch_size=2", "data.streams.labeled.crop_size=[32,32]",
        "train.iters=100000", "train.eval_every=0", "train.ckpt_every=100000",
        "train.log_every=1", "train.progress=plain",
    ]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = run_dir / "log.jsonl"
    deadline = time.time() + 180
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM at step" in err and "latest.pt" in err
    state, _ = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert state["step"] == steps[-1] >= 2  # the checkpoint is the last step that ran

    resume = subprocess.run(
        [sys.executable, "-m", "segshift.cli", "train", "--resume", str(run_dir),
         f"train.stop_at={state['step'] + 2}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resume.returncode == 0, resume.stderr
    assert load_checkpoint(run_dir / "checkpoints" / "latest.pt")[0]["step"] == state["step"] + 2
