"""``segshift score``: label-free scores of trained models on unlabeled target images.

Each model state (a run directory's best checkpoint, a checkpoint file, an export, or with
``all_checkpoints`` every checkpoint a run directory holds: ``step_*.pt`` of
``train.keep_checkpoints_every``, ``latest.prev.pt``, ``latest.pt``, ``best.pt``; one per
training step) is read with `segshift.engine.restore` and scored on the target images
(`segshift.evaluation.scores`; higher = better expected target mIoU). The target images go
through the evaluation transform of their dataset node (its ``resize``, nothing random); at
most ``max_images`` of them, spread evenly (:func:`spread_indices`). Labels are never read
from the target. ``class_shift`` needs labeled source images (``source``: a dataset directory
or a config, whose ``source`` stream or first labeled stream is read); ``atc`` fits its
threshold on them and falls back to 0.9 without them.

Example::

    >>> report = score_states(run_checkpoints("runs/dacs"), "uda/dacs", source="uda/dacs",
    ...                       overrides=["data.streams.target.root=PHOTO", ...])
    >>> write_report(report, json_path="scores.json", md_path="scores.md")
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from segshift.config import SCORE_NAMES, load_config, resolve_config_path, unknown_score
from segshift.data import build_dataset
from segshift.engine.checkpoint import load_checkpoint
from segshift.engine.loaders import evaluation_loader
from segshift.engine.restore import load_trained_step
from segshift.errors import ConfigError
from segshift.evaluation.label_free import (
    inference_options,
    needs_source,
    score_model,
    source_statistics,
    spread_indices,
)
from segshift.evaluation.scores import DEFAULT_ATC_THRESHOLD, SCORES
from segshift.fileio import atomic_write_bytes
from segshift.pipeline.pseudo_label import dataset_node

ORIENTATION = "higher = better expected target mIoU"


def run_checkpoints(run_dir: str | Path) -> list[Path]:
    """Every checkpoint file of a run directory: ``step_*.pt`` (step order), then
    ``latest.prev.pt``, ``latest.pt``, ``best.pt`` where present."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        raise ConfigError(f"{run_dir}: --all-checkpoints needs a run directory (no checkpoints/)")
    named = [folder / n for n in ("latest.prev.pt", "latest.pt", "best.pt")]
    files = sorted(folder.glob("step_*.pt")) + [p for p in named if p.is_file()]
    if not files:
        raise ConfigError(f"{folder}: no checkpoints in it")
    return files


def parse_score_names(text: str | None) -> list[str] | None:
    """``"entropy,snd"`` -> names (ConfigError with a did-you-mean); None: every score."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    problem = unknown_score(names) if names else "expected score names, e.g. entropy,snd"
    if problem:
        raise ConfigError(f"--scores: {problem}")
    return names


def source_node(source: str | Path) -> DictConfig:
    """The labeled dataset node of ``--source``: a dataset directory (folder layout), or a
    config's ``source`` stream (its first labeled stream if it has none)."""
    if Path(source).expanduser().is_dir():
        node = dataset_node(source)
        node.labeled = True
        return node
    resolve_config_path(source)
    streams = dict(load_config(source).data.streams)
    labeled = [name for name, s in streams.items() if s.labeled]
    if not labeled:
        raise ConfigError(f"--source {source}: the config has no labeled stream")
    return dataset_node(source, "source" if "source" in labeled else labeled[0])


def _stored_step(path: str | Path) -> int | None:
    """The step of a checkpoint file (read before building its model, to skip a step already
    scored); None for run directories and exports."""
    if not (Path(path).is_file() and Path(path).suffix == ".pt"):
        return None
    step = load_checkpoint(Path(path))[0].get("step")
    return None if step is None else int(step)


def _loader(node: DictConfig, labeled: bool, count: int | None, batch: int, workers: int):
    node = node.copy()
    node.labeled = labeled
    dataset = build_dataset(node, train=False)
    indices = spread_indices(len(dataset), count)
    return dataset, evaluation_loader(dataset, indices, batch, workers)


def score_states(
    states: Sequence[str | Path],
    data: str | Path | DictConfig,
    *,
    overrides: Sequence[str] = (),
    source: str | Path | DictConfig | None = None,
    names: list[str] | None = None,
    batch_size: int = 4,
    max_images: int | None = None,
    num_workers: int = 2,
    progress: bool = False,
) -> dict[str, Any]:
    """Score each model state on the unlabeled images of ``data`` (a dataset directory, a
    config file with ``overrides`` and its first unlabeled stream, or a dataset node).

    ``source``: labeled source images (a directory or config, :func:`source_node`, or a node).
    ``names``: the scores (None: every score, ``class_shift`` only with ``source``).
    Returns the report (:func:`write_report`): ``states`` with ``checkpoint``, ``step``,
    ``scores`` and ``atc_threshold``, and per score the ``best`` state's checkpoint.
    """
    notes = []
    if names is None:
        names = [n for n in SCORE_NAMES if source is not None or not SCORES[n][0]]
        if source is None:
            notes.append("class_shift needs --source: not scored")
    elif source is None and needs_source(names):
        raise ConfigError(f"--scores {','.join(needs_source(names))}: needs --source (labeled)")
    node = data if isinstance(data, DictConfig) else dataset_node(data, None, list(overrides))
    dataset, loader = _loader(node, False, max_images, batch_size, num_workers)
    if len(dataset) < 3:
        raise ConfigError(f"{node.root}: {len(dataset)} images; the scores need at least 3")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    src = None
    if source is not None:
        labeled = source if isinstance(source, DictConfig) else source_node(source)
        src = _loader(labeled, True, max_images, batch_size, num_workers)
    if "atc" in names and src is None:
        notes.append(f"atc without --source: threshold {DEFAULT_ATC_THRESHOLD} (not fitted)")
    report: dict[str, Any] = {
        "data": {"root": str(node.root), "images": len(loader.dataset)},
        "source": {"root": str(src[0].root), "images": len(src[1].dataset)} if src else None,
        "scores": list(names),
        "orientation": ORIENTATION,
        "notes": notes,
        "states": [],
    }
    seen: dict[int, dict[str, Any]] = {}
    for path in states:
        step = _stored_step(path)
        if step is not None and step in seen:  # the same weights under another name
            seen[step].setdefault("same_as", []).append(str(path))
            continue
        cfg, method, label_space, step = load_trained_step(path)
        classes = list(label_space["class_names"])
        model = method.eval_model().to(device)
        stats = None
        if src is not None:
            if list(src[0].label_space.class_names) != classes:
                raise ConfigError(
                    f"--source {source}: classes {list(src[0].label_space.class_names)} differ "
                    f"from the model's {classes} ({path})"
                )
            fit = "atc" in names
            stats = source_statistics(
                model if fit else None,
                src[1],
                len(classes),
                fit_atc=fit,
                options=inference_options(cfg.eval),
                device=device,
                progress=progress,
            )
        values = score_model(
            model,
            loader,
            len(classes),
            names,
            source=stats,
            options=inference_options(cfg.eval),
            device=device,
            progress=progress,
        )
        state = {"checkpoint": str(path), "step": step, "scores": values}
        if "atc" in names:
            fitted = stats.threshold if stats is not None else None
            state["atc_threshold"] = DEFAULT_ATC_THRESHOLD if fitted is None else fitted
        report["states"].append(state)
        if step is not None:
            seen[step] = state
    report["best"] = {
        name: max(report["states"], key=lambda s, n=name: s["scores"][n])["checkpoint"]
        for name in names
    }
    return report


def report_markdown(report: dict[str, Any]) -> str:
    """One row per model state, one column per score (4 decimals; * = the best state)."""
    names = report["scores"]
    lines = [
        f"# Label-free scores ({ORIENTATION})",
        "",
        f"Target: {report['data']['root']} ({report['data']['images']} images, labels unused)."
        + (
            f" Source: {report['source']['root']} ({report['source']['images']} images)."
            if report["source"]
            else ""
        ),
        "",
        "| checkpoint | step | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for state in report["states"]:
        cells = [
            f"{state['scores'][n]:.4f}" + ("*" if report["best"][n] == state["checkpoint"] else "")
            for n in names
        ]
        step = "-" if state["step"] is None else str(state["step"])
        lines.append(f"| {state['checkpoint']} | {step} | " + " | ".join(cells) + " |")
    lines += ["", *(f"- {n}: {SCORES[n][1]}" for n in names)]
    lines += [f"- note: {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


def write_report(
    report: dict[str, Any], json_path: str | Path | None = None, md_path: str | Path | None = None
) -> None:
    """Write the report as JSON and / or Markdown (atomically)."""
    if json_path:
        text = json.dumps(report, indent=1, allow_nan=True) + "\n"
        atomic_write_bytes(Path(json_path), text.encode())
    if md_path:
        atomic_write_bytes(Path(md_path), report_markdown(report).encode())


def score_command(
    target: str,
    data: str,
    overrides: Sequence[str],
    *,
    source: str | None,
    scores: str | None,
    all_checkpoints: bool,
    batch_size: int,
    max_images: int | None,
    num_workers: int,
    json_path: str | None,
    md_path: str | None,
) -> dict[str, Any]:
    """`segshift score`: score, print the Markdown table, write the files asked for."""
    if batch_size < 1 or (max_images is not None and max_images < 3) or num_workers < 0:
        raise ConfigError("--batch-size >= 1, --max-images >= 3 and --workers >= 0, please")
    states = run_checkpoints(target) if all_checkpoints else [target]
    report = score_states(
        states,
        data,
        overrides=overrides,
        source=source,
        names=parse_score_names(scores),
        batch_size=batch_size,
        max_images=max_images,
        num_workers=num_workers,
        progress=sys.stderr.isatty(),
    )
    print(report_markdown(report), end="")
    write_report(report, json_path, md_path)
    for path in (json_path, md_path):
        if path:
            print(f"wrote {path}")
    return report
