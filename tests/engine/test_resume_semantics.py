"""Issue 11: resume does what the command says (or refuses before writing), run ownership (the
lock, copied/moved run directories, overwrite), and nothing lost or poisoned (non-finite state,
evaluation errors, temp files, latest.prev, log.jsonl, file modes, unsafe pickles)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from helpers import read_log
from segshift.config import load_config
from segshift.engine.checkpoint import load_checkpoint, save_checkpoint
from segshift.engine.trainer import Trainer, resume_rule
from segshift.errors import CheckpointError, ConfigError, DataError, TrainingError
from segshift.fileio import DirectoryLock, RunLockedError


def _steps(run_dir: Path, kind: str = "train") -> list[int]:
    return [r["step"] for r in read_log(run_dir) if r["kind"] == kind]


def _lr(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["lr"] for r in read_log(run_dir) if r["kind"] == "train"}


def _ckpt_step(path: Path) -> int:
    return int(load_checkpoint(path, fallback=False)[0]["step"])


# ------------------------------------------------------------------ changed values on resume
def test_rule_table_kinds() -> None:
    assert resume_rule("optim.lr")[0] == "applied"
    assert resume_rule("train.iters")[0] == "applied"
    assert resume_rule("schedule.power")[0] == "applied"
    assert resume_rule("data.streams.labeled.root")[0] == "applied"
    assert resume_rule("train.stop_at")[0] == "invocation"
    assert resume_rule("output_dir")[0] == "location"
    for key in ("optim.name", "model.arch", "method.params.x", "seed", "data.streams.a.hflip"):
        assert resume_rule(key)[0] == "refused", key
    assert resume_rule("some.future_key")[0] == "refused"  # unknown: refused, not guessed


def test_changed_lr_is_applied_with_the_schedule_rederived(tiny_config) -> None:
    first = Trainer(tiny_config("optim.lr=0.01", "train.stop_at=2"))
    first.fit()
    resumed = Trainer(tiny_config("optim.lr=0.02"))
    resumed.fit()
    lr = _lr(resumed.run_dir)
    assert lr[2] == pytest.approx(0.01 * (1 - 2 / 4) ** 0.9)  # before the resume: the old rate
    assert lr[3] == pytest.approx(0.02 * (1 - 3 / 4) ** 0.9)  # after: the new base, same decay
    assert OmegaConf.load(resumed.run_dir / "config.yaml").optim.lr == 0.02
    assert load_checkpoint(resumed.run_dir / "checkpoints" / "latest.pt")[0]["config"]["optim"][
        "lr"
    ] == pytest.approx(0.02)


def test_longer_train_iters_rederives_the_schedule(tiny_config) -> None:
    Trainer(tiny_config("optim.lr=0.01", "train.stop_at=2")).fit()
    resumed = Trainer(tiny_config("optim.lr=0.01", "train.iters=8", "train.eval_every=0"))
    resumed.fit()
    assert resumed.step == 8
    lr = _lr(resumed.run_dir)
    assert lr[3] == pytest.approx(0.01 * (1 - 3 / 8) ** 0.9)  # not 0 after the old 4 steps
    assert lr[5] == pytest.approx(0.01 * (1 - 5 / 8) ** 0.9)
    assert lr[8] == pytest.approx(0.0)
    assert _steps(resumed.run_dir) == [1, 2, 3, 4, 5, 6, 7, 8]


def test_finished_run_continues_to_more_iters(tiny_config) -> None:
    Trainer(tiny_config("optim.lr=0.01")).fit()
    more = Trainer(tiny_config("optim.lr=0.01", "train.iters=6"))
    more.fit()
    assert more.step == 6
    assert _lr(more.run_dir)[5] == pytest.approx(0.01 * (1 - 5 / 6) ** 0.9)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("optim.name=sgd", "optim.name"),
        ("model.align_corners=true", "model.align_corners"),
        ("seed=7", "seed"),
        ("data.streams.labeled.hflip=false", "data.streams.labeled.hflip"),
        ("train.precision=bf16-mixed", "train.precision"),
    ],
)
def test_refused_change_names_the_key_and_writes_nothing(tiny_config, override, key) -> None:
    first = Trainer(tiny_config("train.stop_at=2"))
    first.fit()
    run = first.run_dir
    before = {p: p.read_bytes() for p in (run / "config.yaml", run / "log.jsonl")}
    latest = (run / "checkpoints" / "latest.pt").read_bytes()
    with pytest.raises(ConfigError, match=rf"changed {key}: .*start a new run") as caught:
        Trainer(tiny_config(override)).fit()
    assert "\n" not in str(caught.value)
    for path, data in before.items():  # config.yaml is not rewritten before the resume succeeds
        assert path.read_bytes() == data, path
    assert (run / "checkpoints" / "latest.pt").read_bytes() == latest
    again = Trainer(tiny_config())  # the run can still be resumed as it was
    again.fit()
    assert again.step == 4


def test_train_iters_below_the_run_step_is_refused(tiny_config) -> None:
    Trainer(tiny_config("train.stop_at=3", "train.ckpt_every=1")).fit()
    with pytest.raises(ConfigError, match=r"train\.iters=2 is below the step .* \(3\)"):
        Trainer(tiny_config("train.iters=2")).fit()


def test_stop_at_belongs_to_the_invocation(tiny_config) -> None:
    first = Trainer(tiny_config("train.stop_at=1", "train.ckpt_every=1"))
    first.fit()
    assert first.step == 1
    saved = OmegaConf.load(first.run_dir / "config.yaml")
    assert saved.train.stop_at is None
    assert (
        load_checkpoint(first.run_dir / "checkpoints" / "latest.pt")[0]["config"]["train"][
            "stop_at"
        ]
        is None
    )
    # `segshift train --resume RUN` reads config.yaml back: it goes on to the end, not 1 step
    again = Trainer(load_config(first.run_dir / "config.yaml"), run_dir=first.run_dir)
    again.fit()
    assert again.step == 4


# ---------------------------------------------------------------------- where the run is
def test_copied_run_directory_trains_where_it_is(tiny_config, tmp_path) -> None:
    original = Trainer(tiny_config("train.stop_at=2"))
    original.fit()
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(original.run_dir, copy)
    untouched = {p: p.read_bytes() for p in original.run_dir.rglob("*") if p.is_file()}
    resumed = Trainer(load_config(copy / "config.yaml"), run_dir=copy)
    resumed.fit()
    assert resumed.step == 4 and resumed.run_dir == copy
    assert _ckpt_step(copy / "checkpoints" / "latest.pt") == 4
    assert OmegaConf.load(copy / "config.yaml").output_dir == str(copy.parent)
    for path, data in untouched.items():
        assert path.read_bytes() == data, path  # the original run was not written to


def test_relative_output_dir_resumed_from_another_directory(
    tiny_config, tmp_path, monkeypatch, capsys
) -> None:
    first_cwd, other_cwd = tmp_path / "w1", tmp_path / "w2"
    first_cwd.mkdir()
    other_cwd.mkdir()
    monkeypatch.chdir(first_cwd)
    Trainer(tiny_config("output_dir=runs", "train.stop_at=2")).fit()
    run = first_cwd / "runs" / "tiny"
    assert OmegaConf.load(run / "config.yaml").output_dir == "runs"
    monkeypatch.chdir(other_cwd)
    capsys.readouterr()
    resumed = Trainer(load_config(run / "config.yaml"), run_dir=run)
    resumed.fit()
    assert "at step 2" in capsys.readouterr().out
    assert resumed.step == 4 and _ckpt_step(run / "checkpoints" / "latest.pt") == 4
    assert not (other_cwd / "runs").exists()


# -------------------------------------------------------------------------------- the lock
def test_second_training_on_a_locked_run_is_refused(tiny_config) -> None:
    trainer = Trainer(tiny_config())
    holder = DirectoryLock(trainer.run_dir)
    assert holder.acquire() is None
    try:
        with pytest.raises(RunLockedError, match=rf"in use by process {os.getpid()} "):
            trainer.fit()
    finally:
        holder.release()
    assert not (trainer.run_dir / "checkpoints").exists()  # refused before writing anything
    trainer.fit()  # free again
    assert trainer.step == 4
    assert (trainer.run_dir / ".lock").read_text() == ""  # released cleanly


def test_stale_lock_of_a_dead_process_is_taken_over(tiny_config, capsys) -> None:
    trainer = Trainer(tiny_config())
    trainer.run_dir.mkdir(parents=True)
    (trainer.run_dir / ".lock").write_text("4194999 deadhost\n")  # written, never flocked
    trainer.fit()
    out = capsys.readouterr().out
    assert "took over the lock" in out and "4194999 deadhost" in out
    assert trainer.step == 4


# ------------------------------------------------------------------------------ overwrite
def test_resume_false_on_an_existing_run_needs_overwrite(tiny_config, capsys) -> None:
    Trainer(tiny_config("train.stop_at=3", "train.ckpt_every=1")).fit()
    with pytest.raises(ConfigError, match=r"already holds a run.*--overwrite"):
        Trainer(tiny_config("train.resume=false")).fit()
    fresh = Trainer(tiny_config("train.resume=false"), overwrite=True)
    fresh.fit()
    assert fresh.step == 4
    run = fresh.run_dir
    assert _steps(run) == [1, 2, 3, 4]  # the old run's records are gone
    assert _ckpt_step(run / "checkpoints" / "latest.prev.pt") == 2  # from the new run
    assert load_checkpoint(run / "checkpoints" / "best.pt")[0]["step"] in (2, 4)
    assert OmegaConf.load(run / "config.yaml").train.resume is True  # --resume works on it
    assert "--overwrite: removed the previous run" in capsys.readouterr().out


# ---------------------------------------------------------------------- non-finite state
def test_checkpoint_postponed_while_the_loss_is_non_finite(tiny_config, capsys) -> None:
    trainer = Trainer(tiny_config("train.iters=4", "train.max_nonfinite=3", "train.eval_every=0"))
    original = trainer.method.training_step

    def poisoned(batch, step):
        out = original(batch, step)
        if step == 1:  # the second step (a checkpoint step) has a NaN loss
            out["loss"] = out["loss"] * float("nan")
        return out

    trainer.method.training_step = poisoned
    trainer.fit()
    out = capsys.readouterr().out
    assert "checkpoint of step 2 postponed: the loss is non-finite" in out
    checkpoints = trainer.run_dir / "checkpoints"
    assert _ckpt_step(checkpoints / "latest.prev.pt") == 3  # the first finite step after it
    assert _ckpt_step(checkpoints / "latest.pt") == 4


def test_diverged_weights_are_never_checkpointed(tiny_config) -> None:
    trainer = Trainer(tiny_config("train.eval_every=0", "train.ckpt_every=1"))
    original = trainer.method.after_step

    def diverge(step):
        original(step)
        if step == 2:  # the third step leaves NaN weights behind a finite loss
            with torch.no_grad():
                next(trainer.method.parameters()).fill_(float("nan"))

    trainer.method.after_step = diverge
    with pytest.raises(TrainingError, match=r"non-finite values after step 3 .*holds step 2"):
        trainer.fit()
    state, _ = load_checkpoint(trainer.run_dir / "checkpoints" / "latest.pt", fallback=False)
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["method"].values() if v.is_floating_point())


# ------------------------------------------------------------------ evaluation errors
def test_evaluation_error_at_a_checkpoint_step_loses_nothing(tiny_config, tmp_path) -> None:
    straight = Trainer(tiny_config(f"output_dir={tmp_path / 'a'}"))
    straight.fit()
    trainer = Trainer(tiny_config(f"output_dir={tmp_path / 'b'}"))
    original = trainer.evaluate

    def broken(progress=False):
        if trainer.step == 4:
            raise DataError("val/bad.png: cannot read image")
        return original(progress)

    trainer.evaluate = broken
    with pytest.raises(DataError, match="bad.png"):
        trainer.fit()
    state, _ = load_checkpoint(trainer.run_dir / "checkpoints" / "latest.pt", fallback=False)
    assert state["step"] == 4 and state["eval_pending"] == 4  # saved before evaluating
    assert _ckpt_step(trainer.run_dir / "checkpoints" / "latest.prev.pt") == 2
    resumed = Trainer(tiny_config(f"output_dir={tmp_path / 'b'}"))
    metrics = resumed.fit()  # the owed evaluation runs first
    assert metrics["miou"] == pytest.approx(read_log(straight.run_dir)[-1]["miou"])
    assert _steps(resumed.run_dir, "eval") == [2, 4]
    assert _steps(resumed.run_dir) == [1, 2, 3, 4]
    for key, value in straight.method.state_dict().items():
        assert torch.equal(value, resumed.method.state_dict()[key]), key
    done, _ = load_checkpoint(resumed.run_dir / "checkpoints" / "latest.pt", fallback=False)
    assert done["eval_pending"] is None and done["best"]["step"] in (2, 4)


def test_evaluation_error_between_checkpoints_saves_the_step(tiny_config) -> None:
    trainer = Trainer(tiny_config("train.eval_every=3", "train.ckpt_every=100"))

    def broken(progress=False):
        raise DataError("val/bad.png: images of mixed sizes")

    trainer.evaluate = broken
    with pytest.raises(DataError):
        trainer.fit()
    state, _ = load_checkpoint(trainer.run_dir / "checkpoints" / "latest.pt", fallback=False)
    assert state["step"] == 3 and state["eval_pending"] == 3


# ------------------------------------------------------------- temp files, prev, log.jsonl
def test_stale_temp_files_are_removed_at_start(tiny_config, capsys) -> None:
    first = Trainer(tiny_config("train.stop_at=2"))
    first.fit()
    checkpoints = first.run_dir / "checkpoints"
    leftovers = [checkpoints / ".latest.pt.k1ll3d.tmp", first.run_dir / ".config.yaml.x.tmp"]
    for path in leftovers:
        path.write_bytes(b"\0" * 1000)
    capsys.readouterr()
    Trainer(tiny_config()).fit()
    assert not any(path.exists() for path in leftovers)
    assert "removed 2 temp file(s)" in capsys.readouterr().out


def test_signal_at_a_checkpoint_step_keeps_prev_distinct(tiny_config) -> None:
    trainer = Trainer(tiny_config("train.iters=6", "train.eval_every=2"))
    original = trainer.method.training_step

    def signalled(batch, step):
        if step == 3:  # during the 4th step, a checkpoint and evaluation step
            trainer._on_signal(15, None)
        return original(batch, step)

    trainer.method.training_step = signalled
    with pytest.raises(Exception, match="SIGTERM at step 4"):
        trainer.fit()
    checkpoints = trainer.run_dir / "checkpoints"
    latest, _ = load_checkpoint(checkpoints / "latest.pt", fallback=False)
    assert latest["step"] == 4 and latest["eval_pending"] is None  # evaluated, then rewritten
    assert _ckpt_step(checkpoints / "latest.prev.pt") == 2


def test_rerun_steps_are_logged_once(tiny_config) -> None:
    trainer = Trainer(tiny_config("train.iters=6", "train.ckpt_every=2", "train.eval_every=0"))
    original = trainer.train_step

    def crash_at_step_six():
        if trainer.step == 5:  # step 5 ran after the checkpoint of step 4
            raise KeyboardInterrupt  # like a kill: nothing after this point is saved
        return original()

    trainer.train_step = crash_at_step_six
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert _steps(trainer.run_dir) == [1, 2, 3, 4, 5]
    resumed = Trainer(tiny_config("train.iters=6", "train.ckpt_every=2", "train.eval_every=0"))
    resumed.fit()
    assert _steps(resumed.run_dir) == [1, 2, 3, 4, 5, 6]  # step 5 once, from the resumed run


# --------------------------------------------------------------------------- file modes
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_follow_the_umask(tmp_path, umask, mode) -> None:
    old = os.umask(umask)
    try:
        save_checkpoint(tmp_path / "latest.pt", {"step": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "latest.pt").stat().st_mode & 0o777 == mode


# ----------------------------------------------------------------------- unsafe pickles
class _Payload:
    """Pickles as a call to ``Path.touch`` on a marker: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_carrying_code_is_refused(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"step": 1, "method": {}, "x": _Payload(marker)}, path)
    (tmp_path / "evil.prev.pt").write_bytes(path.read_bytes())
    with pytest.raises(CheckpointError, match=r"evil\.pt holds objects other than tensors"):
        load_checkpoint(path)
    assert not marker.exists()


def test_trained_checkpoint_loads_with_weights_only(tiny_config) -> None:
    trainer = Trainer(tiny_config("train.iters=2"))
    trainer.fit()
    for name in ("latest.pt", "best.pt"):
        state, _ = load_checkpoint(trainer.run_dir / "checkpoints" / name, fallback=False)
        assert state["step"] == 2


# --------------------------------------------------------------------------- kill -9 loop
KILL_CHILD = """
import sys, torch
torch.set_num_threads(1)
from segshift.config import load_config
from segshift.engine.trainer import Trainer
Trainer(load_config("demo/source_only", sys.argv[1:])).fit()
"""


def test_random_kill_9_then_resume_is_bitwise_exact(tiny_folder, tmp_path) -> None:
    import random
    import signal
    import subprocess
    import sys
    import time

    def args(out: Path) -> list[str]:
        return [
            sys.executable, "-c", KILL_CHILD, f"data.streams.labeled.root={tiny_folder}",
            f"data.val.root={tiny_folder}", f"output_dir={out}", "name=k", "data.num_workers=0",
            "data.streams.labeled.batch_size=2", "data.streams.labeled.crop_size=[32,32]",
            "train.iters=12", "train.eval_every=0", "train.ckpt_every=1", "train.log_every=1",
            "train.progress=plain", "schedule.warmup_iters=0",
        ]  # fmt: skip

    straight = subprocess.run(args(tmp_path / "a"), capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr
    rng = random.Random(11)
    log = tmp_path / "b" / "k" / "log.jsonl"
    kills = 0
    for _ in range(1):  # one kill keeps the suite fast; the crash-safety tests cover more
        proc = subprocess.Popen(args(tmp_path / "b"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        seen = log.read_text().count("\n") if log.exists() else 0
        target, deadline = seen + rng.randint(1, 3), time.time() + 240
        while proc.poll() is None and time.time() < deadline:
            if log.exists() and log.read_text().count("\n") >= target:
                time.sleep(rng.uniform(0.0, 0.15))  # anywhere inside a step or a save
                break
            time.sleep(0.02)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
    finish = subprocess.run(args(tmp_path / "b"), capture_output=True, text=True, timeout=300)
    assert finish.returncode == 0, finish.stderr
    assert kills >= 1
    a, _ = load_checkpoint(tmp_path / "a" / "k" / "checkpoints" / "latest.pt", fallback=False)
    b, _ = load_checkpoint(tmp_path / "b" / "k" / "checkpoints" / "latest.pt", fallback=False)
    assert a["step"] == b["step"] == 12
    for key, value in a["method"].items():
        assert torch.equal(value, b["method"][key]), key
    steps = _steps(tmp_path / "b" / "k")
    assert steps == list(range(1, 13))  # every step logged once despite the re-runs
    leftovers = list((tmp_path / "b" / "k").rglob(".*.tmp"))
    assert leftovers == []
