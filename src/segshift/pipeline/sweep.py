"""Parameter sweeps: a grid of ordinary runs, one table (CSV + Markdown) and one plot.

The data-dependency study of the synthetic-teacher thesis (mIoU against the number of labeled
real images, supervised-only against the pipeline, several seeds) is one command::

    segshift sweep my_config.yaml --set data.streams.labeled.n_labeled=23,46,92,367 \
        --set method.name=supervised,selftrain --set seed=0,1,2

Each ``--set KEY=V1,V2,...`` is an axis (values read as YAML scalars: ints, floats, strings,
``null``); the grid is their product, the last axis varying fastest. Every point is an ordinary
run directory ``OUT/<key=value,...>`` (``OUT`` defaults to ``<output_dir>/sweep_<name>``) with the
config ``CONFIG + overrides + point values + name + output_dir``. A point is done once its
``sweep_result.json`` exists: a rerun reads it back instead of training (and refuses it when the
point's config has changed since), and an interrupted point resumes from its checkpoint.

``seed`` is the axis averaged over. After every finished point, ``OUT/sweep.csv`` (one row per
run: the axes' values, seed, mIoU, per-class IoU; fractions), ``OUT/sweep.md`` (mean, sample
standard deviation and count over seeds; percent) and ``OUT/sweep.png`` (mIoU against the first
numeric axis, one line per combination of the other axes, error bars = std over seeds; a bar
chart when no axis is numeric) are rewritten atomically, so an interrupted sweep keeps its table.

A point is a training config (``Trainer(cfg).fit()``) or a pipeline config (a YAML file with a
top-level ``pipeline:`` key, run by ``segshift.pipeline.loop.run_pipeline``); see
:func:`run_point`. ``--launcher submitit`` runs every point as a cluster job instead
(``pipeline/launch_sweep.py``).
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

from segshift.config import (
    check_required,
    config_diff,
    is_pipeline_config,
    load_config,
)
from segshift.engine.trainer import Trainer
from segshift.errors import ConfigError
from segshift.fileio import atomic_write_bytes
from segshift.pipeline.selection import check_select_by, sweep_selection

SEED = "seed"
# A pipeline point's mIoU of every training stage ({stage: fraction}; the baselines, the teacher,
# each student): the table and the plot get one column / line per stage.
STAGES = "stage_miou"
RESULT_FILE = "sweep_result.json"
# Keys that cannot change a point's result: a finished point is reused despite them. output_dir
# is here because the same OUT may be spelled differently (relative or absolute) on a rerun.
RESULT_NEUTRAL_KEYS = (
    "output_dir",
    "train.progress",
    "train.log_every",
    "train.resume",
    "data.num_workers",
    "train.threads",
    "train.keep_checkpoints_every",
    "eval.unlabeled_scores",
    "eval.unlabeled_stream",
    "eval.unlabeled_images",
)


@dataclass(frozen=True)
class Axis:
    """One ``--set KEY=V1,V2`` option: the key, the values as typed and as parsed YAML scalars."""

    key: str
    texts: tuple[str, ...]
    values: tuple[Any, ...]

    @property
    def numeric(self) -> bool:
        return all(isinstance(v, int | float) and not isinstance(v, bool) for v in self.values)


@dataclass
class SweepPoint:
    """One grid point: its run directory, axis values, overrides and resolved config."""

    name: str
    run_dir: Path
    texts: dict[str, str]  # axis key -> value as typed
    overrides: list[str]  # the sweep's plain overrides, then this point's axis values
    seed: Any
    config: dict[str, Any]  # resolved (training) or file + overrides (pipeline), for reuse checks


def _scalar(key: str, text: str) -> Any:
    """``text`` as a YAML scalar, and ``1e-3`` as a float (YAML 1.1 would need ``1.0e-3``)."""
    if not text:
        raise ConfigError(f"--set {key}: empty value in the list")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {key}: '{text}' is not a YAML scalar: {err}") from None
    if isinstance(value, list | dict):
        raise ConfigError(f"--set {key}: '{text}' is not a scalar (lists cannot be swept)")
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", text):
        return float(text)
    return value


def parse_axes(specs: list[str]) -> list[Axis]:
    """``["seed=0,1", "method.name=a,b"]`` -> axes, checking for empty and repeated keys/values."""
    axes: list[Axis] = []
    for spec in specs:
        key, sep, rest = spec.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set '{spec}' must look like KEY=V1,V2,... (e.g. seed=0,1,2)")
        if key in ("name", "output_dir"):
            raise ConfigError(f"--set {key}: the sweep sets '{key}' for every point itself")
        if any(axis.key == key for axis in axes):
            raise ConfigError(f"--set {key} is given twice: list all its values in one --set")
        texts = tuple(t.strip() for t in rest.split(","))
        values = tuple(_scalar(key, t) for t in texts)
        if len(set(texts)) != len(texts):
            raise ConfigError(f"--set {key}: a value is repeated in '{rest}'")
        axes.append(Axis(key, texts, values))
    if not axes:
        raise ConfigError("a sweep needs at least one --set KEY=V1,V2,... axis")
    return axes


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Each key's shortest dotted suffix that no other key ends with (``n_labeled``, ``name``)."""
    short = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if not any(o != key and (o == suffix or o.endswith("." + suffix)) for o in keys):
                break
        short[key] = suffix
    return short


def point_name(texts: dict[str, str]) -> str:
    """A filesystem-safe run name from the axis values, e.g. ``n_labeled=23,name=a,seed=0``."""
    short = _short_keys(list(texts))
    pairs = ",".join(f"{short[k]}={v}" for k, v in texts.items())
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", pairs)


def _resolve(config: str | Path, overrides: list[str], pipeline: bool) -> DictConfig:
    """The point's config, checked against its schema (the training or the pipeline one)."""
    if pipeline:
        from segshift.pipeline.loop import load_pipeline_config

        return load_pipeline_config(config, overrides)
    cfg = load_config(config, overrides)
    check_required(cfg)
    if cfg.data.val is None:
        raise ConfigError("a sweep measures every point on data.val: set data.val")
    return cfg


def default_out(config: str | Path, overrides: list[str] | None = None) -> Path:
    """``<output_dir>/sweep_<name>`` of the config with the plain overrides applied."""
    cfg = _resolve(config, overrides or [], is_pipeline_config(config))
    name = OmegaConf.select(cfg, "name", default=None) or Path(str(config)).stem
    return Path(OmegaConf.select(cfg, "output_dir", default="runs")) / f"sweep_{name}"


def build_points(
    config: str | Path, axes: list[Axis], overrides: list[str], out: str | Path
) -> list[SweepPoint]:
    """Every grid point with its config resolved, so a bad key fails before anything runs."""
    pipeline = is_pipeline_config(config)
    out = Path(out)
    points: list[SweepPoint] = []
    for combo in itertools.product(*(range(len(a.values)) for a in axes)):
        texts = {a.key: a.texts[i] for a, i in zip(axes, combo)}
        name = point_name(texts)
        run_dir = out / name
        point_overrides = [*overrides, *(f"{k}={v}" for k, v in texts.items())]
        placement = [f"name={name}", f"output_dir={out}"]
        cfg = _resolve(config, [*point_overrides, *placement], pipeline)
        seed = OmegaConf.select(cfg, SEED, default=0)
        plain = OmegaConf.to_container(cfg, resolve=True)
        points.append(SweepPoint(name, run_dir, texts, point_overrides, seed, plain))
    names = [p.name for p in points]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ConfigError(f"sweep values map to the same run directory name: {clashes}")
    return points


def run_point(config: str | Path, overrides: list[str], run_dir: str | Path) -> dict | None:
    """Run one point in ``run_dir``; return its final metrics, or None if it stopped early.

    A pipeline config goes to ``run_pipeline(config, overrides)`` (imported here: the loop is
    optional for training sweeps), a training config to ``Trainer(cfg).fit()``, which resumes an
    unfinished run. Both get ``name`` and ``output_dir`` placing the run in ``run_dir``. Returns a
    dict with ``miou`` (fraction), ``iou`` (C fractions, NaN for absent classes) and, where known,
    ``class_names``; None when training stopped before ``train.iters`` (``train.stop_at``).
    """
    run_dir = Path(run_dir)
    overrides = [*overrides, f"name={run_dir.name}", f"output_dir={run_dir.parent}"]
    if is_pipeline_config(config):
        from segshift.pipeline.loop import run_pipeline

        return dict(run_pipeline(config, overrides))
    cfg = load_config(config, overrides)
    trainer = Trainer(cfg)
    metrics = trainer.fit()
    if trainer.step < cfg.train.iters:
        return None
    if "miou" not in metrics:  # train.eval_every=0, or a finished run resumed: measure now
        metrics = trainer.evaluate()
    return {**metrics, "class_names": list(trainer.label_space.class_names)}


def _convert(metrics: dict, number: Any) -> dict:
    """``number`` applied to every metric (to each IoU of the list), class names left alone."""

    def convert(key: str, value: Any) -> Any:
        if key in ("class_names", "selected_stage"):
            return value
        if key == STAGES:
            return {stage: number(x) for stage, x in value.items()}
        return [number(x) for x in value] if key == "iou" else number(value)

    return {key: convert(key, value) for key, value in metrics.items()}


def _to_json(value: Any) -> Any:
    return None if math.isnan(value) else value  # strict JSON has no NaN


def _from_json(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _result_record(metrics: dict) -> dict[str, Any]:
    """What the sweep keeps of a point's metrics: mIoU (and subsets), pixel accuracy, IoUs."""
    names = metrics.get("class_names") or [f"class_{i}" for i in range(len(metrics["iou"]))]
    keep = {k: v for k, v in metrics.items() if k.startswith(("miou", "score.", "selected_stage"))}
    keep |= {k: v for k, v in metrics.items() if k == "pixel_accuracy"}
    if metrics.get(STAGES):
        keep[STAGES] = dict(metrics[STAGES])
    return {
        **_convert(keep, float),
        "iou": [float(v) for v in metrics["iou"]],
        "class_names": list(names),
    }


def read_result(point: SweepPoint) -> dict | None:
    """A finished point's metrics, None if it is not finished; refused if its config changed."""
    path = point.run_dir / RESULT_FILE
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
        metrics = saved["metrics"]
    except (json.JSONDecodeError, KeyError) as err:
        raise ConfigError(f"{path}: unreadable sweep result ({err}); delete it to rerun") from None
    changed = [
        key
        for key in config_diff(saved["config"], point.config)
        if not any(key == k or key.endswith("." + k) for k in RESULT_NEUTRAL_KEYS)
    ]
    if changed:
        raise ConfigError(
            f"{point.run_dir} was finished with another config (differs in: "
            f"{', '.join(changed)}): use another --out, or delete that directory to rerun it"
        )
    return _convert(metrics, _from_json)


def write_result(point: SweepPoint, metrics: dict) -> dict:
    """Mark ``point`` done: its metrics and config in ``<run_dir>/sweep_result.json``."""
    record = _result_record(metrics)
    payload = {"values": point.texts, "config": point.config, "metrics": _convert(record, _to_json)}
    text = json.dumps(payload, indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(point.run_dir / RESULT_FILE, text.encode())
    return record


# ----------------------------------------------------------------------------------- outputs
def _series(result: dict) -> dict[str, float]:
    """The numbers a point contributes: its stages' mIoU (pipelines) or its mIoU."""
    return dict(result.get(STAGES) or {"mIoU": result["miou"]})


def _groups(axes: list[Axis], points: list[SweepPoint], results: dict[str, dict]):
    """(values of the non-seed axes, {series: mIoUs of its finished seeds}) in grid order; the
    series are "mIoU", or a pipeline's stages."""
    groups: dict[tuple, dict[str, list[float]]] = {}
    for point in points:
        key = tuple(point.texts[a.key] for a in axes if a.key != SEED)
        bucket = groups.setdefault(key, {})
        if point.name in results:
            for name, value in _series(results[point.name]).items():
                bucket.setdefault(name, []).append(value)
    return [(key, series) for key, series in groups.items() if series]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1 in the denominator; NaN for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, float("nan")
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.2f}"


def sweep_csv(axes: list[Axis], points: list[SweepPoint], results: dict[str, dict]) -> str:
    """One row per finished run: run, the non-seed axes, seed, mIoU (+ subsets), per-class IoU."""
    done = [p for p in points if p.name in results]
    extra = sorted({k for p in done for k in results[p.name] if k.startswith("miou_")})
    stages: list[str] = []
    for point in done:
        stages += [s for s in results[point.name].get(STAGES, {}) if s not in stages]
    classes: list[str] = []
    for point in done:
        classes += [c for c in results[point.name]["class_names"] if c not in classes]
    keys = [a.key for a in axes if a.key != SEED]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["run", *keys, SEED, "miou", *extra, "pixel_accuracy"]
    writer.writerow(header + [f"miou_{s}" for s in stages] + [f"iou_{c}" for c in classes])
    for point in done:
        result = results[point.name]
        iou = dict(zip(result["class_names"], result["iou"]))
        scalars = [result.get(k) for k in ("miou", *extra, "pixel_accuracy")]
        writer.writerow(
            [point.name, *(point.texts[k] for k in keys), point.seed]
            + ["" if v is None else repr(v) for v in scalars]
            + [repr(v) if (v := result.get(STAGES, {}).get(s)) is not None else "" for s in stages]
            + [repr(iou[c]) if c in iou else "" for c in classes]
        )
    return buffer.getvalue()


def sweep_markdown(
    axes: list[Axis], points: list[SweepPoint], results: dict[str, dict], title: str
) -> str:
    """mIoU (percent) per combination of the non-seed axes: mean, std over seeds and count."""
    keys = [a.key for a in axes if a.key != SEED]
    groups = _groups(axes, points, results)
    names: list[str] = []
    for _, series in groups:
        names += [n for n in series if n not in names]
    lines = [
        f"# Sweep: {title}",
        "",
        f"{sum(p.name in results for p in points)} of {len(points)} runs finished; mIoU in "
        "percent, mean and sample standard deviation over seeds (n runs).",
        "",
    ]
    if names == ["mIoU"]:
        lines += ["| " + " | ".join([*keys, "mIoU", "std", "n"]) + " |"]
        lines += ["|" + "|".join([":---"] * len(keys) + ["---:"] * 3) + "|"]
        for group, series in groups:
            mean, std = mean_std(series["mIoU"])
            cells = [*group, _percent(mean), _percent(std), str(len(series["mIoU"]))]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"
    lines[2] = lines[2].replace("mIoU in", "mIoU of each pipeline stage in")
    lines += ["| " + " | ".join([*keys, *names, "n"]) + " |"]
    lines += ["|" + "|".join([":---"] * len(keys) + ["---:"] * (len(names) + 1)) + "|"]
    for group, series in groups:
        cells = [*group]
        for name in names:
            mean, std = mean_std(series[name]) if name in series else (math.nan, math.nan)
            cells.append(_percent(mean) + ("" if math.isnan(std) else f" +- {_percent(std)}"))
        cells.append(str(max(len(v) for v in series.values())))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sweep_plot(
    axes: list[Axis], points: list[SweepPoint], results: dict[str, dict], title: str
) -> bytes:
    """PNG: mIoU against the first numeric non-seed axis (one line per other combination, error
    bars = std over seeds), or bars per combination when no axis is numeric."""
    others = [a for a in axes if a.key != SEED]
    x_axis = next((a for a in others if a.numeric), None)
    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = figure.add_subplot()
    groups = _groups(axes, points, results)
    if x_axis is None:
        labels = [
            f"{', '.join(g) or 'all'}{'' if n == 'mIoU' else f' {n}'}" for g, s in groups for n in s
        ]
        stats = [mean_std(m) for _, series in groups for m in series.values()]
        ax.bar(
            range(len(stats)),
            [100 * m for m, _ in stats],
            yerr=[0 if math.isnan(s) else 100 * s for _, s in stats],
            capsize=4,
        )
        ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
        ax.set_xlabel(" | ".join(a.key for a in others) or "runs")
    else:
        position = others.index(x_axis)
        lines: dict[tuple, list[tuple[float, float, float]]] = {}
        for group, series in groups:
            x = x_axis.values[x_axis.texts.index(group[position])]
            rest = group[:position] + group[position + 1 :]
            for name, mious in series.items():
                mean, std = mean_std(mious)
                point = (x, 100 * mean, 0 if math.isnan(std) else 100 * std)
                lines.setdefault((*rest, name), []).append(point)
        rest_keys = [a.key for a in others if a is not x_axis]
        for (*rest, name), curve in lines.items():
            curve.sort()
            label = ", ".join(f"{k}={v}" for k, v in zip(rest_keys, rest))
            label = ", ".join(t for t in (label, "" if name == "mIoU" else name) if t) or None
            xs, ys, errs = zip(*curve)
            ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=4, label=label)
        xs = sorted(x_axis.values)
        if xs[0] > 0 and xs[-1] / xs[0] >= 8:  # label counts like 23..367 spread evenly
            ax.set_xscale("log")
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.minorticks_off()
        ax.set_xlabel(x_axis.key)
        if rest_keys or len(lines) > 1:
            ax.legend()
    ax.set_ylabel("mIoU (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


def write_outputs(
    out: Path, axes: list[Axis], points: list[SweepPoint], results: dict[str, dict], title: str
) -> str:
    """Rewrite ``sweep.csv``, ``sweep.md`` and ``sweep.png`` atomically; return the Markdown."""
    markdown = sweep_markdown(axes, points, results, title)
    atomic_write_bytes(out / "sweep.csv", sweep_csv(axes, points, results).encode())
    atomic_write_bytes(out / "sweep.md", markdown.encode())
    if any(p.name in results for p in points):
        atomic_write_bytes(out / "sweep.png", sweep_plot(axes, points, results, title))
    return markdown


def run_sweep(
    config: str | Path,
    sets: list[str],
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    dry_run: bool = False,
    select_by: str | None = None,
    launcher: Any | None = None,
) -> dict[str, dict]:
    """Run (or, with ``dry_run``, list) the grid; return the finished points' metrics by name.

    ``select_by`` (last | miou | score.NAME, `segshift.pipeline.selection`): also choose each
    run's checkpoint (a pipeline's round) and the grid point, reported in ``sweep.md``.
    ``launcher``: run the points elsewhere, e.g. as cluster jobs
    (``launch_sweep.SubmititSweep``); None runs them here, one after the other.

    Example:
        >>> run_sweep("my.yaml", ["data.streams.labeled.n_labeled=23,46", "seed=0,1"])
    """
    overrides = list(overrides or [])
    pipeline = is_pipeline_config(config)
    if select_by is not None and pipeline:  # a pipeline chooses its round itself
        overrides.append(f"pipeline.select_by={check_select_by(select_by)}")
    elif select_by is not None:
        check_select_by(select_by)
    axes = parse_axes(sets)
    out = Path(out) if out is not None else default_out(config, overrides)
    points = build_points(config, axes, overrides, out)
    title = Path(str(config)).stem
    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun, one writer
    results: dict[str, dict] = {}
    here = points
    if launcher is not None and not dry_run:
        on_result = functools.partial(write_outputs, out, axes, points, title=title)
        results, here = launcher.run_points(config, points, on_result), []
    for index, point in enumerate(here, 1):
        result = read_result(point)
        state = "done" if result is not None else "to run"
        print(f"[{index}/{len(points)}] {point.name} ({state})")
        if dry_run:
            print(f"    {' '.join(point.overrides)}")
            continue
        if result is None:
            metrics = run_point(config, point.overrides, point.run_dir)
            if metrics is None:
                print(f"{point.name} stopped before train.iters; it resumes on the next run")
                continue
            result = write_result(point, metrics) if main_rank else _result_record(metrics)
        results[point.name] = result
        if main_rank:
            write_outputs(out, axes, points, results, title)
    if results and main_rank:
        markdown = write_outputs(out, axes, points, results, title)
        if select_by is not None:
            markdown += sweep_selection(out, points, results, select_by, pipeline)
            atomic_write_bytes(out / "sweep.md", markdown.encode())
        print(markdown, end="")
        print(f"wrote {out / 'sweep.csv'}, {out / 'sweep.md'} and {out / 'sweep.png'}")
    return results
