"""``--launcher submitit``: sweep points and pipeline stages as real submitit jobs (LocalExecutor
subprocesses), a job killed mid-training, an interrupted submitter, a locked point, and the
sbatch scripts a SLURM cluster gets (stub sbatch/sacct: no SLURM here)."""

from __future__ import annotations

import _thread
import csv
import io
import json
import os
import signal
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from helpers import read_log
from segshift.cli import main
from segshift.fileio import DirectoryLock, RunLockedError, lock_holder
from segshift.pipeline import launch, launch_pipeline, launch_sweep

TINY = [
    "data.num_workers=0",
    "data.streams.labeled.batch_size=2",
    "data.streams.labeled.crop_size=[32,32]",
    "data.val.batch_size=2",
    "train.eval_every=100",
    "train.ckpt_every=2",
    "train.log_every=1",
    "train.progress=plain",
    "train.threads=1",
    "train.accelerator=cpu",
    "schedule.warmup_iters=0",
]
LOCAL_JOBS = ["--launcher", "submitit", "--cluster", "local", "--max-jobs", "2"]


def sweep_argv(data: Path, out: Path, *overrides: str, iters: int = 8, seeds: str = "0,1"):
    """``segshift sweep`` of the tiny config over ``seed=<seeds>`` into ``out``."""
    roots = [f"data.streams.labeled.root={data}", f"data.val.root={data}"]
    config = ["sweep", "demo/source_only", *roots, *TINY, f"train.iters={iters}", *overrides]
    return [*config, "--set", f"seed={seeds}", "--out", str(out)]


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def wait_for(condition: Callable[[], object], timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def in_thread(function: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=function, daemon=True)
    thread.start()
    return thread


def train_steps(run: Path) -> list[int]:
    return [r["step"] for r in read_log(run) if r["kind"] == "train"]


def jobs_of(run: Path) -> list[str]:
    return json.loads((run / launch.RECORD).read_text())["jobs"]


def job_log(out: Path, job_id: str, task: int = 0) -> str:
    return (out / "submitit" / job_id / f"{job_id}_{task}_log.out").read_text()


@pytest.fixture
def quick_polls(monkeypatch) -> None:
    monkeypatch.setattr(launch_sweep, "POLL_S", 0.3)
    monkeypatch.setattr(launch_pipeline, "POLL_S", 0.3)


# ------------------------------------------------------------------------ the lock itself
def test_reentrant_lock_lets_its_process_in_and_the_probe_sees_the_holder(tmp_path) -> None:
    run = tmp_path / "run"
    assert lock_holder(run) is None  # no lock file yet
    job = DirectoryLock(run)
    job.acquire(reentrant=True)
    assert lock_holder(run) == f"{os.getpid()} {os.uname().nodename}"
    inner = DirectoryLock(run)  # the trainer inside the job
    assert inner.acquire() is None
    inner.release()
    assert lock_holder(run) is not None  # the nested release kept the job's lock
    job.release()
    assert lock_holder(run) is None and (run / ".lock").read_text() == ""
    plain = DirectoryLock(run)
    plain.acquire()
    with pytest.raises(RunLockedError):  # without reentrant=True, as before: refused
        DirectoryLock(run).acquire()
    plain.release()


# --------------------------------------------------------------------------- sweep jobs
def test_sweep_jobs_survive_a_killed_job_and_an_interrupted_submitter(
    tiny_folder: Path, tmp_path: Path, monkeypatch, capsys, quick_polls
) -> None:
    reference = tmp_path / "local"
    assert main(sweep_argv(tiny_folder, reference)) == 0
    out = tmp_path / "jobs"
    argv = [*sweep_argv(tiny_folder, out), *LOCAL_JOBS]
    a, b = out / "seed=0", out / "seed=1"
    capsys.readouterr()

    # 1. b is locked by a live process (this one): reported as running, never submitted; a's job
    #    is killed (SIGKILL) once it has written its step-2 checkpoint
    holder = DirectoryLock(b)
    holder.acquire()

    def kill_a() -> None:
        wait_for(lambda: (a / "checkpoints" / "latest.pt").exists())
        os.kill(int((a / ".lock").read_text().split()[0]), signal.SIGKILL)
        holder.release()

    thread = in_thread(kill_a)
    assert main(argv) == 2
    thread.join()
    first = capsys.readouterr()
    assert "[2/2] seed=1 (running, locked by" in first.out and "not resubmitted" in first.out
    assert "seed=0: failed: no result (killed" in first.out
    assert "2 of 2 points ended without a result" in first.err
    assert not (b / launch.RECORD).exists()
    killed_at = max(train_steps(a))
    assert 2 <= killed_at < 8

    # 2. rerun: a is resubmitted (it resumes), b submitted; the submitter is interrupted (Ctrl-C)
    #    while both jobs run, which goes on without it
    def interrupt() -> None:
        wait_for(lambda: lock_holder(a) and lock_holder(b))
        _thread.interrupt_main()

    thread = in_thread(interrupt)
    assert main(argv) == 130
    thread.join()
    second = capsys.readouterr().out
    assert "seed=0 (to resubmit: job" in second and "no result (killed" in second
    assert "seed=1 (to submit)" in second

    # 3. rerun as a new process would (no job handles): both points are running or done, nothing
    #    is submitted; it waits for them and writes the table
    monkeypatch.setattr(launch, "LIVE_JOBS", {})
    assert main(argv) == 0
    third = capsys.readouterr().out
    assert "submitted job" not in third
    for name in ("seed=0", "seed=1"):
        assert f"{name} (done)" in third or f"{name} (running" in third or f"{name} (job" in third
    assert read_csv(out / "sweep.csv") == read_csv(reference / "sweep.csv")  # exact resume
    assert len(jobs_of(a)) == 2 and len(jobs_of(b)) == 1
    assert train_steps(a) == train_steps(b) == list(range(1, 9))  # each step once in the log
    resumed = job_log(out, jobs_of(a)[1])
    assert f"resumed {a} at step" in resumed
    assert int(resumed.split(f"resumed {a} at step ")[1].split()[0]) >= 2  # steps 1-2: trained once

    # 4. and once more: every point is done, nothing runs
    assert main(argv) == 0
    assert capsys.readouterr().out.count("(done)") == 2


def test_two_task_job_trains_one_point_on_two_ranks(
    tiny_folder: Path, tmp_path: Path, quick_polls
) -> None:
    """Multi-device points run in submitit's multi-task mode: one rank per task (gloo here)."""
    out = tmp_path / "ddp"
    ddp = ["train.devices=2", "train.strategy=ddp"]
    assert main([*sweep_argv(tiny_folder, out, *ddp, iters=2, seeds="0"), *LOCAL_JOBS]) == 0
    run = out / "seed=0"
    (job,) = jobs_of(run)
    assert train_steps(run) == [1, 2]
    assert (run / "sweep_result.json").is_file()
    assert (
        "GLOBAL_RANK: 1, MEMBER: 2/2" in (out / "submitit" / job / f"{job}_1_log.err").read_text()
    )
    assert json.loads((out / "submitit" / job / "decision.json").read_text())["decision"] == "run"


def test_submitit_options_are_checked_before_anything_is_submitted(
    tiny_folder: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "s"
    base = sweep_argv(tiny_folder, out, seeds="0")
    assert main([*base, "--partition", "gpu"]) == 2
    assert "--partition: only with --launcher submitit" in capsys.readouterr().err
    assert main([*base, *LOCAL_JOBS, "--gpus-per-job", "2"]) == 2
    assert "--gpus-per-job 2: point seed=0 trains on 1 device(s)" in capsys.readouterr().err
    two_nodes = sweep_argv(tiny_folder, out, "train.num_nodes=2", seeds="0")
    assert main([*two_nodes, *LOCAL_JOBS]) == 2  # one node only, locally
    assert "the local executor has one node" in capsys.readouterr().err
    assert not (out / "seed=0" / launch.RECORD).exists()


# ------------------------------------------------------------------------- pipeline chain
def test_pipeline_stages_run_as_a_chain_of_jobs(
    pipeline_file: Path, tmp_path: Path, capsys, quick_polls
) -> None:
    spec = yaml.safe_load(pipeline_file.read_text())
    del spec["pipeline"]["baselines"]
    spec["pipeline"]["rounds"] = 1
    spec["pipeline"]["overrides"] += ["train.accelerator=cpu", "train.threads=1"]
    config = tmp_path / "chain.yaml"
    config.write_text(yaml.safe_dump(spec))
    argv = ["pipeline", str(config), "--launcher", "submitit", "--cluster", "local"]
    assert main([*argv, "--gpus-per-job", "0"]) == 0
    out = capsys.readouterr().out
    directory = Path(spec["output_dir"]) / "loop"
    record = json.loads((directory / launch_pipeline.RECORD).read_text())
    stages = ["teacher", "pseudo_1", "student_1"]
    assert [job["stage"] for job in record["jobs"]] == stages
    for index, job in enumerate(record["jobs"]):  # each job ran its own stage, after the others
        log = (directory / "submitit" / job["job_id"] / f"{job['job_id']}_0_log.out").read_text()
        assert f"=== {stages[index]}:" in log
        assert all(f"{done}: done, cached" in log for done in stages[:index])
        assert not any(f"=== {later}:" in log for later in stages[index + 1 :])
    summary = (directory / "summary.md").read_text()
    assert "(in progress)" not in summary and summary in out
    assert main(argv) == 0
    assert "all 3 stages are done: nothing to submit" in capsys.readouterr().out


# ------------------------------------------------------------------ SLURM (stub commands)
@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch) -> Path:
    """``sbatch`` that keeps each script and answers a job id, ``sacct`` that says PENDING."""
    bin_dir, spool = tmp_path / "bin", tmp_path / "spool"
    bin_dir.mkdir()
    spool.mkdir()
    scripts = {
        "srun": "#!/bin/sh\nexit 1\n",
        "sbatch": f"""#!/bin/sh
n=$(cat {spool}/count 2>/dev/null || echo 100); n=$((n+1)); echo $n > {spool}/count
cp "$1" {spool}/job_$n.sh; echo "Submitted batch job $n"
""",
        "sacct": f"""#!/bin/sh
echo "JobID|State|NodeList"
for f in {spool}/job_*.sh; do n=${{f##*job_}}; echo "${{n%.sh}}|PENDING|None"; done
""",
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return spool


def test_slurm_sweep_scripts_and_a_rerun_that_finds_them_queued(
    tiny_folder: Path, tmp_path: Path, fake_slurm: Path, capsys
) -> None:
    out = tmp_path / "s"
    gpu = ["train.accelerator=gpu", "train.devices=2", "train.strategy=ddp"]
    slurm = ["--launcher", "submitit", "--partition", "gpu", "--time", "60", "--no-wait"]
    options = ["--gpus-per-job", "2", "--slurm-option", "account=proj"]
    argv = [*sweep_argv(tiny_folder, out, *gpu), *slurm, *options]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "seed=0: submitted job 101" in printed and "seed=1: submitted job 102" in printed
    script = (fake_slurm / "job_101.sh").read_text()
    for line in (
        "--partition=gpu",
        "--time=60",
        "--nodes=1",
        "--ntasks-per-node=2",
        "--gpus-per-node=2",
        "--account=proj",
        "--job-name=segshift-seed=0",
    ):
        assert f"#SBATCH {line}\n" in script
    assert "srun" in script and "submitit.core._submit" in script
    assert jobs_of(out / "seed=0") == ["101"]
    # the rerun asks sacct: both jobs are pending, so nothing is submitted again
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "seed=0 (job 101 PENDING: not resubmitted)" in printed
    assert "seed=1 (job 102 PENDING: not resubmitted)" in printed
    assert not (fake_slurm / "job_103.sh").exists()


def test_slurm_pipeline_is_one_job_per_stage_with_afterok(
    pipeline_file: Path, fake_slurm: Path, capsys
) -> None:
    argv = ["pipeline", str(pipeline_file), "--launcher", "submitit", "--no-wait"]
    assert main([*argv, "--partition", "gpu", "--time", "30"]) == 0
    stages = ["baseline_source_only", "teacher", "pseudo_1", "student_1", "pseudo_2", "student_2"]
    scripts = sorted(fake_slurm.glob("job_*.sh"))
    assert len(scripts) == len(stages)
    for index, script in enumerate(scripts):
        text = script.read_text()
        assert f"#SBATCH --job-name=segshift-loop-{stages[index]}\n" in text
        assert "#SBATCH --partition=gpu\n" in text and "#SBATCH --time=30\n" in text
        if index == 0:
            assert "--dependency" not in text
        else:
            assert f"#SBATCH --dependency=afterok:{100 + index}\n" in text
            assert "#SBATCH --kill-on-invalid-dep=yes\n" in text
    assert "6 jobs submitted" in capsys.readouterr().out
    assert main(argv) == 0  # the chain is pending: reported, nothing submitted again
    assert "already running (baseline_source_only: job 101 PENDING" in capsys.readouterr().out
    assert len(list(fake_slurm.glob("job_*.sh"))) == len(stages)
