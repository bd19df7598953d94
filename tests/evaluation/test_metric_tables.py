"""Text layouts (exact strings), Markdown, and CSV / JSON round trips."""

import csv
import json
import math
import os

import pytest
import torch

from segshift.evaluation import MetricsTable

NAMES = ["road", "sidewalk", "sky"]


@pytest.fixture
def result() -> dict:
    return {
        "iou": [0.9645, 0.7421, math.nan],
        "accuracy": [0.98, 0.8, math.nan],
        "miou": 0.8533,
        "mean_accuracy": 0.89,
        "pixel_accuracy": 0.951,
        "fwiou": 0.9,
        "subset": None,
        "confusion_matrix": torch.tensor([[5, 1, 0], [0, 3, 0], [0, 0, 0]]),
    }


def test_arrow_layout(result):
    assert MetricsTable(result, NAMES).arrow() == (
        "===>road:       96.45\n===>sidewalk:   74.21\n===>sky:        nan\n===> mIoU: 85.33"
    )


def test_arrow_layout_lists_only_the_subset(result):
    result = {**result, "subset": [0, 2], "miou": 0.9645}
    assert MetricsTable(result, NAMES).arrow() == (
        "===>road:   96.45\n===>sky:    nan\n===> mIoU: 96.45"
    )


def test_grid_layout(result):
    assert MetricsTable(result, NAMES).grid() == "\n".join(
        [
            "+----------+------------+-------+",
            "| class id | class name |   iou |",
            "+----------+------------+-------+",
            "| 0        | road       | 96.45 |",
            "| 1        | sidewalk   | 74.21 |",
            "| 2        | sky        |   nan |",
            "+----------+------------+-------+",
            "| pixAcc   |            | 95.10 |",
            "| mIoU     |            | 85.33 |",
            "+----------+------------+-------+",
        ]
    )


def test_markdown(result):
    assert MetricsTable(result, NAMES).to_markdown().splitlines() == [
        "| class id | class name | IoU | Acc |",
        "|---:|:---|---:|---:|",
        "| 0 | road | 96.45 | 98.00 |",
        "| 1 | sidewalk | 74.21 | 80.00 |",
        "| 2 | sky | nan | nan |",
        "|  | **pixAcc** | 95.10 |  |",
        "|  | **mIoU** | 85.33 |  |",
    ]


def test_class_name_count_must_match(result):
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        MetricsTable(result, NAMES[:2])


def test_csv_round_trip(result, tmp_path):
    path = MetricsTable(result, NAMES).to_csv(tmp_path / "iou.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["class_name"] for r in rows] == NAMES
    assert [int(r["class_id"]) for r in rows] == [0, 1, 2]
    assert [float(r["iou"]) for r in rows][:2] == result["iou"][:2]
    assert math.isnan(float(rows[2]["iou"]))
    assert [float(r["accuracy"]) for r in rows][:2] == result["accuracy"][:2]


def test_json_round_trip(result, tmp_path):
    path = MetricsTable(result, NAMES).to_json(tmp_path / "metrics.json")
    data = json.loads(path.read_text())
    assert data["miou"] == result["miou"]
    assert data["pixel_accuracy"] == result["pixel_accuracy"]
    assert data["subset"] is None
    assert [c["iou"] for c in data["classes"]] == [0.9645, 0.7421, None]
    assert [c["class_name"] for c in data["classes"]] == NAMES
    assert data["confusion_matrix"] == result["confusion_matrix"].tolist()


def test_failed_write_keeps_old_file_and_leaves_no_temp(result, tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    path.write_text("old")

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space"):
        MetricsTable(result, NAMES).to_json(path)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["metrics.json"]
