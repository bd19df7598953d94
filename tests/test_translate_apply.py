"""`segshift translate apply`: the translated copy of a dataset in its own layout (names, masks,
metadata, sizes), readable by the same config with root=OUT; its manifest, resume after an
interruption, and refusals. One tiny translation run (ngf 8, 1 block, 1 step) serves them all."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import segshift.pipeline.translate_apply as translate
from segshift.cli import main
from segshift.config import DatasetConfig, merge_into_schema
from segshift.data import build_dataset
from segshift.data.io import read_image
from segshift.errors import ConfigError, DataError
from segshift.models.cyclegan import from_gan_range, to_gan_range
from segshift.pipeline.translate_apply import apply_translation, load_generator

SMALL = (26, 38)  # not a multiple of 4: the generator pads inside and crops back
NAMES = ["img_000", "img_001", "img_002", "img_003", "small_0", "small_1"]
MANIFEST = "translation.json"


def tiny_translation(data: Path, out: Path) -> list[str]:
    streams = ("source", "target")
    return [
        *(f"data.streams.{s}.root={data}" for s in streams),
        *(f"data.streams.{s}.crop_size=[24,24]" for s in streams),
        f"output_dir={out}",
        "name=cyclegan",
        "data.num_workers=0",
        "train.iters=1",
        "train.eval_every=1",
        "train.progress=plain",
        "method.params.ngf=8",
        "method.params.n_blocks=1",
        "method.params.ndf=8",
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory, folder_factory) -> tuple[Path, list[str]]:
    """(translation run directory, the overrides that trained it)."""
    base = tmp_path_factory.mktemp("translation")
    overrides = tiny_translation(folder_factory(base / "data", n=2), base / "runs")
    assert main(["translate", "train", "translate/synthcity", *overrides]) == 0
    return base / "runs" / "cyclegan", overrides


@pytest.fixture
def two_sizes(folder_factory, tmp_path) -> Path:
    """A labeled folder root with split files: 4 images of 32x40 and 2 of 26x38 (train: 4,
    val: 2, one of each size)."""
    root = folder_factory(tmp_path / "data", n=4)
    extra = folder_factory(tmp_path / "extra", n=2, size=SMALL, seed=1)
    for kind in ("images", "masks"):
        for k in range(2):
            (extra / kind / f"img_{k:03d}.png").rename(root / kind / f"small_{k}.png")
    (root / "train.txt").write_text("img_000\nimg_001\nimg_002\nsmall_0\n")
    (root / "val.txt").write_text("img_003\nsmall_1\n")
    return root


def translated(generator: torch.nn.Module, image: Path) -> np.ndarray:
    """The generator's translation of one image, computed here: (H, W, 3) uint8."""
    x = to_gan_range(torch.from_numpy(read_image(image)).permute(2, 0, 1)[None].float() / 255)
    with torch.no_grad():
        y = from_gan_range(generator(x))[0].clamp(0, 1)
    return (y * 255).round().byte().permute(1, 2, 0).numpy()


def files(root: Path, pattern: str = "*") -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(pattern) if p.is_file())


def test_apply_mirrors_a_folder_dataset_with_its_masks_and_split_files(
    run, two_sizes, tmp_path, capsys
) -> None:
    run_dir, _ = run
    out = tmp_path / "out"
    args = ["--checkpoint", str(run_dir), "--data", str(two_sizes), "--out", str(out)]
    options = ["--batch-size", "3", "--workers", "0", "--device", "cpu"]  # fp32, as below
    assert main(["translate", "apply", *args, *options]) == 0
    printed = capsys.readouterr().out
    assert "translated 6 images, skipped 0" in printed and "6 masks" in printed

    names = [f"{kind}/{name}.png" for kind in ("images", "masks") for name in NAMES]
    metadata = [".lock", "classes.yaml", "train.txt", "val.txt", MANIFEST]  # .lock: emptied
    assert files(out) == sorted([*names, *metadata])
    generator, weights = load_generator(run_dir, "source_to_target")
    for name in NAMES:
        source, copy = two_sizes / "images" / f"{name}.png", out / "images" / f"{name}.png"
        assert (out / "masks" / f"{name}.png").read_bytes() == (
            two_sizes / "masks" / f"{name}.png"
        ).read_bytes()
        pixels = read_image(copy)
        assert pixels.shape == read_image(source).shape  # own size, 32x40 or 26x38
        assert not np.array_equal(pixels, read_image(source))
        # PNG is lossless: exactly the generator's output (batched: within one level)
        assert np.abs(pixels.astype(int) - translated(generator, source)).max() <= 1
    for text in ("classes.yaml", "train.txt", "val.txt"):
        assert (out / text).read_bytes() == (two_sizes / text).read_bytes()

    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["checkpoint"] == str((run_dir / "export" / "model.safetensors").resolve())
    assert weights == run_dir / "export" / "model.safetensors"
    assert manifest["checkpoint_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert manifest["direction"] == "source_to_target"
    assert manifest["roots"] == [str(two_sizes)]
    assert [(d["set"], d["split"], d["labeled"]) for d in manifest["data"]] == [
        ("split train", "train", True),
        ("split val", "val", True),
    ]
    counts = {k: manifest[k] for k in ("images", "translated", "skipped", "masks", "complete")}
    assert counts == {"images": 6, "translated": 6, "skipped": 0, "masks": 6, "complete": True}
    assert manifest["seconds_per_image"] > 0 and manifest["precision"] == "fp32"

    # the same dataset node with root=OUT reads the same samples and labels
    for split in ("train", "val"):
        node = {"name": "folder", "root": str(two_sizes), "split": split}
        original = build_dataset(merge_into_schema(DatasetConfig(), node), train=False)
        copied = build_dataset(
            merge_into_schema(DatasetConfig(), node, {"root": str(out)}), train=False
        )
        assert [f.name for f in copied.files] == [f.name for f in original.files]
        for i in range(len(original)):
            assert np.array_equal(copied.load_label(i), original.load_label(i))

    # a rerun skips everything; a directory and a config of the same root are the same data
    assert main(["translate", "apply", *args, "--workers", "0"]) == 0
    assert "translated 0 images, skipped 6" in capsys.readouterr().out


def test_apply_translates_the_source_stream_of_the_translation_config(run, tmp_path) -> None:
    run_dir, overrides = run
    out = tmp_path / "out"
    summary = apply_translation(
        run_dir / "export", "translate/synthcity", out, overrides=overrides, num_workers=0
    )
    assert (summary["images"], summary["translated"], summary["masks"]) == (2, 2, 2)
    assert summary["data"][0]["set"] == "translate/synthcity: data.streams.source"
    assert files(out, "*.png") == [
        "images/img_000.png", "images/img_001.png", "masks/img_000.png", "masks/img_001.png",
    ]  # fmt: skip


@pytest.mark.parametrize("dataset", ["camvid", "gta5"])
def test_apply_keeps_camvid_and_gta5_layouts(
    run, dataset, make_camvid, make_gta5, tmp_path
) -> None:
    root = make_camvid() if dataset == "camvid" else make_gta5()
    out = tmp_path / "out"
    node = {"name": dataset, "root": str(root), "split": "train"}
    summary = apply_translation(run[0], node, out, batch_size=2, num_workers=0)
    original = build_dataset(merge_into_schema(DatasetConfig(), node), train=False)
    copied = build_dataset(merge_into_schema(DatasetConfig(), node, {"root": str(out)}), False)
    assert summary["translated"] == len(original) == len(copied) > 0
    assert summary["data"][0]["set"] == "data" and summary["data"][0]["name"] == dataset
    for a, b in zip(original.files, copied.files, strict=True):
        assert b.image.relative_to(out) == a.image.relative_to(root)  # camvid: train/images/*.jpg
        assert b.mask.read_bytes() == a.mask.read_bytes()
        assert read_image(b.image).shape == read_image(a.image).shape


def test_an_interrupted_apply_resumes_where_it_stopped(run, two_sizes, tmp_path, monkeypatch):
    run_dir, k = run[0], 4
    out, encode, calls = tmp_path / "out", translate.encode_image, []

    def fail_after_k(pixels, suffix):
        calls.append(suffix)
        if len(calls) > k:
            raise KeyboardInterrupt  # Ctrl-C while a file is being written
        return encode(pixels, suffix)

    monkeypatch.setattr(translate, "encode_image", fail_after_k)
    with pytest.raises(KeyboardInterrupt):
        apply_translation(run_dir, two_sizes, out, batch_size=1, num_workers=0)
    assert len(files(out, "images/*")) == k and not files(out, "*.tmp")
    assert json.loads((out / MANIFEST).read_text())["complete"] is False

    monkeypatch.setattr(translate, "encode_image", encode)
    summary = apply_translation(run_dir, two_sizes, out, batch_size=1, num_workers=0)
    assert (summary["skipped"], summary["translated"], summary["complete"]) == (k, 2, True)
    assert files(out, "images/*") == [f"images/{name}.png" for name in NAMES]
    assert not files(out, "*.tmp")


def test_out_of_another_direction_is_refused_unless_overwrite(run, two_sizes, tmp_path) -> None:
    out = tmp_path / "out"
    apply_translation(run[0], two_sizes, out, num_workers=0)
    first = read_image(out / "images" / "img_000.png")
    with pytest.raises(ConfigError, match=f"--out {out} holds a translation of another direction"):
        apply_translation(run[0], two_sizes, out, direction="target_to_source", num_workers=0)
    summary = apply_translation(
        run[0], two_sizes, out, direction="target_to_source", num_workers=0, overwrite=True
    )
    assert (summary["translated"], summary["skipped"]) == (6, 0)
    assert not np.array_equal(read_image(out / "images" / "img_000.png"), first)


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory, folder_factory) -> Path:
    base = tmp_path_factory.mktemp("segmenter")
    data = folder_factory(base / "data", n=2)
    args = [f"data.streams.labeled.root={data}", f"data.val.root={data}", f"output_dir={base}"]
    args += ["name=seg", "train.iters=1", "train.eval_every=1", "data.num_workers=0"]
    args += ["data.streams.labeled.crop_size=[32,32]", "train.progress=plain"]
    assert main(["train", "demo/source_only", *args]) == 0
    return base / "seg"


def test_refusals_name_the_path(
    run, segmenter, two_sizes, folder_factory, tmp_path, capsys
) -> None:
    out = tmp_path / "out"

    def refused(checkpoint, data, *extra) -> str:
        args = ["--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out)]
        assert main(["translate", "apply", *args, *extra]) == 2
        return capsys.readouterr().err

    err = refused(segmenter, two_sizes)
    assert f"{segmenter / 'export' / 'model.safetensors'}: not an image-translation run" in err
    assert "method 'supervised' trains a segmenter" in err
    missing = tmp_path / "no_run"
    assert f"--checkpoint {missing}: no exported generators" in refused(missing, two_sizes)
    assert f"{tmp_path / 'no_data'}: neither a dataset directory nor a config file" in refused(
        run[0], tmp_path / "no_data"
    )
    assert "--stream picks a stream of a config" in refused(run[0], two_sizes, "--stream", "val")
    assert "is the dataset root itself" in refused(run[0], two_sizes, "--out", str(two_sizes))
    plain = folder_factory(tmp_path / "plain", n=1)
    (plain / "images").rename(tmp_path / "pics")
    outside = {"name": "folder", "root": str(plain), "options": {"image_dir": "../pics"}}
    with pytest.raises(DataError, match="img_000.png: outside the dataset root"):
        apply_translation(run[0], outside, out, num_workers=0)
    (out / "notes.txt").parent.mkdir()
    (out / "notes.txt").write_text("mine")
    assert f"--out {out}: holds files but no translation.json" in refused(run[0], two_sizes)
    assert not (out / MANIFEST).exists()
