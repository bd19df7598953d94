"""``segshift predict``: index masks, colour legend, ground-truth panels, names, checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segshift.cli import main
from segshift.data.io import read_image
from segshift.data.label_space import get_label_space
from segshift.engine.restore import load_trained
from segshift.evaluation import colorize, predict

TINY = [
    "data.num_workers=0",
    "data.streams.labeled.batch_size=2",
    "data.streams.labeled.crop_size=[32,32]",
    "train.iters=2",
    "train.eval_every=2",
    "train.ckpt_every=2",
    "train.progress=plain",
    "name=run",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, folder_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("predict")
    data = folder_factory(base / "data", n=3)
    args = ["train", "demo/source_only", f"data.streams.labeled.root={data}"]
    args += [f"data.val.root={data}", f"output_dir={base}", *TINY]
    assert main(args) == 0
    return base / "run", data


def argmax_ids(run: Path, image_path: Path) -> np.ndarray:
    """The run's prediction for one image, computed here: (H, W) train ids."""
    _, method, space = load_trained(run)
    image = read_image(image_path)
    x = torch.from_numpy(image).permute(2, 0, 1).float().div(255).unsqueeze(0)
    probs = predict(method.eval_model(), x, len(space["class_names"]))
    return probs.argmax(1)[0].numpy()


def test_index_masks_hold_the_argmax_beside_colour_masks(trained, tmp_path) -> None:
    run, data = trained
    out = tmp_path / "out"
    assert main(["predict", str(data / "images"), "--checkpoint", str(run), "--out", str(out)]) == 0
    masks = sorted((out / "masks").glob("*.png"))
    assert [m.name for m in masks] == ["img_000.png", "img_001.png", "img_002.png"]
    palette = get_label_space("camvid").palette
    for mask in masks:
        with Image.open(mask) as file:
            assert file.mode == "L"
            ids = np.asarray(file)
        np.testing.assert_array_equal(ids, argmax_ids(run, data / "images" / mask.name))
        colour = np.asarray(Image.open(out / f"{mask.stem}_color.png"))
        np.testing.assert_array_equal(colour, colorize(ids, palette))
        assert (out / f"{mask.stem}_overlay.png").is_file()


def test_legend_lists_id_name_and_colour(trained, tmp_path) -> None:
    run, data = trained
    out = tmp_path / "out"
    image = str(data / "images" / "img_000.png")
    assert main(["predict", image, "--checkpoint", str(run), "--out", str(out)]) == 0
    legend = json.loads((out / "legend.json").read_text())
    camvid = get_label_space("camvid")
    assert legend["classes"][3] == {"id": 3, "name": "road", "color": list(camvid.palette[3])}
    assert [c["name"] for c in legend["classes"]] == list(camvid.class_names)
    assert legend["ignore"]["id"] == 255
    picture = np.asarray(Image.open(out / "legend.png"))
    assert picture.shape[0] == 20 * 11  # one 20-pixel row per class
    assert tuple(picture[20 * 3 + 10, 10]) == tuple(camvid.palette[3])  # road's swatch


def test_panels_show_image_truth_and_prediction(trained, tmp_path) -> None:
    run, data = trained
    out = tmp_path / "out"
    args = ["predict", str(data / "images"), "--checkpoint", str(run), "--out", str(out)]
    assert main([*args, "--masks", str(data / "masks")]) == 0
    palette = get_label_space("camvid").palette
    truth = np.asarray(Image.open(data / "masks" / "img_001.png"))
    pred = np.asarray(Image.open(out / "masks" / "img_001.png"))
    picture = np.asarray(Image.open(out / "img_001_panel.png"))
    h, w = truth.shape
    assert picture.shape == (h, 3 * w + 8, 3)
    np.testing.assert_array_equal(picture[:, :w], read_image(data / "images" / "img_001.png"))
    np.testing.assert_array_equal(picture[:, w + 4 : 2 * w + 4], colorize(truth, palette))
    np.testing.assert_array_equal(picture[:, 2 * w + 8 :], colorize(pred, palette))
    assert (picture[:, w : w + 4] == 255).all()


def test_missing_ground_truth_names_the_file(trained, tmp_path, capsys) -> None:
    run, data = trained
    masks = tmp_path / "masks"
    masks.mkdir()
    out = str(tmp_path / "out")
    args = ["predict", str(data / "images"), "--checkpoint", str(run), "--out", out]
    assert main([*args, "--masks", str(masks)]) == 2
    assert "img_000.png" in capsys.readouterr().err


def test_same_file_names_from_two_folders_stay_apart(trained, tmp_path) -> None:
    run, data = trained
    for sub, source in (("a", "img_000.png"), ("b", "img_001.png")):
        (tmp_path / sub).mkdir()
        shutil.copy(data / "images" / source, tmp_path / sub / "x.png")
    out = tmp_path / "out"
    args = [str(tmp_path / "a"), str(tmp_path / "b"), "--checkpoint", str(run), "--out", str(out)]
    assert main(["predict", *args]) == 0
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["a_x.png", "b_x.png"]
    for sub, source in (("a", "img_000.png"), ("b", "img_001.png")):
        ids = np.asarray(Image.open(out / "masks" / f"{sub}_x.png"))
        np.testing.assert_array_equal(ids, argmax_ids(run, data / "images" / source))


@pytest.mark.parametrize("where", ["export", "export/model.safetensors", "checkpoints/best.pt"])
def test_checkpoint_forms_give_the_same_masks(trained, tmp_path, where) -> None:
    run, data = trained
    images = str(data / "images")
    assert main(["predict", images, "--checkpoint", str(run), "--out", str(tmp_path / "r")]) == 0
    other = tmp_path / "o"
    assert main(["predict", images, "--checkpoint", str(run / where), "--out", str(other)]) == 0
    for mask in (tmp_path / "r" / "masks").iterdir():
        assert mask.read_bytes() == (other / "masks" / mask.name).read_bytes()
