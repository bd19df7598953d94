"""Sweep points and pipeline stages as cluster jobs through submitit (SLURM, or local processes).

``segshift sweep ... --launcher submitit`` submits one job per grid point, ``segshift pipeline
... --launcher submitit`` one job per stage (``pipeline/launch_pipeline.py``). The default
``--launcher local`` runs everything in the calling process, as before.

On SLURM (``--cluster slurm``, or ``auto`` where ``srun`` exists) jobs go through ``sbatch`` with
``--partition``, ``--time`` (minutes), ``--nodes``, ``--gpus-per-node`` and
``--ntasks-per-node``. Elsewhere ``--cluster local`` runs them as local subprocesses with
submitit's LocalExecutor (what the tests use): the same job code, without a queue.

A point that trains on several devices runs in submitit's multi-task mode: one task per device
(``train.devices`` tasks on each of ``train.num_nodes`` nodes), every task one rank. On SLURM,
Lightning Fabric reads the ranks and the main address from SLURM's variables itself; under the
LocalExecutor :func:`export_distributed_env` sets ``LOCAL_RANK``, ``NODE_RANK``, ``WORLD_SIZE``
and ``MASTER_ADDR/PORT``. Not ``torchrun`` inside the job: its agent starts the ranks as new
processes, and rank 0's trainer would then be refused the point's lock, which the job holds.

The run-directory lock holds across jobs: a point's job takes ``DirectoryLock(run_dir)`` first
(``reentrant``: the training it runs in-process takes it again) and keeps it until the point's
``sweep_result.json`` is written. A rerun of the sweep reads every point's state: done
(``sweep_result.json``), running (its lock is held by a live process, on any node that shares
the file system), queued (its recorded job, ``<run_dir>/submitit_job.json``, is still pending or
running), or to (re)submit. Two jobs of one point never train at once: the second finds the lock
held and ends without training.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segshift.errors import ConfigError
from segshift.fileio import DirectoryLock, RunLockedError, atomic_write_bytes

RECORD = "submitit_job.json"  # per point: the job that runs it, and every job it had
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # LocalExecutor's own default is 2 minutes
LOCK_RETRY_S = 10.0  # a rerun's lock probe holds the lock for an instant: a starting job retries
SLURM_ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED"}


@dataclass
class JobOptions:
    """How jobs are submitted (the ``--launcher submitit`` options)."""

    cluster: str = "auto"  # slurm | local | auto (slurm where srun exists)
    folder: Path | None = None  # submitit's folder (job pickles and logs); default <out>/submitit
    partition: str | None = None
    gpus_per_job: int | None = None  # default: the point's train.devices x num_nodes
    nodes: int | None = None  # default: the point's train.num_nodes
    time_min: int | None = None
    cpus_per_task: int | None = None
    slurm_options: dict[str, str] = field(default_factory=dict)  # extra #SBATCH --key=value
    max_jobs: int | None = None  # jobs in flight at once; default: all (SLURM), 1 (local)
    wait: bool = True
    poll_s: float = 5.0


def add_launcher_arguments(parser: argparse.ArgumentParser) -> None:
    """``--launcher`` and the submitit options of ``sweep`` and ``pipeline``."""
    group = parser.add_argument_group("cluster jobs (--launcher submitit)")
    group.add_argument("--launcher", choices=["local", "submitit"], default="local")
    group.add_argument("--cluster", choices=["auto", "slurm", "local"], default="auto")
    group.add_argument("--partition", help="SLURM partition")
    group.add_argument("--gpus-per-job", type=int, help="GPUs per job, all nodes together")
    group.add_argument("--nodes", type=int, help="nodes per job (the point's train.num_nodes)")
    group.add_argument("--time", type=int, metavar="MINUTES", help="time limit of each job")
    group.add_argument("--cpus-per-task", type=int)
    group.add_argument(
        "--slurm-option", action="append", default=[], metavar="KEY=VALUE",
        help="further #SBATCH option, e.g. account=myproj or qos=high (repeatable)",
    )  # fmt: skip
    group.add_argument("--max-jobs", type=int, help="jobs in flight at once (local default: 1)")
    group.add_argument("--submitit-dir", help="job pickles and logs (default: OUT/submitit)")
    group.add_argument(
        "--no-wait", action="store_true", help="return once submitted; rerun to collect"
    )


def options_from_args(args: argparse.Namespace) -> JobOptions | None:
    """The job options of ``--launcher submitit``, None for ``--launcher local``."""
    names = ("partition", "gpus_per_job", "nodes", "time", "cpus_per_task", "max_jobs")
    given = [n for n in names if getattr(args, n) is not None] + [
        n for n in ("slurm_option", "submitit_dir", "no_wait") if getattr(args, n)
    ]
    if args.launcher == "local":
        if given or args.cluster != "auto":
            flags = ", ".join("--" + n.replace("_", "-") for n in given or ["cluster"])
            raise ConfigError(f"{flags}: only with --launcher submitit")
        return None
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--launcher submitit needs the submitit package: pip install 'segshift[cluster]'"
        ) from None
    for name in ("gpus_per_job", "nodes", "time", "cpus_per_task", "max_jobs"):
        value, low = getattr(args, name), 0 if name == "gpus_per_job" else 1
        if value is not None and value < low:
            raise ConfigError(f"--{name.replace('_', '-')}: must be >= {low}; got {value}")
    extra = {}
    for option in args.slurm_option:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--slurm-option {option!r}: expected KEY=VALUE, e.g. account=me")
        extra[key.strip()] = value.strip()
    return JobOptions(
        cluster=args.cluster,
        folder=Path(args.submitit_dir) if args.submitit_dir else None,
        partition=args.partition,
        gpus_per_job=args.gpus_per_job,
        nodes=args.nodes,
        time_min=args.time,
        cpus_per_task=args.cpus_per_task,
        slurm_options=extra,
        max_jobs=args.max_jobs,
        wait=not args.no_wait,
    )


def resolve_cluster(options: JobOptions) -> str:
    """``slurm`` or ``local``: ``auto`` is slurm where ``srun`` is on the PATH."""
    if options.cluster == "auto":
        cluster = "slurm" if shutil.which("srun") else "local"
        if cluster == "local":
            print("no SLURM here (srun not found): jobs run as local processes (--cluster local)")
        return cluster
    if options.cluster == "slurm" and not shutil.which("srun"):
        raise ConfigError("--cluster slurm: srun is not on the PATH (not a SLURM machine?)")
    return options.cluster


def make_executor(
    options: JobOptions,
    cluster: str,
    folder: Path,
    name: str,
    *,
    nodes: int = 1,
    tasks_per_node: int = 1,
    gpus_per_node: int = 0,
    dependency: str | None = None,
) -> Any:
    """A submitit executor for one job; its files go to ``folder/<job id>``."""
    import submitit

    if cluster == "local" and nodes > 1:
        raise ConfigError(f"{name}: {nodes} nodes need SLURM; the local executor has one node")
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
    params: dict[str, Any] = {"name": name, "nodes": nodes, "tasks_per_node": tasks_per_node}
    if gpus_per_node or cluster == "local":  # local: 0 hides the GPUs (CUDA_VISIBLE_DEVICES="")
        params["gpus_per_node"] = gpus_per_node
    if options.time_min is not None or cluster == "local":
        params["timeout_min"] = options.time_min or LOCAL_TIMEOUT_MIN
    if options.cpus_per_task is not None:
        params["cpus_per_task"] = options.cpus_per_task
    if cluster == "slurm":
        extra = dict(options.slurm_options)
        if options.partition:
            params["slurm_partition"] = options.partition
        if dependency:
            params["slurm_dependency"] = dependency
            extra.setdefault("kill-on-invalid-dep", "yes")  # a failed stage cancels the rest
        if extra:
            params["slurm_additional_parameters"] = extra
    executor.update_parameters(**params)
    return executor


# --------------------------------------------------------------------------- job records
@dataclass
class JobRecord:
    """A submitted job: enough to ask about it from another process (a rerun)."""

    cluster: str
    job_id: str
    folder: str  # the executor's folder, with %j

    def job(self) -> Any:
        import submitit
        from submitit.local.local import LocalJob

        kind = submitit.SlurmJob if self.cluster == "slurm" else LocalJob
        return kind(folder=self.folder, job_id=self.job_id)

    def logs(self) -> str:
        paths = self.job().paths
        return f"{paths.stdout} and {paths.stderr.name}"


LIVE_JOBS: dict[str, Any] = {}  # job id -> the submitit Job this process submitted
atexit.register(lambda: LIVE_JOBS.clear())  # drop them while submitit can still be imported


def submit(executor: Any, cluster: str, function: Callable, *args: Any) -> JobRecord:
    """Submit ``function(*args)``; the record names the job for later processes."""
    job = executor.submit(function, *args)
    LIVE_JOBS[str(job.job_id)] = job
    return JobRecord(cluster, str(job.job_id), str(executor.folder))


def job_state(record: JobRecord) -> str | None:
    """The job's scheduler state while it is in flight (PENDING, RUNNING...), else None."""
    job = LIVE_JOBS.get(record.job_id)
    if job is not None and record.cluster == "local":
        if job.done():
            LIVE_JOBS.pop(record.job_id)
            return None
        return "RUNNING"
    if record.cluster == "slurm":
        job = job or record.job()
        state = job.watcher.get_state(record.job_id).split()[0].upper()
        return state if state in SLURM_ACTIVE | {"UNKNOWN"} else None
    try:  # a local job of an earlier process: its controller (pid = job id) still runs?
        cmdline = Path(f"/proc/{int(record.job_id)}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return "RUNNING" if b"submitit.local._local" in cmdline else None


def job_outcome(record: JobRecord) -> tuple[str, Any]:
    """("success", value), ("error", last line of the traceback) or ("none", why), read from
    the result file the job wrote."""
    from submitit.core.utils import pickle_load

    paths = record.job().paths
    if not paths.result_pickle.exists():
        return "none", f"no result (killed, cancelled or out of time?); log: {record.logs()}"
    outcome, value = pickle_load(paths.result_pickle)
    if outcome == "error":
        lines = [line for line in str(value).strip().splitlines() if line.strip()]
        return "error", f"{lines[-1] if lines else value}; log: {record.logs()}"
    return outcome, value


def read_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_record(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=1) + "\n").encode())


# ------------------------------------------------------------------------- inside the jobs
def hold_lock(directory: Path, reentrant: bool = False) -> tuple[DirectoryLock | None, str]:
    """(the lock, note) when taken (retrying for a few seconds: a rerun's probe holds it for an
    instant), (None, the holder's message) when another live process holds it."""
    lock = DirectoryLock(directory)
    deadline = time.monotonic() + LOCK_RETRY_S
    while True:
        try:
            return lock, lock.acquire(reentrant=reentrant) or ""
        except RunLockedError as err:
            if time.monotonic() > deadline:
                return None, str(err)
            time.sleep(0.5)


def job_rank() -> tuple[int, int, str]:
    """(global rank, number of tasks, job id + restart count) of this submitit task."""
    import submitit

    env = submitit.JobEnvironment()
    restarts = os.environ.get("SLURM_RESTART_COUNT", "0")  # a requeued job keeps its id
    return env.global_rank, env.num_tasks, f"{env.job_id}.{restarts}"


def export_distributed_env() -> None:
    """The torch.distributed variables Lightning Fabric reads in a multi-task LocalExecutor job
    (on SLURM, Fabric's SLURMEnvironment reads SLURM's own variables instead)."""
    import submitit

    env = submitit.JobEnvironment()
    if env.num_tasks == 1 or env.name() == "slurm":
        return
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(20000 + int(env.job_id) % 20000),
        WORLD_SIZE=str(env.num_tasks),
        RANK=str(env.global_rank),
        LOCAL_RANK=str(env.local_rank),
        NODE_RANK=str(env.node),
    )


def stop_gracefully_on_usr2() -> None:
    """SLURM's warning before the time limit (submitit asks for SIGUSR2) becomes a SIGTERM, on
    which the trainer writes a checkpoint and stops; the next run resumes from there."""
    signal.signal(signal.SIGUSR2, lambda *_: signal.raise_signal(signal.SIGTERM))
