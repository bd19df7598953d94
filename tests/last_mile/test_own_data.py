"""Issue 25, a new user's own data (KITTI + CARLA folders): what needed three scripts."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from segshift.cli import main
from segshift.config import DatasetConfig, load_config, packaged_configs
from segshift.data import build_dataset
from segshift.errors import DataError
from segshift.pipeline.loop import load_pipeline_config
from segshift.pipeline.predict import predict_images
from segshift.pipeline.report import write_summary


def test_masks_of_another_size_are_fitted_on_request(folder_factory, tmp_path, capsys) -> None:
    data = folder_factory(tmp_path / "kitti", n=3)
    mask = data / "masks" / "img_001.png"
    original = np.array(Image.open(mask))
    Image.fromarray(original[:, :-2]).save(mask)  # 38 wide, the image 40
    with pytest.raises(DataError, match="options.fit_masks: true resizes masks"):
        build_dataset(DatasetConfig(root=str(data)), train=False).load(1)
    node = DatasetConfig(root=str(data), options={"fit_masks": True})
    image, label = build_dataset(node, train=False).load(1)
    assert label.shape == image.shape[:2] == (32, 40)
    assert np.array_equal(label[:, 0], original[:, 0])
    assert main(["data", "check", str(data), "options.fit_masks=true"]) == 0
    assert "split all: 1 mask(s) resized (nearest) to their image's size" in capsys.readouterr().out


def channel_masks(data: Path, out: Path) -> Path:
    """The folder's masks as CARLA writes them: the class id in R of an RGB file."""
    out.mkdir(parents=True)
    for mask in (data / "masks").iterdir():
        ids = np.array(Image.open(mask))
        rgb = np.stack([ids, np.full_like(ids, 7), np.full_like(ids, 200)], axis=-1)
        Image.fromarray(rgb).save(out / mask.name)
    return out


def test_predict_reads_masks_as_the_dataset_does(trained, tmp_path: Path) -> None:
    run, data = trained
    carla = tmp_path / "carla"
    shutil.copytree(data / "images", carla / "images")
    shutil.copy(data / "classes.yaml", carla / "classes.yaml")
    channel_masks(data, carla / "masks")
    images = sorted((carla / "images").iterdir())[:2]
    overrides = [f"data.val.root={carla}", "data.val.options={mask_format: channel}"]
    out = tmp_path / "pred"
    predict_images(images, run, out, overrides=overrides, masks=carla / "masks")
    assert sorted(p.name for p in out.glob("*_panel.png")) == [
        f"{p.stem}_panel.png" for p in images
    ]
    # checked before writing: a missing mask for the second image writes nothing at all
    (carla / "masks" / f"{images[1].stem}.png").unlink()
    with pytest.raises(DataError, match=f"no mask for {images[1].stem}"):
        predict_images(images, run, tmp_path / "none", overrides=overrides, masks=carla / "masks")
    assert not (tmp_path / "none").exists()


def test_parts_sharing_names(trained, folder_factory, tmp_path: Path, capsys) -> None:
    """KITTI training/000000_10 and testing/000000_10 in one stream: data check says so, and
    pseudo-labels name them by their folders instead of failing after the teacher trained."""
    training = folder_factory(tmp_path / "training", n=2, seed=1)
    testing = folder_factory(tmp_path / "testing", n=2, seed=2)
    cfg = tmp_path / "kitti.yaml"
    node = {"name": "folder", "root": str(training), "labeled": False}
    node["concat"] = [{"root": str(testing)}]
    cfg.write_text(OmegaConf.to_yaml({"data": {"streams": {"target": node}}}))
    assert main(["data", "check", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "data.streams.target.concat[0]: shared names: 2 sample name(s)" in out
    args = ["pseudo-label", "--checkpoint", str(trained[0]), "--data", str(cfg)]
    assert main([*args, "--out", str(tmp_path / "pl"), "--workers", "0"]) == 0
    masks = sorted(p.name for p in (tmp_path / "pl" / "masks").iterdir())
    assert masks == [
        f"{part}_images_img_00{i}.png" for part in ("testing", "training") for i in (0, 1)
    ]


def test_own_config_chain_on_a_template(tmp_path: Path) -> None:
    (tmp_path / "uda.yaml").write_text("base: own/uda\nname: kitti\ntrain: {iters: 50}\n")
    (tmp_path / "dacs.yaml").write_text("base: uda.yaml\nname: kitti_dacs\n")
    cfg = load_config(tmp_path / "dacs.yaml")
    assert (cfg.name, cfg.train.iters, cfg.method.name) == ("kitti_dacs", 50, "dacs")


def test_an_image_only_part_needs_no_classes(folder_factory, tmp_path: Path) -> None:
    labeled_root = folder_factory(tmp_path / "camvid", n=2)  # has classes.yaml
    plain = tmp_path / "plain"
    plain.mkdir()
    Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(plain / "frame.png")
    node = DatasetConfig(root=str(labeled_root), labeled=False, concat=[{"root": str(plain)}])
    dataset = build_dataset(node, train=False)
    assert len(dataset) == 3 and dataset.label_space.num_classes == 11
    first = DatasetConfig(root=str(plain), labeled=False, concat=[{"root": str(labeled_root)}])
    assert build_dataset(first, train=False).label_space.name == "camvid"


def test_eval_and_train_say_which_checkpoint(trained, tmp_path: Path, capsys) -> None:
    run = trained[0]
    assert main(["eval", str(run), "--out", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    best = run / "checkpoints" / "best.pt"
    assert f"scored {best} (step " in out and "this score is optimistic" in out
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["checkpoint"] == str(best) and metrics["step"] in (1, 2)
    latest = run / "checkpoints" / "latest.pt"
    assert main(["eval", str(latest), "--out", str(tmp_path / "ev2")]) == 0
    assert f"scored {latest} (step 2)" in capsys.readouterr().out
    assert json.loads((tmp_path / "ev2" / "metrics.json").read_text())["step"] == 2


def test_train_says_final_miou_is_latest(folder_factory, train_args, tmp_path, capsys) -> None:
    data = folder_factory(tmp_path / "data")
    assert main(train_args(data, tmp_path / "runs", "final")) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("final mIoU")][0]
    assert "(checkpoints/latest.pt, step 2)" in line


def test_labels_take_one_shape(trained, tmp_path: Path, capsys) -> None:
    """--labels CONFIG without the pseudo-labeled stream uses its data.val; the pipeline's
    labels take a path as well as a mapping."""
    run, data = trained
    args = ["pseudo-label", "--checkpoint", str(run), "--data", str(data), "--workers", "0"]
    assert main([*args, "--out", str(tmp_path / "pl"), "--labels", str(run / "config.yaml")]) == 0
    assert "against ground truth: pixel accuracy" in capsys.readouterr().out
    cfg = load_pipeline_config("pipeline/demo", [f"pipeline.pseudo_label.labels={data}"])
    assert cfg.pipeline.pseudo_label.labels == str(data)


def test_config_prints_a_pipeline_config(capsys) -> None:
    assert main(["config", "pipeline/demo", "pipeline.rounds=3"]) == 0
    printed = OmegaConf.create(capsys.readouterr().out)
    assert printed.pipeline.rounds == 3 and printed.pipeline.teacher.config == "uda/fda"


def test_summary_compares_stages_over_one_class_set(tmp_path: Path) -> None:
    """Class 2 is absent from val: the teacher predicted it (IoU 0), the student did not (NaN);
    both are compared over the classes of the validation labels."""
    nan = math.nan
    results = {
        "teacher": {"kind": "train", "method": "dacs", "miou": 0.4, "iou": [0.6, 0.6, 0.0],
                    "val_classes": [0, 1]},
        "student_1": {"kind": "train", "method": "supervised", "miou": 0.5, "iou": [0.5, 0.5, nan],
                      "val_classes": [0, 1]},
    }  # fmt: skip
    rows = write_summary(tmp_path, results, OmegaConf.create({"name": "x"}))["rows"]
    assert [r["miou"] for r in rows] == pytest.approx([0.6, 0.5])
    assert [r["miou_run"] for r in rows] == [0.4, 0.5]
    assert "over the same 2 classes for every stage" in (tmp_path / "summary.md").read_text()
    for result in results.values():  # stages recorded before val_classes: classes with an IoU
        del result["val_classes"]
    rows = write_summary(tmp_path, results, OmegaConf.create({"name": "x"}))["rows"]
    assert [r["miou"] for r in rows] == pytest.approx([0.6, 0.5])


def test_small_template_items(folder_factory, tmp_path: Path, capsys) -> None:
    text = (packaged_configs() / "own" / "uda.yaml").read_text()
    assert "method.name=dacs" in text
    command = text.split("The source alone, to compare: ")[1].split("(null")[0]
    source, val = folder_factory(tmp_path / "sim"), folder_factory(tmp_path / "val", seed=3)
    overrides = command.replace("#", " ").split() + [
        f"data.streams.source.root={source}",
        f"data.val.root={val}",
        f"output_dir={tmp_path}",
        "data.num_workers=0",
        "data.streams.source.crop_size=[32,32]",
        "train.iters=1",
        "train.eval_every=0",
        "train.progress=plain",
    ]
    from segshift.engine.trainer import Trainer

    Trainer(load_config("own/uda", overrides)).fit()
    assert "WARNING" not in capsys.readouterr().out
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert "best.prev.pt" in readme
