"""`segshift list` (configs, label spaces, dataset options) and `segshift init` (own-data templates)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml

from segshift.cli import main
from segshift.config import load_config, packaged_configs
from segshift.data import label_space_from_classes
from segshift.engine.trainer import Trainer
from segshift.listing import config_description, option_help
from segshift.registry import DATASETS
from segshift.templates import EXAMPLE_CLASSES


def _sections(out: str) -> dict[str, dict[str, str]]:
    """``{heading's first word: {first column: row}}`` of ``segshift list``'s indented tables."""
    sections: dict[str, dict[str, str]] = {}
    for block in out.split("\n\n")[1:]:
        heading, *rows = block.splitlines()
        sections[heading.split()[0]] = {r.split()[0]: r for r in rows if r[2:3].strip()}
    return sections


def test_list_keeps_registry_lines_and_adds_configs_and_label_spaces(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["datasets", "models", "methods"]
    assert lines[0] == "datasets: camvid, cityscapes, folder, gta5, synthia, voc"
    sections = _sections(out)
    assert set(sections) == {"configs", "pipeline", "label", "dataset"}
    assert "labeled images only (supervised)" in sections["configs"]["own/supervised"]
    assert "recipes/gta5_cityscapes_dacs" in sections["configs"]
    assert "pipeline/demo" in sections["pipeline"] and "pipeline/demo" not in sections["configs"]
    spaces = {name: row.split()[1:] for name, row in sections["label"].items()}
    assert spaces["cityscapes"] == spaces["synthia19"] == ["19", "classes"]
    assert (spaces["camvid"], spaces["synthia16"]) == (["11", "classes"], ["16", "classes"])
    assert sections["dataset"]["voc"].split()[1:] == ["fit_masks,", "mask_dirs,", "remap"]


@pytest.mark.parametrize("dataset", DATASETS.names())
def test_every_dataset_option_is_described(dataset: str) -> None:
    undocumented = [name for name, text in option_help(dataset).items() if not text]
    assert undocumented == [], f"describe them in segshift.listing.OPTION_HELP['{dataset}']"


def test_list_dataset_prints_each_option(capsys) -> None:
    assert main(["list", "--dataset", "folder"]) == 0
    out = capsys.readouterr().out
    listed = {line.split()[0] for line in out.splitlines()[2:] if line[2:3] != " "}
    assert listed == set(option_help("folder")) >= {"classes", "mask_format", "void_colors"}
    assert main(["list", "--dataset", "foldr"]) == 2
    assert "did you mean 'folder'" in capsys.readouterr().err


def test_every_packaged_config_has_a_one_line_description() -> None:
    for path in packaged_configs().rglob("*.yaml"):
        text = config_description(path)
        assert 10 <= len(text) <= 98, f"{path}: first comment line {text!r}"


@pytest.mark.parametrize(
    ("method", "streams"),
    [
        ("supervised", ["labeled"]),
        ("fixmatch", ["labeled", "unlabeled"]),
        ("dacs", ["source", "target"]),
    ],
)
def test_init_writes_the_streams_of_the_method(method, streams, tmp_path, capsys) -> None:
    out = tmp_path / "mine"
    assert main(["init", str(out), "--method", method]) == 0
    cfg = load_config(out / "config.yaml")
    assert (cfg.method.name, cfg.name) == (method, f"own_{method}")
    assert list(cfg.data.streams) == streams
    assert (cfg.model.arch, cfg.train.iters, cfg.train.threads) == ("fast", 400, "auto")
    assert all(s.crop_size == [192, 256] for s in cfg.data.streams.values())
    assert yaml.safe_load((out / "classes.yaml").read_text()) == yaml.safe_load(EXAMPLE_CLASSES)


def test_init_refuses_to_overwrite_and_unknown_methods(tmp_path, capsys) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.yaml").write_text("mine: true\n")
    assert main(["init", str(out)]) == 2
    assert "already there, not overwritten" in capsys.readouterr().err
    assert (out / "config.yaml").read_text() == "mine: true\n"
    assert not (out / "classes.yaml").exists()
    assert main(["init", str(tmp_path / "b"), "--method", "uncertainty"]) == 2
    assert "no template reads its streams" in capsys.readouterr().err
    assert main(["init", str(tmp_path / "c"), "--method", "unimach"]) == 2
    assert "did you mean 'unimatch'" in capsys.readouterr().err


def test_example_classes_map_mask_values_as_documented() -> None:
    classes = yaml.safe_load(EXAMPLE_CLASSES)["classes"]
    space = label_space_from_classes("example", classes, "classes.yaml")
    assert space.class_names == ("background", "water", "vehicle")
    raw = np.array([[0, 1, 2, 3, 4, 9, 255]])
    assert space.encode(raw).tolist() == [[0, 1, 2, 2, 255, 255, 255]]


def test_template_works_as_a_base(tmp_path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        "base: own/uda\nname: harbour\ndata:\n  streams:\n    source: {root: sim}\n"
        "    target: {root: real}\n  val: {root: real_val}\ntrain: {iters: 50}\n"
    )
    cfg = load_config(mine)
    assert (cfg.name, cfg.method.name, cfg.train.iters) == ("harbour", "dacs", 50)
    assert (cfg.data.streams.source.root, cfg.data.streams.target.labeled) == ("sim", False)
    assert cfg.data.val.options.classes_from == "sim"  # the source's class list by default


def test_init_config_trains_two_steps_with_the_example_classes(
    tmp_path, folder_factory, capsys
) -> None:
    out = tmp_path / "mine"
    assert main(["init", str(out)]) == 0
    data = folder_factory(tmp_path / "data")  # masks hold ids 0-10 and 255
    shutil.copy(out / "classes.yaml", data / "classes.yaml")
    overrides = [
        f"data.streams.labeled.root={data}",
        f"data.val.root={data}",
        f"output_dir={tmp_path / 'runs'}",
        "data.num_workers=0",
        "data.streams.labeled.batch_size=2",
        "data.streams.labeled.crop_size=[32,32]",
        "train.iters=2",
        "train.eval_every=2",
        "train.accelerator=cpu",
        "train.progress=plain",
        "train.threads=1",
    ]
    trainer = Trainer(load_config(out / "config.yaml", overrides))
    metrics = trainer.fit()
    assert trainer.step == 2 and trainer.num_classes == 3
    assert len(metrics["iou"]) == 3
    assert (tmp_path / "runs" / "own_supervised" / "export").is_dir()
