"""A process killed at any point of a checkpoint write leaves a loadable checkpoint behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from segshift.engine.checkpoint import load_checkpoint

# The child writes step 1 and 2, then dies (os._exit, no cleanup) at a chosen point of the
# write of step 3: inside the payload, before fsync, after fsync, between the two renames.
CHILD = textwrap.dedent(
    """
    import os, sys
    import torch
    import segshift.fileio as fileio
    from segshift.engine.checkpoint import save_checkpoint

    path, point = sys.argv[1], sys.argv[2]
    save_checkpoint(path, {"step": 1, "w": torch.ones(1000)})
    save_checkpoint(path, {"step": 2, "w": torch.full((1000,), 2.0)})

    real_fsync, real_replace = os.fsync, os.replace
    replaces = []

    def fsync(fd):
        if point == "before_fsync":
            os._exit(9)
        real_fsync(fd)
        if point == "after_fsync":
            os._exit(9)

    def replace(src, dst):
        replaces.append(dst)
        if point == "between_renames" and len(replaces) == 2:
            os._exit(9)
        real_replace(src, dst)

    class Dying:
        def __reduce__(self):
            os._exit(9)

    fileio.os.fsync, fileio.os.replace = fsync, replace
    payload = {"step": 3, "w": torch.zeros(1000)}
    if point == "during_payload":
        payload["poison"] = Dying()
    save_checkpoint(path, payload)
    """
)


@pytest.mark.parametrize(
    ("point", "expected_step"),
    [("during_payload", 2), ("before_fsync", 2), ("after_fsync", 2), ("between_renames", 2)],
)
def test_killed_writer_leaves_loadable_checkpoint(tmp_path: Path, point, expected_step) -> None:
    path = tmp_path / "latest.pt"
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), point], capture_output=True, text=True
    )
    assert result.returncode == 9, result.stderr
    with pytest.warns(RuntimeWarning) if not path.exists() else _no_warning():
        state, origin = load_checkpoint(path)
    assert state["step"] == expected_step
    assert float(state["w"][0]) == float(expected_step)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    # a killed process may leave its temp file; it never replaces a checkpoint
    assert all(name.endswith(".tmp") for name in leftovers)


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_resume_uses_previous_when_latest_is_corrupt(tiny_config) -> None:
    from segshift.engine.trainer import Trainer

    first = Trainer(tiny_config("train.iters=4", "train.ckpt_every=2"))
    first.fit()
    latest = first.run_dir / "checkpoints" / "latest.pt"
    latest.write_bytes(os.urandom(64))
    again = Trainer(tiny_config("train.iters=4"))
    with pytest.warns(RuntimeWarning, match="previous checkpoint"):
        assert again.resume()
    assert again.step == 2
