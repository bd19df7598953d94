"""The pipeline's summary: a stage table (Markdown + CSV), mIoU per round (PNG), per-class IoU,
and colour-coded pseudo-label examples.

``summary.md``: one row per stage (baselines, teacher, pseudo-label rounds, students) with the
model's mIoU, or for pseudo-labels their mIoU / pixel accuracy on the kept pixels and coverage
where ground truth exists; then the per-class IoU of every trained stage. ``summary.csv`` holds
the same numbers (with ``select_by: score.NAME`` also each model's score, and the selected
model marked); ``summary.png`` plots mIoU against the round (0 = teacher) with the
pseudo-labels' mIoU and the baselines as horizontal lines.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from segshift.fileio import atomic_write_bytes


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.2f}"


def _pseudo_numbers(result: dict[str, Any]) -> dict[str, Any]:
    report = result.get("report") or {}
    quality = report.get("labels") or {}  # against ground truth, where it exists
    return {
        "miou": quality.get("miou"),
        "pixel_accuracy": quality.get("pixel_accuracy"),
        "coverage": report.get("coverage"),
    }


def val_classes(metrics: dict[str, Any]) -> list[int] | None:
    """The class ids present in the validation labels of an evaluation (None if unknown)."""
    matrix = metrics.get("confusion_matrix")
    if matrix is None:
        return None
    return [int(c) for c in (matrix.sum(dim=1) > 0).nonzero().flatten().tolist()]


def _valid(value: Any) -> bool:
    return value is not None and value == value  # not None, not NaN


def shared_classes(results: dict[str, dict[str, Any]]) -> list[int] | None:
    """The one class set every trained stage is compared over: the classes present in the
    validation labels (recorded per stage), else those with an IoU in every stage."""
    trained = [r for r in results.values() if r.get("kind") == "train" and r.get("iou")]
    recorded = [set(r["val_classes"]) for r in trained if r.get("val_classes") is not None]
    if recorded:
        return sorted(set().union(*recorded))
    if not trained:
        return None
    n = min(len(r["iou"]) for r in trained)
    return [c for c in range(n) if all(_valid(r["iou"][c]) for r in trained)]


def common_miou(result: dict[str, Any], classes: list[int] | None) -> float | None:
    """A stage's mean IoU over ``classes`` (its own mIoU when they are not known)."""
    iou = result.get("iou") or []
    values = [iou[c] for c in classes or [] if c < len(iou) and _valid(iou[c])]
    return float(np.mean(values)) if values else result.get("miou")


def class_names(results: dict[str, dict[str, Any]]) -> list[str]:
    """The class names of the trained stages (from a run's export)."""
    for result in results.values():
        if result.get("kind") == "train" and result.get("run_dir"):
            meta = Path(result["run_dir"]) / "export" / "config.json"
            if meta.is_file():
                return list(json.loads(meta.read_text())["label_space"]["class_names"])
    return []


def write_summary(
    directory: Path, results: dict[str, dict[str, Any]], cfg: DictConfig, final: bool = False
) -> dict[str, Any]:
    """Write summary.md/.csv/.png for the stages in ``results``; return the table rows."""
    rows, classes = [], shared_classes(results)
    scores = sorted({k for r in results.values() for k in r if k.startswith("score.")})
    for stage, result in results.items():
        if result.get("kind") == "train":
            what = result["method"] + (" (selected)" if result.get("selected") else "")
            miou = common_miou(result, classes)
            rows.append({"stage": stage, "what": what, "miou": miou, "miou_run": result["miou"]})
            rows[-1] |= {k: result[k] for k in scores if k in result}
        else:
            numbers = _pseudo_numbers(result)
            rows.append(
                {
                    "stage": stage,
                    "what": f"pseudo-labels of {result['teacher']}",
                    "pseudo_miou": numbers["miou"],
                    "pseudo_pixel_accuracy": numbers["pixel_accuracy"],
                    "coverage": numbers["coverage"],
                }
            )
    names = class_names(results)
    lines = [
        f"# Pipeline {cfg.name}" + ("" if final else " (in progress)"),
        "",
        "| stage | what | mIoU | pseudo-label mIoU | pseudo-label pixel acc. | coverage |"
        + "".join(f" {k} |" for k in scores),
        "|---|---|---|---|---|---|" + "---|" * len(scores),
    ]
    for row in rows:
        lines.append(
            f"| {row['stage']} | {row['what']} | {_pct(row.get('miou'))} | "
            f"{_pct(row.get('pseudo_miou'))} | {_pct(row.get('pseudo_pixel_accuracy'))} | "
            f"{_pct(row.get('coverage'))} |"
            + "".join(f" {row[k]:.4f} |" if k in row else " - |" for k in scores)
        )
    if classes is not None and any(r.get("miou") is not None for r in rows):
        lines += [
            "",
            f"mIoU: over the same {len(classes)} classes for every stage, those in the "
            "validation labels (miou_run in summary.csv: each run's own mIoU)",
        ]
    trained = [(s, r) for s, r in results.items() if r.get("kind") == "train" and r.get("iou")]
    if names and trained:
        lines += ["", "Per-class IoU (%):", "", "| stage | " + " | ".join(names) + " |"]
        lines.append("|---|" + "---|" * len(names))
        for stage, result in trained:
            lines.append(f"| {stage} | " + " | ".join(_pct(v) for v in result["iou"]) + " |")
    pseudo = [s for s, r in results.items() if r.get("kind") == "pseudo"]
    if pseudo:
        lines += ["", "Pseudo-label examples (image | pseudo-label, black = not kept | truth):", ""]
        lines += [f"- {s}: `{s}/examples.png`" for s in pseudo]
    atomic_write_bytes(directory / "summary.md", ("\n".join(lines) + "\n").encode())

    buffer = io.StringIO()
    fields = ["stage", "what", "miou", "pseudo_miou", "pseudo_pixel_accuracy", "coverage"]
    fields += ["miou_run", *scores]
    writer = csv.DictWriter(buffer, fieldnames=fields + [f"iou_{n}" for n in names])
    writer.writeheader()
    for row in rows:
        iou = results[row["stage"]].get("iou") or []
        writer.writerow({**row, **{f"iou_{n}": v for n, v in zip(names, iou, strict=False)}})
    atomic_write_bytes(directory / "summary.csv", buffer.getvalue().encode())
    _plot(directory / "summary.png", results, cfg.name, classes)
    print("\n".join(lines))
    return {"rows": rows}


def _plot(
    path: Path, results: dict[str, dict[str, Any]], title: str, classes: list[int] | None
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds, mious, pseudo_rounds, pseudo_mious = [], [], [], []
    for stage, result in results.items():
        if stage == "teacher" or stage.startswith("student_"):
            rounds.append(0 if stage == "teacher" else int(stage.split("_")[1]))
            mious.append(100 * common_miou(result, classes))
        elif stage.startswith("pseudo_") and _pseudo_numbers(result)["miou"] is not None:
            pseudo_rounds.append(int(stage.split("_")[1]))
            pseudo_mious.append(100 * _pseudo_numbers(result)["miou"])
    fig, ax = plt.subplots(figsize=(6, 4))
    if rounds:
        ax.plot(rounds, mious, "o-", label="model (0 = teacher)")
        ax.set_xticks(sorted(set(rounds) | set(pseudo_rounds)))
    if pseudo_rounds:
        ax.plot(pseudo_rounds, pseudo_mious, "s--", label="pseudo-labels (kept pixels)")
    for stage, result in results.items():
        if stage.startswith("baseline_"):
            miou = 100 * common_miou(result, classes)
            ax.axhline(miou, ls=":", color="gray")
            ax.annotate(stage[9:], (0, miou), fontsize=8, color="gray")
    ax.set(xlabel="round", ylabel="mIoU (%)", title=title)
    if rounds or pseudo_rounds:
        ax.legend(loc="best", fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def draw_pseudo_examples(out: Path, labels: Any = None, count: int = 4) -> Path | None:
    """``out/examples.png``: the first ``count`` images of a pseudo-label set, their colour-coded
    pseudo-labels (black: not kept) and, when ``labels`` (a dataset node) is given, the truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from segshift.config import DatasetConfig, merge_into_schema
    from segshift.data import build_dataset
    from segshift.evaluation.visualise import colorize
    from segshift.pipeline.predict import sample_names
    from segshift.pipeline.pseudo_label import pseudo_dataset

    if count <= 0:
        return None
    dataset = build_dataset(merge_into_schema(DatasetConfig(), pseudo_dataset(out)), train=False)
    palette = dataset.label_space.palette
    truth = {}
    if labels is not None:
        gt = build_dataset(labels, train=False)
        truth = {name: i for i, name in enumerate(sample_names(gt.files))}
    samples = dataset.files[:count]
    columns = 3 if truth else 2
    fig, axes = plt.subplots(len(samples), columns, figsize=(3 * columns, 2.2 * len(samples)))
    axes = np.atleast_2d(axes)
    for row, sample in enumerate(samples):
        image, pseudo = dataset.load(row)
        panels = [image, colorize(pseudo, palette)]
        if truth:
            index = truth.get(sample.name)
            panels.append(
                colorize(gt.load_label(index), palette)
                if index is not None
                else np.zeros_like(panels[1])
            )
        for col, panel in enumerate(panels):
            axes[row, col].imshow(panel)
            axes[row, col].axis("off")
        axes[row, 0].set_title(sample.name, fontsize=7)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(out / "examples.png", buffer.getvalue())
