"""`segshift data check`: every problem of every set at once, class pixel counts, image sizes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from segshift.cli import main

CLASSES_YAML = "classes: [sky, road, car]\n"  # train ids: ids >= 3 (other than 255) are errors


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _clean_folder(root: Path) -> Path:
    """Three labeled images with hand-counted pixels: a (16x24) sky over road, b (16x24) car
    with an ignored first row, c (8x8) all road."""
    a = np.zeros((16, 24), np.uint8)
    a[8:] = 1  # sky 8*24 = 192, road 192
    b = np.full((16, 24), 2, np.uint8)
    b[0] = 255  # car 15*24 = 360, ignored 24
    c = np.ones((8, 8), np.uint8)  # road 64
    for name, mask in (("a", a), ("b", b), ("c", c)):
        _write(root / "images" / f"{name}.png", np.full((*mask.shape, 3), 90, np.uint8))
        _write(root / "masks" / f"{name}.png", mask)
    (root / "classes.yaml").write_text(CLASSES_YAML)
    return root


def _faulty_folder(root: Path) -> Path:
    """The clean folder plus one of each fault: an unknown id, a mask of the wrong size, a
    corrupt image and an image without a mask."""
    _clean_folder(root)
    image = np.full((16, 24, 3), 90, np.uint8)
    unknown = np.zeros((16, 24), np.uint8)
    unknown[:2] = 7
    _write(root / "images" / "d_unknown.png", image)
    _write(root / "masks" / "d_unknown.png", unknown)
    _write(root / "images" / "e_small.png", image)
    _write(root / "masks" / "e_small.png", np.zeros((10, 24), np.uint8))
    corrupt = _write(root / "images" / "f_corrupt.png", image)
    corrupt.write_bytes(corrupt.read_bytes()[:30])
    _write(root / "masks" / "f_corrupt.png", np.zeros((16, 24), np.uint8))
    _write(root / "images" / "g_nomask.png", image)
    return root


def _problems(report: dict, where: str) -> dict[tuple[str, str], list[str]]:
    entry = next(s for s in report["sets"] if s["name"] == where)
    return {(p["kind"], p["value"]): [Path(f).name for f in p["files"]] for p in entry["problems"]}


def test_faulty_folder_reports_every_problem_and_exits_1(tmp_path: Path, capsys) -> None:
    root = _faulty_folder(tmp_path / "data")
    out = tmp_path / "report.json"
    code = main(["data", "check", str(root), "--workers", "2", "--json", str(out)])
    assert code == 1
    printed = capsys.readouterr().out
    for name in ("d_unknown.png", "e_small.png", "f_corrupt.png", "g_nomask.png"):
        assert name in printed
    assert "unknown id 7 in 1 file(s)" in printed
    assert _problems(json.loads(out.read_text()), "split all") == {
        ("missing mask", ""): ["g_nomask.png"],
        ("unknown id", "7"): ["d_unknown.png"],
        ("size mismatch", ""): ["e_small.png"],
        ("unreadable", ""): ["f_corrupt.png"],
    }
    # the good samples are still counted: a, b, c (the faulty ones are not)
    entry = json.loads(out.read_text())["sets"][0]
    assert [c["pixels"] for c in entry["classes"]] == [192, 256, 360]


def test_clean_folder_counts_pixels_images_and_sizes(tmp_path: Path, capsys) -> None:
    root = _clean_folder(tmp_path / "data")
    out = tmp_path / "report.json"
    assert main(["data", "check", str(root), "--json", str(out)]) == 0
    entry = json.loads(out.read_text())["sets"][0]
    assert entry["images"] == 3 and entry["labeled"] is True
    assert [(c["name"], c["pixels"], c["images"]) for c in entry["classes"]] == [
        ("sky", 192, 1),
        ("road", 192 + 64, 2),
        ("car", 360, 1),
    ]
    assert entry["ignored_pixels"] == 24
    assert entry["image_sizes"] == {"16x24": 2, "8x8": 1}
    printed = capsys.readouterr().out
    assert "no problems: 1 set(s), 3 images" in printed
    assert "3 classes: sky, road, car" in printed


def test_directory_with_renamed_folders_is_checked_as_labeled(tmp_path: Path) -> None:
    """KITTI as downloaded: image_2/ and semantic/ instead of images/ and masks/, split lists."""
    root = _clean_folder(tmp_path / "data")
    (root / "images").rename(root / "image_2")
    (root / "masks").rename(root / "semantic")
    (root / "train.txt").write_text("a\nb\n")
    (root / "val.txt").write_text("c\n")
    out = tmp_path / "report.json"
    options = ["options.image_dir=image_2", "options.mask_dir=semantic"]
    assert main(["data", "check", str(root), *options, "--json", str(out)]) == 0
    sets = {s["name"]: s for s in json.loads(out.read_text())["sets"]}
    assert set(sets) == {"split train", "split val"}
    assert sets["split train"]["labeled"] and sets["split val"]["labeled"]
    assert [c["pixels"] for c in sets["split train"]["classes"]] == [192, 192, 360]
    assert [c["pixels"] for c in sets["split val"]["classes"]] == [0, 64, 0]


def test_config_checks_every_stream_and_val(tmp_path: Path, capsys) -> None:
    labeled = _clean_folder(tmp_path / "labeled")
    val = _clean_folder(tmp_path / "val")
    (val / "masks" / "c.png").unlink()  # the validation set misses a mask
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    config = tmp_path / "check.yaml"
    config.write_text(
        "base: demo/base.yaml\n"
        f"data:\n  streams:\n    labeled: {{root: {labeled}}}\n"
        f"    target: {{name: folder, root: {empty}, labeled: false}}\n"
        f"  val: {{root: {val}}}\n"
    )
    out = tmp_path / "report.json"
    assert main(["data", "check", str(config), "--json", str(out)]) == 1
    report = json.loads(out.read_text())
    assert [s["name"] for s in report["sets"]] == [
        "data.streams.labeled",
        "data.streams.target",
        "data.val",
    ]
    assert _problems(report, "data.streams.labeled") == {}
    assert _problems(report, "data.val") == {("missing mask", ""): ["c.png"]}
    assert list(_problems(report, "data.streams.target")) == [("empty", "")]
    printed = capsys.readouterr().out
    assert "2 problem(s) in 2 of 3 set(s)" in printed


def test_unknown_colours_are_grouped_by_colour(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "classes.yaml").write_text(
        "classes:\n  - {name: sky, color: [0, 0, 255]}\n  - {name: road, color: [128, 64, 128]}\n"
    )
    for name in ("a", "b", "c"):
        mask = np.zeros((8, 8, 3), np.uint8)
        mask[:] = (0, 0, 255)
        if name != "c":
            mask[0, 0] = (9, 9, 9)  # unknown in a and b
        if name == "b":
            mask[1, 1] = (7, 7, 7)
        _write(root / "images" / f"{name}.png", np.zeros((8, 8, 3), np.uint8))
        _write(root / "masks" / f"{name}.png", mask)
    out = tmp_path / "report.json"
    args = ["data", "check", str(root), "options.mask_format=rgb", "--json", str(out)]
    assert main(args) == 1
    assert _problems(json.loads(out.read_text()), "split all") == {
        ("unknown colour", "(7, 7, 7)"): ["b.png"],
        ("unknown colour", "(9, 9, 9)"): ["a.png", "b.png"],
    }
