"""``segshift eval RUN_DIR data.val.root=...`` matches the data's classes to the checkpoint's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segshift.cli import main
from segshift.engine.restore import class_order
from segshift.errors import ConfigError

CLASSES = ["road", "sidewalk", "building"]
COLOURS = np.array([[128, 64, 128], [244, 35, 232], [70, 70, 70]])


def write_folder(root: Path, names: list[str], n: int = 4) -> Path:
    """Images whose colour gives the class; masks hold the index of each pixel's class in
    ``names`` (so any order of the same classes describes the same scenes)."""
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        classes = np.zeros((32, 40), np.int64)  # index into CLASSES
        classes[: 8 + 2 * i] = 2
        classes[8 + 2 * i : 20] = 1
        image = COLOURS[classes] + rng.integers(-30, 30, (32, 40, 3))
        mask = np.array([names.index(c) for c in CLASSES])[classes].astype(np.uint8)
        mask[5] = 255
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
    (root / "classes.yaml").write_text(f"classes: [{', '.join(names)}]\n")
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("names")
    data = write_folder(base / "data", CLASSES)
    args = [
        "train",
        "demo/source_only",
        f"data.streams.labeled.root={data}",
        f"data.val.root={data}",
        f"output_dir={base}",
        "name=run",
        "data.num_workers=0",
        "data.streams.labeled.batch_size=2",
        "data.streams.labeled.crop_size=[32,32]",
        "train.iters=2",
        "train.eval_every=2",
        "train.ckpt_every=2",
        "train.progress=plain",
        "optim.lr=0.05",
    ]
    assert main(args) == 0
    return base / "run"


def per_class(metrics_json: Path) -> dict[str, tuple[float, float]]:
    classes = json.loads(metrics_json.read_text())["classes"]
    return {c["class_name"]: (c["iou"], c["accuracy"]) for c in classes}


def test_same_classes_in_another_order_are_scored_by_name(run: Path, tmp_path, capsys) -> None:
    assert main(["eval", str(run), "--out", str(tmp_path / "orig")]) == 0
    original = per_class(tmp_path / "orig" / "metrics.json")
    assert original["road"] != original["sidewalk"]  # a swap would show
    swapped = write_folder(tmp_path / "swapped", ["sidewalk", "road", "building"])
    capsys.readouterr()
    out = tmp_path / "swap"
    assert main(["eval", str(run), f"data.val.root={swapped}", "--out", str(out)]) == 0
    assert "another order" in capsys.readouterr().err
    reordered = per_class(out / "metrics.json")
    assert list(reordered) == ["sidewalk", "road", "building"]  # the data's order
    assert reordered == original
    original_json = json.loads((tmp_path / "orig" / "metrics.json").read_text())
    assert json.loads((out / "metrics.json").read_text())["miou"] == original_json["miou"]


def test_other_class_names_are_refused(run: Path, tmp_path, capsys) -> None:
    other = write_folder(tmp_path / "other", CLASSES)
    (other / "classes.yaml").write_text("classes: [road, pavement, building]\n")
    assert main(["eval", str(run), f"data.val.root={other}", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(CLASSES) in err and str(["road", "pavement", "building"]) in err
    assert not (tmp_path / "metrics.json").exists()


def test_class_order_values(tmp_path) -> None:
    state = {"label_space": {"class_names": ["a", "b", "c"]}}
    origin = tmp_path / "best.pt"
    assert class_order(state, origin, ["a", "b", "c"]) is None
    assert class_order(state, origin, ["c", "a", "b"]) == [2, 0, 1]
    assert class_order({"official": {}}, origin, ["x"]) is None  # stores no names
    with pytest.raises(ConfigError, match=r"\['a', 'b', 'c'\].*\['a', 'b'\]"):
        class_order(state, origin, ["a", "b"])
