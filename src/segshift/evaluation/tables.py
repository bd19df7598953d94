"""Result tables in the layouts readers of the field know, plus CSV / JSON / Markdown.

Two text layouts (values in percent, 2 decimals; "nan" for classes absent from the data):

arrow (AdaptSegNet / ADVENT)::

    ===>road:       96.45
    ===>sidewalk:   74.21
    ===> mIoU: 68.03
    ===> mIoU per image: 61.50      (only with eval.per_image_miou)

grid::

    +----------+------------+-------+
    | class id | class name |   iou |
    +----------+------------+-------+
    | 0        | road       | 96.45 |
    | 1        | sidewalk   | 74.21 |
    +----------+------------+-------+
    | pixAcc   |            | 95.10 |
    | mIoU     |            | 85.33 |
    +----------+------------+-------+
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from segshift.fileio import atomic_write_bytes


def percent(value: float) -> str:
    """A fraction as a percentage with 2 decimals; NaN as ``"nan"``."""
    return "nan" if math.isnan(value) else f"{100 * value:.2f}"


class MetricsTable:
    """Formats a :meth:`ConfusionMatrix.compute` (or :func:`evaluate`) result.

    Only the classes of ``result["subset"]`` are listed when it is set (e.g. SYNTHIA-13).

    Args:
        result: dict with ``iou``, ``accuracy`` (lists of C fractions), ``miou``,
            ``pixel_accuracy`` and optionally ``mean_accuracy``, ``fwiou``, ``subset``,
            ``confusion_matrix``.
        class_names: C names, index = train id.

    Example:
        >>> print(MetricsTable(evaluate(model, loader, 19), label_space.class_names).arrow())
    """

    def __init__(self, result: dict, class_names: Sequence[str]) -> None:
        if len(class_names) != len(result["iou"]):
            raise ValueError(
                f"{len(class_names)} class names for {len(result['iou'])} classes in the result"
            )
        self.result = result
        self.class_names = list(class_names)
        subset = result.get("subset")
        self.class_ids = list(range(len(class_names))) if subset is None else list(subset)

    def arrow(self) -> str:
        """One ``===>name: iou`` line per class, values aligned, then ``===> mIoU: x``."""
        width = max(len(self.class_names[i]) for i in self.class_ids) + 4
        lines = [
            f"===>{(self.class_names[i] + ':').ljust(width)}{percent(self.result['iou'][i])}"
            for i in self.class_ids
        ]
        lines.append(f"===> mIoU: {percent(self.result['miou'])}")
        if "miou_per_image" in self.result:
            lines.append(f"===> mIoU per image: {percent(self.result['miou_per_image'])}")
        return "\n".join(lines)

    def grid(self) -> str:
        """A boxed ``class id | class name | iou`` table followed by ``pixAcc`` and ``mIoU`` rows."""
        header = ("class id", "class name", "iou")
        body = [
            (str(i), self.class_names[i], percent(self.result["iou"][i])) for i in self.class_ids
        ]
        summary = [
            ("pixAcc", "", percent(self.result["pixel_accuracy"])),
            ("mIoU", "", percent(self.result["miou"])),
        ]
        if "miou_per_image" in self.result:
            summary.append(("mIoU/image", "", percent(self.result["miou_per_image"])))
        widths = [max(len(row[k]) for row in [header, *body, *summary]) for k in range(3)]
        rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

        def line(row: tuple[str, str, str]) -> str:
            cells = (row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].rjust(widths[2]))
            return "| " + " | ".join(cells) + " |"

        return "\n".join(
            [rule, line(header), rule, *map(line, body), rule, *map(line, summary), rule]
        )

    def to_markdown(self) -> str:
        """A Markdown table of per-class IoU and accuracy (percent), then pixAcc and mIoU rows."""
        lines = ["| class id | class name | IoU | Acc |", "|---:|:---|---:|---:|"]
        lines += [
            f"| {i} | {self.class_names[i]} | {percent(self.result['iou'][i])} "
            f"| {percent(self.result['accuracy'][i])} |"
            for i in self.class_ids
        ]
        lines.append(f"|  | **pixAcc** | {percent(self.result['pixel_accuracy'])} |  |")
        lines.append(f"|  | **mIoU** | {percent(self.result['miou'])} |  |")
        if "miou_per_image" in self.result:
            lines.append(f"|  | **mIoU per image** | {percent(self.result['miou_per_image'])} |  |")
        return "\n".join(lines)

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write ``class_id,class_name,iou,accuracy`` rows (fractions, full precision)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["class_id", "class_name", "iou", "accuracy"])
        for i in self.class_ids:
            writer.writerow(
                [
                    i,
                    self.class_names[i],
                    repr(self.result["iou"][i]),
                    repr(self.result["accuracy"][i]),
                ]
            )
        return atomic_write_bytes(path, buffer.getvalue().encode())

    def to_json(self, path: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write summary metrics, per-class values and the confusion matrix (if any) as JSON;
        ``extra``: further top-level entries (what was scored: checkpoint, step).

        NaN is written as ``null`` so that the file is strict JSON.
        """
        summary_keys = ("miou", "mean_accuracy", "pixel_accuracy", "fwiou", "subset")
        keys = [*summary_keys, *(k for k in self.result if k.startswith("miou_"))]
        payload = {k: _nan_to_none(self.result[k]) for k in keys if k in self.result}
        payload |= extra or {}
        payload["classes"] = [
            {
                "class_id": i,
                "class_name": self.class_names[i],
                "iou": _nan_to_none(self.result["iou"][i]),
                "accuracy": _nan_to_none(self.result["accuracy"][i]),
            }
            for i in self.class_ids
        ]
        matrix = self.result.get("confusion_matrix")
        if matrix is not None:
            payload["confusion_matrix"] = torch.as_tensor(matrix).tolist()
        text = json.dumps(payload, indent=2, allow_nan=False) + "\n"
        return atomic_write_bytes(path, text.encode())


def _nan_to_none(value: object) -> object:
    return None if isinstance(value, float) and math.isnan(value) else value
