"""Trainer start-up: the validation labels are checked before step 1, and a summary says what
the run trains on, with a warning for a configured stream the method does not read."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from segshift.engine.trainer import Trainer
from segshift.errors import DataError


def _bad_val_copy(tiny_folder: Path, tmp_path: Path) -> Path:
    """The tiny folder with a truncated mask (img_001) and a mask of another size (img_003)."""
    val = Path(shutil.copytree(tiny_folder, tmp_path / "val"))
    truncated = val / "masks" / "img_001.png"
    truncated.write_bytes(truncated.read_bytes()[:40])
    resized = val / "masks" / "img_003.png"
    with Image.open(resized) as mask:
        mask.resize((20, 16), Image.NEAREST).save(resized)
    return val


@pytest.mark.parametrize("evaluation_only", [False, True])
def test_bad_validation_masks_fail_before_step_one(
    tiny_config, tiny_folder: Path, tmp_path: Path, evaluation_only: bool
) -> None:
    val = _bad_val_copy(tiny_folder, tmp_path)
    cfg = tiny_config(f"data.val.root={val}")
    with pytest.raises(DataError) as caught:
        Trainer(cfg, evaluation_only=evaluation_only)
    message = str(caught.value)
    assert "data.val" in message and "2 problem(s)" in message
    assert f"{val / 'masks' / 'img_001.png'}: cannot read image" in message
    assert f"{val / 'masks' / 'img_003.png'}: mask size 20x16 does not match image" in message
    assert not (tmp_path / "runs" / "tiny").exists()  # nothing trained, nothing written


def test_summary_names_method_classes_sizes_and_warns_of_unused_stream(
    tiny_config, tmp_path: Path, capsys
) -> None:
    missing = tmp_path / "no_such_target"
    cfg = tiny_config(
        "train.iters=1",
        "train.eval_every=0",
        f"data.streams.target.root={missing}",
        "data.streams.target.labeled=false",
    )
    Trainer(cfg).fit()  # the unused stream's missing root does not stop training
    out = capsys.readouterr().out
    assert "method supervised reads data.streams.labeled\n" in out
    classes = "11 classes: sky, building, pole, road, sidewalk, tree, signsymbol, ..., bicyclist"
    assert classes in out
    assert "data.val: 6 images, image sizes (HxW) 32x40 (6)" in out
    assert "passes over them in 1 steps (crop 32x32)\n" in out
    assert (
        "WARNING: data.streams.target is configured but method 'supervised' does not read it: "
        f"it is not loaded; its root {missing} does not exist" in out
    )
    assert "WARNING: data.streams.labeled" not in out


def test_warns_when_val_reads_the_training_images(tiny_config, tiny_folder, tmp_path, capsys):
    warning = "WARNING: data.val reads the same images as data.streams.labeled"
    Trainer(tiny_config("train.iters=1", "train.eval_every=0")).fit()  # one root for both
    out = capsys.readouterr().out
    assert f"{warning} (dataset folder, root {tiny_folder}, split train)" in out
    val = shutil.copytree(tiny_folder, tmp_path / "val")  # the same images elsewhere: not caught
    cfg = tiny_config("train.iters=1", "train.eval_every=0", f"data.val.root={val}", "name=b")
    Trainer(cfg).fit()
    assert warning not in capsys.readouterr().out
