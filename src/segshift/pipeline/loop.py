"""The synthetic-teacher loop: teacher -> [pseudo-label -> student] x R, in one run directory.

1. train the teacher (any method: source-only, an adaptation method) on labeled synthetic data;
2. pseudo-label the unlabeled real images with it (``pipeline/pseudo_label.py``: threshold,
   class-balanced CBST with a per-round portion, or Seg-Uncertainty's rule);
3. train a student on the synthetic data + the pseudo-labeled real images (``supervised`` with
   ``streams: [source, target]``, or any method whose streams are labeled), real images taking
   ``real_share[r]`` of each batch, starting from its teacher's weights (``init: teacher``);
4. the student is the next round's teacher; repeat 2-3 ``rounds`` times.

Optional ``baselines`` (e.g. source-only and the target oracle) are trained first and reported
beside. Each stage is an ordinary run directory (or a pseudo-label dataset) under
``output_dir/name``; its resolved config, with the identity of the stages it reads, is hashed,
and a stage whose hash is recorded as done is skipped. A crash resumes at the first unfinished
stage, and inside it from its checkpoint (or its written pseudo-label files). A stage whose
config changed is moved to ``stale/`` (nothing is deleted), rerun, and so are the stages after
it; the loop says which keys changed. ``summary.md``/``.csv``/``.png`` are rewritten after every
stage. ``select_by`` (last | miou | score.NAME: `segshift.pipeline.selection`) picks the round
whose model the pipeline returns.

Example config (``configs/pipeline/synthcity.yaml``)::

    name: synthcity_loop
    pipeline:
      overrides: [data.streams.source.root=..., data.streams.target.root=..., data.val.root=...]
      baselines: {source_only: {config: uda/source_only}}
      teacher: {config: uda/fda}
      pseudo_label: {stream: target, rule: cbst, portions: [0.5, 0.7]}
      student: {config: uda/student, real_share: [0.5, 0.5]}
      rounds: 2
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from segshift.config import (
    DatasetConfig,
    at_least,
    checked,
    config_diff,
    load_config,
    merge_into_schema,
    number_at_least,
    number_between,
    one_of,
    read_yaml,
    resolve_config_path,
)
from segshift.errors import ConfigError, SegshiftError
from segshift.fileio import atomic_write_bytes
from segshift.pipeline.portable import portable, relocated
from segshift.pipeline.report import val_classes
from segshift.pipeline.selection import check_select_by
from segshift.pipeline.stage_checks import (
    REAL_SHARES,
    SCALES,
    SHARE,
    SHARES,
    check_stages,
    label_node,
    share_problem,
)

# DatasetConfig fields a student's pseudo-labeled stream takes from the teacher's stream, so the
# real images have the geometry the teacher labeled them at; augmentation (noise, as in Noisy
# Student: `policy: randaugment`, photometric; with `model.dropout`) and batch sizes are the
# student config's.
GEOMETRY_KEYS = ("resize", "crop_size", "interpolation")


# train.* keys that belong to an invocation (left out of a stage's identity): changing them
# resumes the stage instead of rerunning it.
INVOCATION_KEYS = ("stop_at", "progress", "resume", "threads")


class StageStopped(SegshiftError):
    """A stage stopped before its end on purpose (``train.stop_at``); rerunning goes on."""


@dataclass
class RunStage:
    """A training run: a config (packaged name or path) and dotted overrides."""

    config: str = "???"
    overrides: list[str] = field(default_factory=list)


@dataclass
class PseudoLabelStage:
    """How the teacher's predictions become labels (see ``pipeline/pseudo_label.py``)."""

    stream: str = "target"  # the teacher config's stream whose images are pseudo-labeled
    rule: str = checked("threshold", check=one_of("threshold", "cbst", "uncertainty", "none"))
    threshold: float = checked(0.5, check=number_between(0, 1))  # rule threshold: top prob.
    # uncertainty: keep KL(aux || main) <= max_kl (nats), or else
    max_kl: float | None = checked(None, check=number_at_least(0, optional=True))
    kl_portion: float = checked(0.8, check=SHARE)  # uncertainty: share kept, lowest KL first
    portions: list[float] = checked(check=SHARES, factory=lambda: [0.2])  # cbst p per round
    flip: bool = False
    scales: list[float] = checked(check=SCALES, factory=lambda: [1.0])
    batch_size: int = checked(8, check=at_least(1))
    # the same images with ground truth, for the quality report: a dataset directory, a dataset
    # mapping, or a config (its stream of this name, else data.val), as pseudo-label --labels
    labels: Any = None
    examples: int = checked(4, check=at_least(0))  # colour-coded examples drawn per round


@dataclass
class StudentStage(RunStage):
    """The student: its config, the stream that reads the pseudo-labels, the per-round mix."""

    stream: str = "target"
    # teacher: start from the previous round's model; scratch: from the config's init
    init: str = checked("teacher", check=one_of("teacher", "scratch"))
    # per round; last repeats; [] = config's
    real_share: list[float] = checked(check=REAL_SHARES, factory=list)


@dataclass
class PipelineSpec:
    teacher: RunStage = field(default_factory=RunStage)
    pseudo_label: PseudoLabelStage = field(default_factory=PseudoLabelStage)
    student: StudentStage = field(default_factory=StudentStage)
    rounds: int = checked(2, check=at_least(0))
    baselines: dict[str, RunStage] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)  # applied to every training stage
    # the model returned: last (student) | miou (data.val) | score.NAME (pipeline/selection.py)
    select_by: str = "last"


@dataclass
class PipelineConfig:
    name: str = "pipeline"
    output_dir: str = "runs/pipeline"
    seed: int = checked(0, check=at_least(0))
    pipeline: PipelineSpec = field(default_factory=PipelineSpec)


def load_pipeline_config(path: str | Path, overrides: list[str] | None = None) -> DictConfig:
    """The pipeline config; overrides of keys outside it (``data.``, ``train.``, ``model.``...)
    are appended to ``pipeline.overrides``, i.e. applied to every training stage."""
    file = resolve_config_path(path)
    data = read_yaml(file)
    own = ("name", "output_dir", "seed", "pipeline")
    mine = [o for o in overrides or [] if o.split("=", 1)[0].split(".")[0] in own]
    stages = [o for o in overrides or [] if o not in mine]
    layers = [data, OmegaConf.from_dotlist(mine)] if mine else [data]
    keys = tuple(o.split("=", 1)[0].strip() for o in mine)
    cfg = merge_into_schema(PipelineConfig(), *layers, origin=str(file), overridden=keys)
    cfg.pipeline.overrides = [*cfg.pipeline.overrides, *stages]
    check_select_by(cfg.pipeline.select_by, f"{file}: pipeline.select_by")
    return cfg


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def per_round(values: list[float], r: int) -> float | None:
    """The value of round ``r`` (1-based) in a schedule whose last value repeats."""
    return None if not values else float(values[min(r, len(values)) - 1])


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


class Pipeline:
    """Runs the stages of a pipeline config in ``output_dir/name`` (see the module doc)."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.spec = cfg.pipeline
        self.dir = Path(cfg.output_dir).expanduser().resolve() / cfg.name
        self.results: dict[str, dict[str, Any]] = {}  # stage -> result (ordered as run)

    # ---- stage bookkeeping ----
    def _marker(self, stage: str) -> Path:
        return self.dir / stage / "stage.json"

    def _begin(
        self, stage: str, digest: str, resolved: Any, legacy: str = ""
    ) -> dict[str, Any] | None:
        """The cached result if ``stage`` is done with this digest; else prepare to (re)run it.

        Digests leave the pipeline's own directory out (`segshift.pipeline.portable`), so a
        copied or renamed pipeline reuses its stages; ``legacy``: the digest of a stage
        recorded before that (with absolute paths), accepted too."""
        marker = self._marker(stage)
        if marker.is_file():
            record = json.loads(marker.read_text())
            if record["digest"] in (digest, legacy) and record.get("done"):
                print(f"[pipeline] {stage}: done, cached ({marker.parent})")
                if record["digest"] != digest:  # recorded portably from now on
                    self._record(stage, digest, resolved, done=True, result=record["result"])
                return relocated(record["result"], self.dir)
            if record["digest"] not in (digest, legacy):
                changed = config_diff(record.get("config"), resolved)[:8] or ["its inputs"]
                stale = self.dir / "stale" / f"{stage}-{time.strftime('%Y%m%d-%H%M%S')}"
                stale.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(marker.parent), stale)
                print(
                    f"[pipeline] {stage}: config changed ({'; '.join(changed)}): rerunning it "
                    f"and the stages after it; the old one is in {stale}"
                )
            else:
                print(f"[pipeline] {stage}: unfinished, resuming")
        elif (self.dir / stage).exists():
            print(f"[pipeline] {stage}: unfinished, resuming")
        marker.parent.mkdir(parents=True, exist_ok=True)
        self._record(stage, digest, resolved, done=False, result=None)
        return None

    def _record(self, stage: str, digest: str, resolved: Any, done: bool, result: Any) -> None:
        result = portable(result, self.dir)
        record = {"digest": digest, "done": done, "config": resolved, "result": result}
        atomic_write_bytes(self._marker(stage), json.dumps(record, indent=1, default=str).encode())

    # ---- stages ----
    def _train(self, stage: str, cfg: DictConfig, upstream: list[str]) -> dict[str, Any]:
        from segshift.engine.trainer import Trainer

        resolved = OmegaConf.to_container(cfg, resolve=True)
        for key in INVOCATION_KEYS:  # how this invocation runs, not what the stage is
            resolved["train"].pop(key, None)
        ups = [self.results[u]["digest"] for u in upstream]
        legacy = _digest([resolved, [self.results[u].get("legacy", "") for u in upstream]])
        resolved = portable(resolved, self.dir)
        digest = _digest([resolved, ups])
        cached = self._begin(stage, digest, resolved, legacy)
        if cached is None:
            print(f"\n[pipeline] === {stage}: training {cfg.method.name} ===")
            trainer = Trainer(cfg)
            metrics = trainer.fit()
            if trainer.step < cfg.train.iters:  # train.stop_at: the stage is not finished
                raise StageStopped(
                    f"{stage} stopped at step {trainer.step} of {cfg.train.iters}; run the "
                    "pipeline again to go on from there"
                )
            cached = {
                "kind": "train",
                "method": cfg.method.name,
                "run_dir": str(self.dir / stage),
                "miou": metrics.get("miou"),
                "iou": [float(x) for x in metrics.get("iou", [])],
                "pixel_accuracy": metrics.get("pixel_accuracy"),
                "val_classes": val_classes(metrics),  # summary.md: one class set
            }
            self._record(stage, digest, resolved, done=True, result=cached)
        self.results[stage] = {**cached, "digest": digest, "legacy": legacy}
        return cached

    def _run_config(self, run: Any, stage: str, extra: list[str] = ()) -> DictConfig:
        overrides = [
            *self.spec.overrides,
            *run.overrides,
            *extra,
            f"seed={self.cfg.seed}",
            f"output_dir={self.dir}",
            f"name={stage}",
            "train.resume=true",
        ]
        return load_config(run.config, overrides)

    def _pseudo_label(self, r: int, teacher: str, data: DictConfig) -> dict[str, Any]:
        from segshift.pipeline.pseudo_label import Selection, generate_pseudo_labels

        stage, spec = f"pseudo_{r}", self.spec.pseudo_label
        selection = Selection(
            rule=spec.rule, threshold=spec.threshold, max_kl=spec.max_kl, kl_portion=spec.kl_portion
        )
        if spec.rule == "cbst":
            selection.portion = per_round(list(spec.portions), r)
        resolved = {
            "data": OmegaConf.to_container(data, resolve=True),
            "selection": vars(selection),
            "flip": spec.flip,
            "scales": list(spec.scales),
            "labels": _plain(spec.labels),
        }
        legacy = _digest([resolved, self.results[teacher].get("legacy", "")])
        resolved = portable(resolved, self.dir)
        digest = _digest([resolved, self.results[teacher]["digest"]])
        cached = self._begin(stage, digest, resolved, legacy)
        if cached is None:
            print(f"\n[pipeline] === {stage}: {teacher} labels {spec.stream} ({spec.rule}) ===")
            out = self.dir / stage
            labels = label_node(spec.labels, spec.stream, "pipeline.pseudo_label.labels")
            report = generate_pseudo_labels(
                self.dir / teacher,
                data,
                out,
                selection,
                flip=spec.flip,
                scales=tuple(spec.scales),
                batch_size=spec.batch_size,
                label_data=labels,
            )
            from segshift.pipeline.report import draw_pseudo_examples

            draw_pseudo_examples(out, labels, spec.examples)
            cached = {"kind": "pseudo", "dir": str(out), "teacher": teacher, "report": report}
            self._record(stage, digest, resolved, done=True, result=cached)
        self.results[stage] = {**cached, "digest": digest, "legacy": legacy}
        return cached

    def _student_config(self, r: int, previous: str, source: DictConfig) -> DictConfig:
        from segshift.pipeline.pseudo_label import pseudo_dataset

        spec = self.spec.student
        extra = []
        if spec.init == "teacher":
            extra.append(f"model.init_from={self.dir / previous}")
        cfg = self._run_config(spec, f"student_{r}", extra)
        if spec.stream not in cfg.data.streams:
            raise ConfigError(
                f"pipeline.student.stream: '{spec.stream}' is not a stream of {spec.config} "
                f"(its streams: {', '.join(cfg.data.streams) or 'none'})"
            )
        stream = cfg.data.streams[spec.stream]
        for key in GEOMETRY_KEYS:  # the real images as the teacher saw them
            stream[key] = source[key]
        for key, value in pseudo_dataset(self.dir / f"pseudo_{r}").items():
            stream[key] = value
        share = per_round(list(spec.real_share), r)
        if share is not None:
            self._apply_share(cfg, spec.stream, share)
        return cfg

    def _apply_share(self, cfg: DictConfig, real: str, share: float) -> None:
        """Give the pseudo-labeled stream ``share`` of the student's total batch; the other
        streams split the rest in proportion to their configured batch sizes."""
        problem = share_problem(cfg, real)  # also checked at start-up (check_stages)
        if problem:
            raise ConfigError(problem)
        names = list(cfg.method.params.streams)
        sizes = {name: int(cfg.data.streams[name].batch_size) for name in names}
        total, others = sum(sizes.values()), [n for n in names if n != real]
        rest = total - round(total * share)
        quota = {n: rest * sizes[n] / sum(sizes[n] for n in others) for n in others}
        counts = {real: total - rest, **{n: math.floor(q) for n, q in quota.items()}}
        by_remainder = sorted(others, key=lambda n: counts[n] - quota[n])  # largest remainder
        for name in by_remainder[: rest - sum(counts[n] for n in others)]:
            counts[name] += 1
        used = [name for name in names if counts[name] > 0]
        for name in used:
            cfg.data.streams[name].batch_size = counts[name]
        cfg.method.params.streams = used
        shares = " + ".join(f"{counts[n]} {n}" for n in names)
        print(f"[pipeline] student batch: {shares} images")

    def stage_names(self) -> list[str]:
        """The stages in the order they run: baselines, teacher, pseudo_r and student_r."""
        rounds = [
            s for r in range(1, self.spec.rounds + 1) for s in (f"pseudo_{r}", f"student_{r}")
        ]
        return [*(f"baseline_{name}" for name in self.spec.baselines), "teacher", *rounds]

    def stage_done(self, stage: str) -> bool:
        """Whether ``stage`` is recorded as done (with the config it last ran with)."""
        marker = self._marker(stage)
        return marker.is_file() and bool(json.loads(marker.read_text()).get("done"))

    def run(self, until: str | None = None) -> dict[str, Any]:
        """Run every stage not done yet; return the summary (also written to disk). ``until``:
        stop after that stage and return its result (one cluster job per stage)."""
        from segshift.pipeline.report import class_names, write_summary

        teacher_cfg = check_stages(self)  # every stage's config, before anything trains
        stream = self.spec.pseudo_label.stream
        if self.spec.rounds > 0:
            label_node(self.spec.pseudo_label.labels, stream, "pipeline.pseudo_label.labels")
        self.dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.cfg, self.dir / "pipeline.yaml")
        for name, run in self.spec.baselines.items():
            self._train(f"baseline_{name}", self._run_config(run, f"baseline_{name}"), [])
            write_summary(self.dir, self.results, self.cfg)
            if until == f"baseline_{name}":
                return self.results[until]
        # resolved here: the stream may interpolate other keys (uda/joint's n_labeled)
        real = OmegaConf.create(
            OmegaConf.to_container(teacher_cfg.data.streams[stream], resolve=True)
        )
        data = merge_into_schema(DatasetConfig(), real, origin="pipeline.pseudo_label.stream")
        self._train("teacher", teacher_cfg, [])
        write_summary(self.dir, self.results, self.cfg)
        previous = "teacher"
        for r in range(1, self.spec.rounds + 1):
            if until == previous:
                return self.results[until]
            self._pseudo_label(r, previous, data)
            write_summary(self.dir, self.results, self.cfg)
            if until == f"pseudo_{r}":
                return self.results[until]
            upstream = [f"pseudo_{r}"] + ([previous] if self.spec.student.init == "teacher" else [])
            self._train(f"student_{r}", self._student_config(r, previous, real), upstream)
            write_summary(self.dir, self.results, self.cfg)
            previous = f"student_{r}"
        chosen, select_by = previous, self.spec.select_by
        if select_by != "last":  # the round chosen by mIoU or a label-free score
            from segshift.pipeline.selection import choose_stage, labeled_node

            models = {s: r for s, r in self.results.items() if s in ("teacher", *self._students())}
            images = teacher_cfg.eval.unlabeled_images
            chosen = choose_stage(models, select_by, data, labeled_node(teacher_cfg), images)
            models[chosen]["selected"] = True
        summary = write_summary(self.dir, self.results, self.cfg, final=True)
        summary["class_names"] = class_names(self.results)
        stages = {
            stage: result["miou"]
            for stage, result in self.results.items()
            if result.get("kind") == "train" and result.get("miou") is not None
        }
        scored = {k: v for k, v in self.results[chosen].items() if k.startswith("score.")}
        return {
            **summary,
            **scored,
            "stage_miou": stages,
            "selected_stage": chosen,
            "miou": self.results[chosen]["miou"],
            "iou": self.results[chosen]["iou"],
        }

    def _students(self) -> list[str]:
        return [f"student_{r}" for r in range(1, self.spec.rounds + 1)]


def run_pipeline(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Load a pipeline config and run it; returns the final model's ``miou``/``iou`` + summary."""
    return Pipeline(load_pipeline_config(path, overrides)).run()
