"""``segshift sweep --launcher submitit``: one cluster job per grid point (see ``launch.py``).

The submitting process reads every point's state, submits the points to (re)run (at most
``--max-jobs`` in flight), and by default waits, writing the sweep's table after every finished
point as the local sweep does. ``--no-wait`` returns after submitting; running the same command
again reports what is done, running or queued, resubmits what failed, and (waiting) collects::

    segshift sweep my.yaml --set seed=0,1,2 --launcher submitit --partition gpu --time 60

Inside the job, :func:`run_point_job` holds the point's run-directory lock from start to end,
trains (``sweep.run_point``: an unfinished run resumes from its checkpoint) and writes
``sweep_result.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from segshift.errors import ConfigError, TrainingError
from segshift.fileio import atomic_write_bytes, lock_holder
from segshift.pipeline.launch import (
    RECORD,
    JobOptions,
    JobRecord,
    export_distributed_env,
    hold_lock,
    job_outcome,
    job_rank,
    job_state,
    make_executor,
    read_record,
    resolve_cluster,
    stop_gracefully_on_usr2,
    submit,
    write_record,
)

POLL_S = 10.0  # seconds between looks at the jobs in flight
DECISION_WAIT_S = 600.0  # ranks > 0 wait this long for rank 0 to take the lock


def run_point_job(config: str, point: Any) -> dict[str, Any]:
    """Inside a job: run a sweep ``point`` under its run-directory lock; rank 0 writes the result.

    Returns ``{"status": "done" | "stopped" | "busy" | "finished_before", "note": ...}``; "busy"
    when another live process holds the point's lock (nothing is trained). The ranks of a
    multi-task job learn rank 0's decision from ``decision.json`` in the job's folder.
    """
    import submitit

    from segshift.pipeline.sweep import read_result, run_point, write_result

    export_distributed_env()
    stop_gracefully_on_usr2()
    rank, tasks, job_id = job_rank()
    decision_file = Path(submitit.JobEnvironment().paths.folder) / "decision.json"
    lock, note = None, ""
    if rank == 0:
        lock, note = hold_lock(point.run_dir, reentrant=True)
        if lock is None:
            decision = "busy"
        else:
            decision = "finished_before" if read_result(point) is not None else "run"
        if tasks > 1:
            payload = json.dumps({"job": job_id, "decision": decision})
            atomic_write_bytes(decision_file, payload.encode())
    else:
        decision = _wait_for_decision(decision_file, job_id)
    try:
        if note:
            print(note, flush=True)
        if decision != "run":
            return {"status": decision, "note": note}
        metrics = run_point(config, point.overrides, point.run_dir)
        if metrics is None:
            return {"status": "stopped", "note": "stopped before train.iters"}
        if rank == 0:
            write_result(point, metrics)
        return {"status": "done", "note": ""}
    finally:
        if lock is not None:
            lock.release()


def _wait_for_decision(path: Path, job_id: str) -> str:
    deadline = time.monotonic() + DECISION_WAIT_S
    while time.monotonic() < deadline:
        try:
            record = json.loads(path.read_text())
            if record["job"] == job_id:
                return record["decision"]
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise TrainingError(f"rank 0 of job {job_id} did not start within {DECISION_WAIT_S:.0f} s")


def point_resources(point: Any, options: JobOptions, pipeline: bool) -> tuple[int, int, int]:
    """(nodes, tasks per node, GPUs per node) of ``point``'s job.

    A training point gets one task per device: ``train.devices`` tasks on each of
    ``train.num_nodes`` nodes, and as many GPUs unless ``train.accelerator=cpu``;
    ``--gpus-per-job`` / ``--nodes`` must agree with that (the config decides the batch and the
    learning rate, so the launcher never changes it). A pipeline point is one task (its stages
    run one after the other) with ``--gpus-per-job`` GPUs (default 1).
    """
    if pipeline:
        if (options.nodes or 1) != 1:
            raise ConfigError("--nodes: a pipeline point is one process on one node")
        gpus = 1 if options.gpus_per_job is None else options.gpus_per_job
        return 1, 1, gpus
    train = point.config["train"]
    nodes, devices = int(train["num_nodes"]), train["devices"]
    if options.nodes is not None and options.nodes != nodes:
        raise ConfigError(
            f"--nodes {options.nodes}: point {point.name} has train.num_nodes={nodes}; give "
            f"train.num_nodes={options.nodes} (and train.devices per node) as an override"
        )
    if isinstance(devices, list):
        tasks = len(devices)
    elif isinstance(devices, int) and devices >= 1:
        tasks = devices
    else:  # -1 / "auto": the devices the job gets
        tasks = max(1, (options.gpus_per_job or nodes) // nodes)
    gpus = 0 if train["accelerator"] == "cpu" else tasks
    if options.gpus_per_job is not None and options.gpus_per_job != gpus * nodes:
        raise ConfigError(
            f"--gpus-per-job {options.gpus_per_job}: point {point.name} trains on {tasks} "
            f"device(s) x {nodes} node(s) with train.accelerator={train['accelerator']} "
            f"({gpus * nodes} GPUs); set train.devices / train.num_nodes / train.accelerator "
            "to match (one task per device)"
        )
    return nodes, tasks, gpus


class SubmititSweep:
    """``run_sweep``'s launcher: the points as submitit jobs (module docstring)."""

    def __init__(self, options: JobOptions) -> None:
        self.options = options

    def run_points(
        self, config: str | Path, points: list[Any], on_result: Callable[[dict], Any]
    ) -> dict[str, dict]:
        """Submit, watch and collect ``points``; ``on_result(results)`` after each finished one.

        Returns the finished points' results by name; raises `TrainingError` naming the points
        whose jobs ended without a result (after the others finished).
        """
        from segshift.config import is_pipeline_config
        from segshift.pipeline.sweep import read_result

        options, pipeline = self.options, is_pipeline_config(config)
        if Path(str(config)).is_file():
            config = str(Path(str(config)).resolve())  # the job may start elsewhere
        resources = {p.name: point_resources(p, options, pipeline) for p in points}
        results: dict[str, dict] = {}
        watched: dict[str, tuple[Any, JobRecord | None]] = {}
        queue: list[Any] = []
        for index, point in enumerate(points, 1):
            tag = f"[{index}/{len(points)}] {point.name}"
            result = read_result(point)
            if result is not None:
                results[point.name] = result
                print(f"{tag} (done)", flush=True)
                continue
            record, holder = self._record(point), lock_holder(point.run_dir)
            state = job_state(record) if record is not None else None
            if holder or state:
                doing = f"running, locked by {holder}" if holder else f"job {record.job_id} {state}"
                print(f"{tag} ({doing}: not resubmitted)", flush=True)
                watched[point.name] = (point, record if state else None)
                continue
            if record is None:
                print(f"{tag} (to submit)", flush=True)
            else:
                print(f"{tag} (to resubmit: job {record.job_id}: {self._why(record)})")
            queue.append(point)
        if results:
            on_result(results)
        cluster = resolve_cluster(options) if queue else "local"
        limit = options.max_jobs or (1 if cluster == "local" else len(points))
        failures: list[str] = []
        while True:
            while queue and len(watched) < limit:
                point = queue.pop(0)
                record = self._submit(config, point, cluster, resources[point.name])
                watched[point.name] = (point, record)
            if not options.wait or not watched:
                break
            time.sleep(POLL_S)
            for name, (point, record) in list(watched.items()):
                if (record is not None and job_state(record)) or lock_holder(point.run_dir):
                    continue
                del watched[name]
                result = read_result(point)
                if result is not None:
                    results[name] = result
                    print(f"{name}: done", flush=True)
                    on_result(results)
                elif self._stopped(record):
                    print(f"{name}: {self._why(record)}", flush=True)
                else:
                    failures.append(f"{name} ({self._why(record)})")
                    print(f"{name}: failed: {self._why(record)}", flush=True)
        if watched or queue:
            print(
                f"{len(watched)} point(s) in flight, {len(queue)} not submitted yet (--max-jobs "
                f"{limit}): run the same command again to collect (and submit) them"
            )
        if failures:
            raise TrainingError(
                f"{len(failures)} of {len(points)} points ended without a result: "
                f"{'; '.join(failures)}. Run the same command again to resubmit them (an "
                "interrupted training resumes from its checkpoint)"
            )
        return results

    def _record(self, point: Any) -> JobRecord | None:
        saved = read_record(point.run_dir / RECORD)
        if not saved:
            return None
        return JobRecord(saved["cluster"], saved["job_id"], saved["folder"])

    def _submit(self, config: str | Path, point: Any, cluster: str, resources: tuple) -> JobRecord:
        nodes, tasks, gpus = resources
        folder = (self.options.folder or point.run_dir.parent / "submitit").resolve()
        executor = make_executor(
            self.options,
            cluster,
            folder,
            f"segshift-{point.name}",
            nodes=nodes,
            tasks_per_node=tasks,
            gpus_per_node=gpus,
        )
        record = submit(executor, cluster, run_point_job, config, point)
        history = (read_record(point.run_dir / RECORD) or {}).get("jobs", [])
        payload = {**vars(record), "jobs": [*history, record.job_id]}
        write_record(point.run_dir / RECORD, payload)
        where = f" on {nodes} nodes" if nodes > 1 else ""
        print(
            f"{point.name}: submitted job {record.job_id} ({tasks} task(s), {gpus} GPU(s) per "
            f"node{where}); log: {record.job().paths.stdout}",
            flush=True,
        )
        return record

    @staticmethod
    def _stopped(record: JobRecord | None) -> bool:
        """The job ended on purpose before ``train.iters`` (not a failure)."""
        outcome, value = job_outcome(record) if record is not None else ("none", None)
        return outcome == "success" and value.get("status") == "stopped"

    @staticmethod
    def _why(record: JobRecord | None) -> str:
        """What a job that ended without a sweep result did."""
        if record is None:
            return "the process that held its lock ended without a result"
        outcome, value = job_outcome(record)
        if outcome != "success":
            return str(value)
        status = value.get("status")
        if status == "stopped":
            return "stopped before train.iters (train.stop_at); it resumes when resubmitted"
        if status == "busy":
            return f"found the point in use ({value['note']}) and trained nothing"
        return f"ended with status {status} but no sweep_result.json"
