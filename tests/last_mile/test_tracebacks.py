"""Issue 25, tracebacks: each ends in one line naming the file or key, exit 2, nothing lost."""

from __future__ import annotations

import errno
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import segshift.engine.checkpoint as checkpoint_module
import segshift.fileio as fileio
from segshift.cli import main
from segshift.config import DatasetConfig
from segshift.data import build_dataset
from segshift.engine.checkpoint import load_checkpoint, save_checkpoint
from segshift.errors import DataError, WriteError


class FullDisk(io.FileIO):
    """A file whose writes fail as on a full disk."""

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_during_checkpoint_write_is_a_write_error(tmp_path: Path, monkeypatch) -> None:
    """torch.save swallows the OSError of its file and raises "unexpected pos": the error keeps
    its errno, names the file, the previous checkpoint stays and no temp file is left."""
    path = tmp_path / "latest.pt"
    save_checkpoint(path, {"step": 1})
    monkeypatch.setattr(fileio.os, "fdopen", lambda fd, mode: FullDisk(fd, "wb"))
    with pytest.raises(WriteError) as caught:
        save_checkpoint(path, {"step": 2, "w": np.zeros(4)})
    assert caught.value.errno == errno.ENOSPC
    assert str(caught.value).startswith(f"cannot write {path}: No space left on device")
    monkeypatch.undo()
    assert load_checkpoint(path, fallback=False)[0]["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt"]


def test_torch_runtime_error_at_save_ends_training_in_one_line(
    folder_factory, train_args, tmp_path: Path, monkeypatch, capsys
) -> None:
    def failing_save(state, handle) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(checkpoint_module.torch, "save", failing_save)
    data = folder_factory(tmp_path / "data")
    assert main(train_args(data, tmp_path / "runs", "full")) == 2
    err = capsys.readouterr().err
    assert "segshift train: error: cannot write" in err and "/checkpoints/" in err
    assert "is the disk full?" in err and "Traceback" not in err
    assert not list((tmp_path / "runs" / "full" / "checkpoints").glob(".*.tmp"))


@pytest.mark.parametrize("resume", [False, True])
def test_full_disk_at_the_run_lock(
    trained, run_copy, train_args, monkeypatch, capsys, resume
) -> None:
    def no_space(fd, data, offset) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "pwrite", no_space)
    before = sorted(p.name for p in run_copy.rglob("*"))
    args = (
        ["train", "--resume", str(run_copy)]
        if resume
        else train_args(trained[1], run_copy.parent, "new")
    )
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "cannot lock" in err and "No space left on device" in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in run_copy.rglob("*")) == before


def test_one_pixel_image(folder_factory, tmp_path: Path, capsys) -> None:
    """data check names a 1x1 image, and training's augmentation names its file."""
    data = folder_factory(tmp_path / "data", n=3)
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(data / "images" / "dot.png")
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(data / "masks" / "dot.png")
    assert main(["data", "check", str(data)]) == 1
    out = capsys.readouterr().out
    assert f"too small: {data / 'images' / 'dot.png'}: image 1x1 (HxW)" in out
    node = DatasetConfig(root=str(data), crop_size=[16, 16], scale_range=[0.5, 1.0])
    dataset = build_dataset(node, train=True)
    index = [s.name for s in dataset.files].index("dot")
    with pytest.raises(DataError, match=r"dot\.png: cannot augment this 1x1 \(HxW\) image"):
        for seed in range(8):
            dataset[index, seed]


def test_eval_out_an_existing_file(trained, tmp_path: Path, capsys) -> None:
    taken = tmp_path / "metrics"
    taken.write_text("mine")
    assert main(["eval", str(trained[0]), "--out", str(taken)]) == 2
    err = capsys.readouterr().err
    assert f"--out {taken}: {taken} exists and is not a directory" in err
    assert taken.read_text() == "mine"


def test_pseudo_label_bad_batch_size(trained, tmp_path: Path, capsys) -> None:
    args = ["pseudo-label", "--checkpoint", str(trained[0]), "--data", str(trained[1])]
    assert main([*args, "--out", str(tmp_path / "pl"), "--batch-size", "0"]) == 2
    assert "--batch-size: must be >= 1; got 0" in capsys.readouterr().err
    assert not (tmp_path / "pl").exists()


def test_pseudo_label_with_a_translation_run(trained, tmp_path: Path, capsys) -> None:
    """A CycleGAN run has no classes: "not a segmentation run", not a TypeError."""
    run = tmp_path / "gan"
    state = {"step": 2, "config": {"method": {"name": "cyclegan"}}, "label_space": None}
    save_checkpoint(run / "checkpoints" / "latest.pt", {**state, "method": {}})
    args = ["pseudo-label", "--checkpoint", str(run), "--data", str(trained[1])]
    assert main([*args, "--out", str(tmp_path / "pl")]) == 2
    err = capsys.readouterr().err
    assert "is not a segmentation run: method cyclegan trains no segmentation model" in err


def test_pseudo_label_names_a_corrupt_image(trained, folder_factory, tmp_path, capsys) -> None:
    data = folder_factory(tmp_path / "data", n=2)
    (data / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    Path(data / "masks" / "broken.png").write_bytes((data / "masks" / "img_000.png").read_bytes())
    args = ["pseudo-label", "--checkpoint", str(trained[0]), "--data", str(data)]
    assert main([*args, "--out", str(tmp_path / "pl"), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert f"{data / 'images' / 'broken.png'}: cannot read image" in err
    assert "Traceback" not in err
