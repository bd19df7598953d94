"""``segshift pipeline --launcher submitit``: one cluster job per stage, in stage order.

Each job runs ``Pipeline.run(until=stage)`` holding the pipeline directory's lock: the stages
before it are found done (``stage.json``) and skipped, a changed one is rerun first (the loop's
own rule), and the job ends after its stage.

On SLURM the whole chain is submitted at once, each job with ``--dependency=afterok:<previous>``
and ``--kill-on-invalid-dep=yes`` (a failed stage cancels the ones after it), so the submitting
command may return at once (``--no-wait``). The local executor has no dependencies: there they
are emulated, the submitting process waiting for each stage's job to succeed before it submits
the next one (with ``--no-wait``, one stage is submitted per run of the command).

A rerun reads ``<pipeline dir>/submitit_jobs.json``: a chain still in flight is reported and
waited for (not resubmitted); after a failure the chain is resubmitted from the first stage not
done. When every stage is done and the pipeline config equals the saved ``pipeline.yaml``,
nothing is submitted (a changed stage config file alone is seen by the local launcher only).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from segshift.config import config_diff
from segshift.errors import ConfigError, TrainingError
from segshift.fileio import lock_holder
from segshift.pipeline.launch import (
    JobOptions,
    JobRecord,
    hold_lock,
    job_outcome,
    job_state,
    make_executor,
    read_record,
    resolve_cluster,
    stop_gracefully_on_usr2,
    submit,
    write_record,
)
from segshift.pipeline.loop import Pipeline, load_pipeline_config

RECORD = "submitit_jobs.json"
POLL_S = 10.0  # seconds between looks at the jobs in flight


def run_stage_job(config: str, overrides: list[str], stage: str) -> dict[str, Any]:
    """Inside a job: run the pipeline up to ``stage`` under the pipeline directory's lock."""
    stop_gracefully_on_usr2()
    pipeline = Pipeline(load_pipeline_config(config, overrides))
    lock, note = hold_lock(pipeline.dir)
    if lock is None:
        raise TrainingError(f"stage {stage} not run: {note}")
    try:
        if note:
            print(note, flush=True)
        result = pipeline.run(until=stage)
        return {"stage": stage, "miou": result.get("miou")}
    finally:
        lock.release()


def _records(path: Path) -> list[tuple[str, JobRecord]]:
    saved = read_record(path) or {}
    return [
        (job["stage"], JobRecord(saved["cluster"], job["job_id"], saved["folder"]))
        for job in saved.get("jobs", [])
    ]


def _first_failure(pipeline: Pipeline, records: list[tuple[str, JobRecord]]) -> str | None:
    """The first stage whose job ended without marking it done, with why; None if none did."""
    for stage, record in records:
        if pipeline.stage_done(stage):
            continue
        if job_state(record) is None:
            outcome, value = job_outcome(record)
            why = value if outcome != "success" else "it ended without finishing the stage"
            return f"stage {stage} (job {record.job_id}): {why}"
        return None  # still in flight
    return None


def _wait(pipeline: Pipeline, records: list[tuple[str, JobRecord]]) -> None:
    """Until no job of the chain is in flight and the lock is free, or a stage failed."""
    while True:
        failure = _first_failure(pipeline, records)
        if failure is not None:
            left = [r.job_id for _, r in records if job_state(r)]
            hint = f" (jobs {', '.join(left)} still queued: scancel them)" if left else ""
            raise TrainingError(f"{failure}{hint}. Run the same command again to resubmit")
        if not any(job_state(r) for _, r in records) and not lock_holder(pipeline.dir):
            return
        time.sleep(POLL_S)


def _changed(pipeline: Pipeline) -> list[str]:
    saved = pipeline.dir / "pipeline.yaml"
    if not saved.is_file():
        return ["pipeline.yaml missing"]
    return config_diff(OmegaConf.load(saved), pipeline.cfg)


def submit_pipeline(config: str | Path, overrides: list[str], options: JobOptions) -> None:
    """Submit the stages not done as a chain of jobs (module docstring); wait unless
    ``options.wait`` is False. Raises `TrainingError` naming a failed stage."""
    if Path(str(config)).is_file():
        config = str(Path(str(config)).resolve())
    pipeline = Pipeline(load_pipeline_config(config, overrides))
    if (options.nodes or 1) != 1:
        raise ConfigError("--nodes: a pipeline stage job is one process on one node")
    stages, path = pipeline.stage_names(), pipeline.dir / RECORD
    records, holder = _records(path), lock_holder(pipeline.dir)
    flying = [f"{stage}: job {r.job_id} {s}" for stage, r in records if (s := job_state(r))]
    if flying or holder:
        print(f"[pipeline] already running ({'; '.join(flying) or f'locked by {holder}'})")
        if not options.wait:
            return
        _wait(pipeline, records)  # then submit what that chain left (local: the next stages)
    todo = next((stages[i:] for i, s in enumerate(stages) if not pipeline.stage_done(s)), [])
    changed = _changed(pipeline)
    if not todo and not changed:
        print(f"[pipeline] all {len(stages)} stages are done: nothing to submit")
        _finish(pipeline)
        return
    if not todo:  # the pipeline config changed: every job re-checks its stages
        print(f"[pipeline] config changed ({'; '.join(changed[:8])}): submitting every stage")
        todo = stages
    failure = _first_failure(pipeline, records)
    if failure:
        print(f"[pipeline] previous chain: {failure}; resubmitting from {todo[0]}")
    cluster = resolve_cluster(options)
    folder = (options.folder or pipeline.dir / "submitit").resolve()
    gpus = 1 if options.gpus_per_job is None else options.gpus_per_job
    submitted: list[tuple[str, JobRecord]] = []
    for stage in todo:
        after = submitted[-1][1].job_id if submitted and cluster == "slurm" else None
        executor = make_executor(
            options,
            cluster,
            folder,
            f"segshift-{pipeline.cfg.name}-{stage}",
            gpus_per_node=gpus,
            dependency=f"afterok:{after}" if after else None,
        )
        record = submit(executor, cluster, run_stage_job, str(config), list(overrides), stage)
        submitted.append((stage, record))
        jobs = [{"stage": s, "job_id": r.job_id} for s, r in submitted]
        write_record(path, {"cluster": cluster, "folder": record.folder, "jobs": jobs})
        waits = f" after job {after}" if after else ""
        print(f"[pipeline] {stage}: submitted job {record.job_id}{waits}; log: {record.logs()}")
        if cluster == "slurm":
            continue
        if not options.wait:  # the local executor cannot hold a job until another succeeds
            print(
                "[pipeline] the local executor has no job dependencies: run the same command "
                "again once this stage's job has ended to submit the next stage"
            )
            return
        _wait(pipeline, submitted)
    if not options.wait:
        print(f"[pipeline] {len(submitted)} jobs submitted: run the same command to collect")
        return
    _wait(pipeline, submitted)
    _finish(pipeline)


def _finish(pipeline: Pipeline) -> None:
    """Print the summary the last stage wrote, or name the first stage not done."""
    missing = [s for s in pipeline.stage_names() if not pipeline.stage_done(s)]
    if missing:
        raise TrainingError(f"stage {missing[0]} is not done: run the same command again")
    summary = pipeline.dir / "summary.md"
    if summary.is_file():
        print(summary.read_text(), end="")
    print(f"[pipeline] done: {summary}")
