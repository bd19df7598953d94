"""Concatenated datasets (``concat``): several roots read as one stream with one label space."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import assert_resume_exact, read_log
from segshift.cli import main
from segshift.config import DatasetConfig, load_config
from segshift.data import ConcatSegDataset, build_dataset
from segshift.data.concat import part_configs
from segshift.data.samplers import RareClassSampling, cached_class_pixel_counts
from segshift.errors import ConfigError

AUGMENTED = {"crop_size": [16, 16], "scale_range": [0.75, 1.25], "hflip": True, "photometric": True}


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _two_class_folder(root: Path, masks: list[np.ndarray], classes: str) -> Path:
    """A folder dataset with one image per mask (names m0, m1, ...) and ``classes`` (YAML)."""
    for i, mask in enumerate(masks):
        _write(root / "images" / f"m{i}.png", np.full((*mask.shape, 3), 40 * i, np.uint8))
        _write(root / "masks" / f"m{i}.png", mask)
    (root / "classes.yaml").write_text(classes)
    return root


def test_each_sample_is_the_parts_sample(folder_factory, tmp_path: Path) -> None:
    a = folder_factory(tmp_path / "a", n=3, seed=0)
    b = folder_factory(tmp_path / "b", n=2, seed=1)
    cfg = DatasetConfig(root=str(a), concat=[{"root": str(b), "domain": "translated"}], **AUGMENTED)
    dataset = build_dataset(cfg, train=True)
    alone = [
        build_dataset(DatasetConfig(root=str(a), **AUGMENTED), train=True),
        build_dataset(DatasetConfig(root=str(b), domain="translated", **AUGMENTED), train=True),
    ]
    assert isinstance(dataset, ConcatSegDataset) and len(dataset) == 5
    assert dataset.files == alone[0].files + alone[1].files
    assert dataset.parts_summary() == f"folder 3 + folder at {b} 2"
    places = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    for index, (k, local) in enumerate(places):
        for seed in (0, 7):
            sample, expected = dataset[index, seed], alone[k][local, seed]
            assert torch.equal(sample["image"], expected["image"])
            assert torch.equal(sample["label"], expected["label"])
            assert sample["name"] == expected["name"] and sample["domain"] == expected["domain"]
            assert sample["index"] == index  # the position in the concatenation
        assert np.array_equal(dataset.load_label(index), alone[k].load_label(local))
    assert dataset[-1, 3]["index"] == 4
    assert torch.equal(dataset[-1, 3]["image"], alone[1][1, 3]["image"])
    with pytest.raises(IndexError):
        dataset[5]


def test_entries_replace_the_streams_keys(folder_factory, tmp_path: Path) -> None:
    """Keys an entry leaves out are the stream's (n_labeled: 2 of each part); an entry's
    options replace the stream's whole."""
    a = folder_factory(tmp_path / "a", n=4, seed=0)
    b = folder_factory(tmp_path / "b", n=3, seed=1)
    cfg = DatasetConfig(
        root=str(a),
        n_labeled=2,
        options={"mask_format": "index"},
        concat=[{"root": str(b), "options": {"image_dir": "images"}}],
    )
    parts = part_configs(cfg)
    assert [p.root for p in parts] == [str(a), str(b)]
    assert [p.n_labeled for p in parts] == [2, 2] and all(p.concat is None for p in parts)
    assert [dict(p.options) for p in parts] == [{"mask_format": "index"}, {"image_dir": "images"}]
    assert len(build_dataset(cfg, train=False)) == 4


def test_label_spaces_must_match_and_remap_makes_them(folder_factory, tmp_path: Path) -> None:
    a = folder_factory(tmp_path / "a", n=2)  # camvid's 11 classes
    mask = np.zeros((8, 8), np.uint8)
    mask[4:] = 1  # top half road (0), bottom half sky (1)
    b = _two_class_folder(tmp_path / "b", [mask], "classes: [road, sky]\n")
    with pytest.raises(ConfigError) as error:
        build_dataset(DatasetConfig(root=str(a), concat=[{"root": str(b)}]), train=False)
    message = str(error.value)
    assert f"folder at {a} (split train) has 'camvid' (11 classes: sky, building," in message
    assert f"folder at {b} (split train) has" in message and "2 classes: road, sky)" in message
    assert "options.remap" in message

    remapped = {"root": str(b), "options": {"remap": {"classes": "camvid"}}}
    dataset = build_dataset(DatasetConfig(root=str(a), concat=[remapped]), train=False)
    expected = np.where(mask == 0, 3, 0)  # camvid: road 3, sky 0
    assert np.array_equal(dataset.load_label(2), expected)


@pytest.mark.parametrize(
    ("entry", "key", "says"),
    [
        ("{root: /b, crop_size: [8, 8]}", "concat[0].crop_size", "set 'crop_size' on the stream"),
        ("{root: /b, rcs_temperature: 0.1}", "concat[0].rcs_temperature", "the stream's"),
        ("{root: /b}, {rot: /c}", "concat[1].rot", "not a dataset key (did you mean 'root'?)"),
        ("{root: /b, n_labeled: 0}", "concat[0].n_labeled", "an integer >= 1 or null, got 0"),
        ("{root: /b, labeled: false}", "concat[0].labeled", "labeled, or unlabeled, as the"),
        ("{root: /b, concat: []}", "concat[0].concat", "a part has no parts"),
    ],
)
def test_bad_entries_name_the_dotted_key(entry: str, key: str, says: str) -> None:
    overrides = ["data.streams.labeled.root=/a", f"data.streams.labeled.concat=[{entry}]"]
    with pytest.raises(ConfigError) as error:
        load_config("demo/source_only", overrides)
    assert f"command line: bad value for config key 'data.streams.labeled.{key}'" in str(
        error.value
    )
    assert says in str(error.value)


def test_concat_must_be_a_list_of_mappings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'data.val.concat': expected a list of dataset"):
        load_config("demo/source_only", ["data.val.concat={root: /b}"])
    with pytest.raises(ConfigError, match=r"'concat\[0\].batch_size'"):  # built in code
        build_dataset(DatasetConfig(root=str(tmp_path), concat=[{"batch_size": 2}]), train=True)


def test_rare_class_sampling_counts_each_part_once(tmp_path: Path) -> None:
    road = np.zeros((8, 8), np.uint8)
    car = road.copy()
    car[:3, :3] = 1  # 9 car pixels
    classes = "classes: [road, car]\n"
    a = _two_class_folder(tmp_path / "a", [road, road], classes)
    b = _two_class_folder(tmp_path / "b", [car], classes)
    rcs = {"rcs_temperature": 0.01, "rcs_min_pixels": 4, "crop_size": [6, 6]}
    dataset = build_dataset(DatasetConfig(root=str(a), concat=[{"root": str(b)}], **rcs), True)
    cache = tmp_path / "rcs"
    counts = cached_class_pixel_counts(dataset, cache)
    assert counts == [{0: 64}, {0: 64}, {0: 55, 1: 9}]
    assert len(list(cache.glob("folder-*.json"))) == 2  # one file per part
    sampling = RareClassSampling.from_counts(counts, temperature=0.01, min_pixels=4)
    assert sampling.samples[sampling.classes.index(1)] == (2,)  # the global index of b's image
    alone = build_dataset(DatasetConfig(root=str(b), **rcs), True)
    assert torch.equal(dataset[2, 5, 1]["label"], alone[0, 5, 1]["label"])


def test_training_on_a_concatenated_stream_resumes_exactly(
    tiny_config, folder_factory, tmp_path: Path, capsys
) -> None:
    extra = folder_factory(tmp_path / "translated", n=4, seed=3)
    concat = f"[{{root: {extra}}}]"
    straight, resumed = assert_resume_exact(
        tiny_config,
        tmp_path,
        f"data.streams.labeled.concat={concat}",
        "data.streams.labeled.rcs_temperature=0.5",
        "data.streams.labeled.rcs_min_pixels=50",
        f"data.val.concat={concat}",
    )
    out = capsys.readouterr().out
    assert (
        f"data.streams.labeled: 10 labeled images (folder 6 + folder at {extra} 4), 2 per step"
        in out
    )
    assert len(resumed.streams["labeled"].dataset) == 10
    assert len(list((resumed.run_dir / "rcs").glob("folder-*.json"))) == 2
    assert straight.val_report.images == 10  # data.val concatenated too, and evaluated
    assert [r["step"] for r in read_log(straight.run_dir) if r["kind"] == "eval"] == [2, 4]


def test_data_check_scans_each_part(tmp_path: Path) -> None:
    classes = "classes: [road, car]\n"
    good = np.zeros((8, 8), np.uint8)
    bad = good.copy()
    bad[0] = 7  # not a class
    a = _two_class_folder(tmp_path / "a", [good], classes)
    b = _two_class_folder(tmp_path / "b", [good, bad], classes)
    c = _two_class_folder(tmp_path / "c", [good], "classes: [road, car, tree]\n")
    config = tmp_path / "check.yaml"
    config.write_text(
        "base: demo/base.yaml\n"
        f"data:\n  streams:\n    labeled:\n      root: {a}\n"
        f"      concat: [{{root: {b}}}, {{root: {c}}}]\n"
        f"  val: {{root: {a}}}\n"
    )
    out = tmp_path / "report.json"
    assert main(["data", "check", str(config), "--json", str(out)]) == 1
    sets = {s["name"]: s for s in json.loads(out.read_text())["sets"]}
    names = ["data.streams.labeled", "data.streams.labeled.concat[0]"]
    assert list(sets) == [*names, "data.streams.labeled.concat[1]", "data.val"]
    assert [sets[n]["images"] for n in sets] == [1, 2, 1, 1]
    assert [sets[n]["root"] for n in sets] == [str(a), str(b), str(c), str(a)]
    assert sets[names[0]]["problems"] == []
    [unknown] = sets[names[1]]["problems"]
    assert (unknown["kind"], unknown["value"]) == ("unknown id", "7")
    assert unknown["files"] == [str(b / "masks" / "m1.png")]
    [space] = sets["data.streams.labeled.concat[1]"]["problems"]
    assert space["kind"] == "label space" and "3 classes: road, car, tree" in space["messages"][0]
