"""Choosing without target labels: ``select_by`` for pipelines and sweeps.

``select_by`` is one of

- ``last``: the last model (a pipeline's last student; each sweep run's final checkpoint): what
  the pipeline and the sweep did before this option existed, and the default;
- ``miou``: the best ``data.val`` mIoU: uses target labels; the reference a label-free choice is
  measured against;
- ``score.NAME``: the highest label-free score NAME (`segshift.evaluation.scores`, higher =
  better expected target mIoU) on the unlabeled target images.

In a **pipeline** (``pipeline.select_by``) it chooses the round: among the teacher and the
students (final checkpoints), the model the pipeline returns. Each is scored on the images it
pseudo-labels (``pipeline.pseudo_label.stream``, at most ``eval.unlabeled_images`` of them,
spread evenly); source-comparing scores read the teacher config's labeled source stream.
``summary.md`` gets the score beside the mIoU and names the selected stage.

In a **sweep** (``segshift sweep --select-by``) it chooses, in every training run, the
checkpoint (all it holds: ``step_*.pt`` of ``train.keep_checkpoints_every``, ``latest.prev``,
``latest``, ``best``) on the run's unlabeled stream (as ``eval.unlabeled_scores`` does), and
then the grid point: the combination of non-seed values with the highest mean score.
``sweep.md`` reports each run's chosen checkpoint, its score and its true mIoU beside the
last checkpoint's, and the regret of the grid choice: the true mIoU of the point the score picks
minus the best point's. Scores are cached per run in ``label_free_scores.json``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from segshift.config import SCORE_NAMES, Check, unknown_score
from segshift.errors import ConfigError
from segshift.fileio import atomic_write_bytes

CACHE = "label_free_scores.json"


def select_problem(value: Any) -> str | None:
    """Why ``value`` is not a ``select_by`` value (did-you-mean for score names), or None."""
    if value in ("last", "miou"):
        return None
    if isinstance(value, str) and value.startswith("score."):
        return unknown_score([value[len("score.") :]])
    return f"expected last, miou or score.NAME ({', '.join(SCORE_NAMES)}), got {value!r}"


SELECT_BY = Check(lambda v: select_problem(v) is None, "last, miou or score.<score name>")


def check_select_by(value: str, key: str = "--select-by") -> str:
    problem = select_problem(value)
    if problem:
        raise ConfigError(f"{key}: {problem}")
    return value


def score_of(select_by: str) -> str | None:
    """``"score.snd"`` -> ``"snd"``; None for ``last`` / ``miou``."""
    return select_by[len("score.") :] if select_by.startswith("score.") else None


def _digest(node: Any) -> str:
    plain = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cached_score(
    checkpoint: Path,
    name: str,
    data: DictConfig,
    source: DictConfig | None,
    max_images: int,
) -> tuple[float, int | None]:
    """(score ``name``, step) of one checkpoint file on the unlabeled images of ``data``,
    cached in its run directory's ``label_free_scores.json`` by file, step, score and data."""
    from segshift.engine.checkpoint import load_checkpoint
    from segshift.pipeline.scoring import score_states

    cache_path = checkpoint.parent.parent / CACHE
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    step = load_checkpoint(checkpoint)[0].get("step")
    key = f"{checkpoint.name}|{step}|{name}|{_digest([data, source, max_images])}"
    if key not in cache:
        report = score_states(
            [checkpoint], data, source=source, names=[name], max_images=max_images
        )
        cache[key] = report["states"][0]["scores"][name]
        atomic_write_bytes(cache_path, json.dumps(cache, indent=1).encode())
    return float(cache[key]), None if step is None else int(step)


def unlabeled_node(cfg: DictConfig) -> DictConfig:
    """A training config's unlabeled target images: ``eval.unlabeled_stream`` or the first
    unlabeled stream of the method's streams (as ``eval.unlabeled_scores`` reads them)."""
    import segshift.methods  # noqa: F401  (registers the methods)
    from segshift.registry import METHODS

    streams = cfg.data.streams
    method_streams = list(getattr(METHODS.get(cfg.method.name), "streams", ()) or streams)
    names = [n for n in method_streams if n in streams] or list(streams)
    name = cfg.eval.unlabeled_stream or next((n for n in names if not streams[n].labeled), None)
    if name is None or name not in streams:
        raise ConfigError(
            f"select_by score: no unlabeled stream in {', '.join(streams)}; set "
            "eval.unlabeled_stream"
        )
    return streams[name]


def labeled_node(cfg: DictConfig) -> DictConfig | None:
    """The labeled source images of a training config: ``source``, else its first labeled
    stream; None without one."""
    streams = cfg.data.streams
    labeled = [n for n, s in streams.items() if s.labeled]
    return streams["source" if "source" in labeled else labeled[0]] if labeled else None


def choose_stage(
    candidates: dict[str, dict[str, Any]],
    select_by: str,
    data: DictConfig,
    source: DictConfig | None,
    max_images: int,
) -> str:
    """The pipeline stage ``select_by`` picks among ``candidates`` (stage -> its result, with
    ``run_dir`` and ``miou``; in round order); the score goes into each result as
    ``score.NAME``."""
    name = score_of(select_by)
    if select_by == "last":
        return list(candidates)[-1]
    if name is None:
        return max(candidates, key=lambda s: candidates[s]["miou"])
    for result in candidates.values():
        checkpoint = Path(result["run_dir"]) / "checkpoints" / "latest.pt"
        result[select_by] = cached_score(checkpoint, name, data, source, max_images)[0]
    return max(candidates, key=lambda s: candidates[s][select_by])


def _cache(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    path = run_dir / CACHE
    return path, json.loads(path.read_text()) if path.is_file() else {}


def checkpoint_miou(cfg: DictConfig, checkpoint: Path) -> float:
    """The true ``data.val`` mIoU of a checkpoint (for the report; cached like the scores)."""
    from segshift.engine.restore import load_eval_weights, read_eval_checkpoint
    from segshift.engine.trainer import Trainer
    from segshift.models import drop_pretrained_weights

    path, cache = _cache(checkpoint.parent.parent)
    state, origin = read_eval_checkpoint(checkpoint)
    key = f"miou|{checkpoint.name}|{state.get('step')}|{_digest(cfg.data.val)}"
    if key not in cache:
        cfg = cfg.copy()
        drop_pretrained_weights(cfg.model)
        trainer = Trainer(cfg, evaluation_only=True)
        names = trainer.label_space.class_names
        order = load_eval_weights(trainer.method, state, origin, class_names=names)
        cache[key] = float(trainer.evaluate(class_order=order)["miou"])
        atomic_write_bytes(path, json.dumps(cache, indent=1).encode())
    return cache[key]


def select_checkpoint(run_dir: Path, cfg: DictConfig, select_by: str) -> dict[str, Any]:
    """The checkpoint of a finished training run that ``select_by`` picks: ``checkpoint``
    (file name), ``step``, ``score`` (None for last / miou), its true ``miou`` and the last
    checkpoint's ``last_miou``."""
    from segshift.evaluation.label_free import needs_source
    from segshift.pipeline.scoring import run_checkpoints

    latest = run_dir / "checkpoints" / "latest.pt"
    name, choice = score_of(select_by), {"select_by": select_by, "score": None}
    if name is None:
        best = run_dir / "checkpoints" / "best.pt"
        chosen = best if select_by == "miou" and best.is_file() else latest
    else:
        data = unlabeled_node(cfg)
        source = labeled_node(cfg) if needs_source([name]) or name == "atc" else None
        scored: dict[int | None, tuple[float, Path]] = {}
        for file in run_checkpoints(run_dir):
            score, step = cached_score(file, name, data, source, cfg.eval.unlabeled_images)
            scored.setdefault(step, (score, file))
        choice["score"], chosen = max(scored.values(), key=lambda item: item[0])
    from segshift.engine.checkpoint import load_checkpoint

    choice |= {"checkpoint": chosen.name, "step": load_checkpoint(chosen)[0].get("step")}
    choice["miou"] = checkpoint_miou(cfg, chosen)
    choice["last_miou"] = checkpoint_miou(cfg, latest)
    return choice


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def sweep_selection(
    out: Path, points: list[Any], results: dict[str, dict], select_by: str, pipeline: bool
) -> str:
    """Choose each finished run's checkpoint (training sweeps; a pipeline point chose its round
    itself) and the grid point by ``select_by``; write ``OUT/selection.json``; return the
    Markdown section for ``sweep.md``."""
    from segshift.config import Config, merge_into_schema
    from segshift.pipeline.sweep import SEED, point_name

    rows = {}
    for point in (p for p in points if p.name in results):
        result = results[point.name]
        if pipeline:
            stages = result.get("stage_miou") or {}
            rows[point.name] = {
                "checkpoint": result.get("selected_stage", "last stage"),
                "step": None,
                "score": result.get(select_by),
                "miou": result["miou"],
                "last_miou": list(stages.values())[-1] if stages else result["miou"],
            }
        else:
            cfg = merge_into_schema(Config(), point.config, origin=str(point.run_dir))
            rows[point.name] = select_checkpoint(point.run_dir, cfg, select_by)
    groups: dict[str, list[str]] = {}
    for point in (p for p in points if p.name in rows):
        label = point_name({k: v for k, v in point.texts.items() if k != SEED}) or "all"
        groups.setdefault(label, []).append(point.name)
    key = "score" if score_of(select_by) else "miou"
    mean = {g: _mean([rows[n][key] for n in names]) for g, names in groups.items()}
    truth = {g: _mean([rows[n]["miou"] for n in names]) for g, names in groups.items()}
    picked, best = max(mean, key=mean.get), max(truth, key=truth.get)
    summary = {"select_by": select_by, "runs": rows, "picked": picked, "best": best}
    summary["regret"] = truth[picked] - truth[best]
    atomic_write_bytes(out / "selection.json", json.dumps(summary, indent=1).encode())
    lines = [
        "",
        f"## Selection by {select_by}" + (" (no target labels)" if key == "score" else ""),
        "",
        f"| run | chosen | {select_by} | mIoU chosen | mIoU last |",
        "|:---|:---|---:|---:|---:|",
    ]
    for name, row in rows.items():
        chosen = row["checkpoint"] + (f" (step {row['step']})" if row["step"] is not None else "")
        score = "-" if row["score"] is None else f"{row['score']:.4f}"
        cells = [name, chosen, score, f"{100 * row['miou']:.2f}", f"{100 * row['last_miou']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Grid point with the highest mean {key} over seeds: {picked} (mIoU {100 * truth[picked]:.2f}); "
        f"best by mIoU: {best} ({100 * truth[best]:.2f}); regret {100 * summary['regret']:+.2f} mIoU.",
    ]
    return "\n".join(lines) + "\n"
