"""Checks of a whole pipeline spec at load time, before any stage trains.

A pipeline's stages run for minutes to hours each; a bad value in a later stage
(``pseudo_label.threshold=7``, ``student.real_share=[1.5]``, ``teacher.config=uda/nosuch``, a
student stream that does not exist) must not wait for the earlier ones to finish. The field
checks (:data:`SHARE`, :data:`SHARES`, ...) are declared on the schema in
`segshift.pipeline.loop` and run when the config loads; :func:`check_stages` loads every
stage's run config and checks what links the stages.

Example::

    >>> check_stages(pipeline)   # ConfigError "pipeline.teacher.config: ..." before training
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from segshift.config import Check, load_config
from segshift.errors import ConfigError


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


SHARE = Check(lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]")
SHARES = Check(
    lambda v: isinstance(v, list) and bool(v) and all(SHARE.ok(x) for x in v),
    "a non-empty list of numbers in (0, 1]",
)
REAL_SHARES = Check(
    lambda v: isinstance(v, list) and all(_number(x) and 0 <= x <= 1 for x in v),
    "a list of numbers in [0, 1] (one per round, the last repeats), or []",
)
SCALES = Check(
    lambda v: isinstance(v, list) and bool(v) and all(_number(x) and 0 < x <= 10 for x in v),
    "a non-empty list of numbers in (0, 10]",
)


def share_problem(cfg: DictConfig, real: str) -> str | None:
    """Why ``student.real_share`` cannot apply to student config ``cfg`` (None: it can)."""
    names = list(cfg.method.params.get("streams") or [])
    if cfg.method.name != "supervised" or real not in names or len(names) < 2:
        return (
            "pipeline.student.real_share needs a `supervised` student whose method.params."
            f"streams name the pseudo-labeled stream '{real}' and at least one other; "
            f"{cfg.method.name} has streams {names or 'unset'}"
        )
    return None


def _stage_config(pipeline: Any, run: Any, stage: str, key: str, extra: list[str]) -> DictConfig:
    try:
        return pipeline._run_config(run, stage, extra)
    except ConfigError as error:
        raise ConfigError(f"{key} ({run.config}): {error}") from None


def check_stages(pipeline: Any) -> DictConfig:
    """Load every stage's config and check the links between stages; return the teacher's.

    ``pipeline``: a `segshift.pipeline.loop.Pipeline`. ConfigErrors name the pipeline key.
    """
    spec = pipeline.spec
    for name, run in spec.baselines.items():
        _stage_config(pipeline, run, f"baseline_{name}", f"pipeline.baselines.{name}", [])
    teacher = _stage_config(pipeline, spec.teacher, "teacher", "pipeline.teacher", [])
    stream = spec.pseudo_label.stream
    if stream not in teacher.data.streams:
        raise ConfigError(
            f"pipeline.pseudo_label.stream: '{stream}' is not a stream of "
            f"{spec.teacher.config} (its streams: {', '.join(teacher.data.streams)})"
        )
    if spec.rounds > 0:
        init = [f"model.init_from={pipeline.dir / 'teacher'}"] * (spec.student.init == "teacher")
        student = _stage_config(pipeline, spec.student, "student_1", "pipeline.student", init)
        if spec.student.stream not in student.data.streams:
            raise ConfigError(
                f"pipeline.student.stream: '{spec.student.stream}' is not a stream of "
                f"{spec.student.config} (its streams: {', '.join(student.data.streams) or 'none'})"
            )
        if list(spec.student.real_share):
            problem = share_problem(student, spec.student.stream)
            if problem:
                raise ConfigError(problem)
    return teacher


LABELS_SHAPE = (
    "a dataset directory, a dataset mapping {name, root, ...}, or a config file (YAML or "
    "packaged name) whose data.streams.<the pseudo-labeled stream> or data.val has the labels"
)


def label_node(labels: Any, stream: str | None, where: str) -> DictConfig | None:
    """The labeled dataset node of ``labels`` (`segshift pseudo-label --labels` and
    ``pipeline.pseudo_label.labels`` take the same shapes, :data:`LABELS_SHAPE`): a directory
    (a folder dataset), a mapping, or a config whose stream ``stream`` (else ``data.val``)
    holds the labels. ``where`` names the option in errors."""
    from omegaconf import OmegaConf

    from segshift.config import DatasetConfig, merge_into_schema, resolve_config_path
    from segshift.pipeline.pseudo_label import dataset_node

    if labels is None:
        return None
    if isinstance(labels, (dict, DictConfig)):
        node = merge_into_schema(DatasetConfig(), labels, origin=where)
    elif isinstance(labels, (str, Path)) and Path(labels).expanduser().is_dir():
        node = dataset_node(str(labels))
    elif isinstance(labels, (str, Path)):
        try:
            resolve_config_path(labels)
        except ConfigError:
            raise ConfigError(f"{where}: {labels} is none of {LABELS_SHAPE}") from None
        cfg = load_config(labels)
        if stream is not None and stream in cfg.data.streams:
            node = dataset_node(labels, stream)
        elif cfg.data.val is not None:
            node = dataset_node(labels, "val")
        else:
            raise ConfigError(
                f"{where}: {labels} has neither data.streams.{stream} nor data.val (expected "
                f"{LABELS_SHAPE})"
            )
    else:
        raise ConfigError(f"{where}: expected {LABELS_SHAPE}; got {labels!r}")
    node = OmegaConf.merge(node, {"labeled": True})
    return merge_into_schema(DatasetConfig(), node, origin=where)
