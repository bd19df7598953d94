import json

import pytest
import torch

from segshift.engine.checkpoint import (
    atomic_write,
    export_weights,
    load_checkpoint,
    previous_path,
    save_checkpoint,
)
from segshift.errors import CheckpointError


def test_save_keeps_previous_and_loads_latest(tmp_path) -> None:
    path = tmp_path / "latest.pt"
    save_checkpoint(path, {"step": 1, "w": torch.ones(2)})
    save_checkpoint(path, {"step": 2, "w": torch.zeros(2)})
    state, origin = load_checkpoint(path)
    assert state["step"] == 2 and origin == path
    assert torch.load(previous_path(path))["step"] == 1
    assert not list(tmp_path.glob(".*tmp*"))  # no temp file left behind


def test_corrupt_latest_falls_back_with_warning(tmp_path) -> None:
    path = tmp_path / "latest.pt"
    save_checkpoint(path, {"step": 1})
    save_checkpoint(path, {"step": 2})
    path.write_bytes(path.read_bytes()[:20])  # truncated
    with pytest.warns(RuntimeWarning, match="previous checkpoint"):
        state, origin = load_checkpoint(path)
    assert state["step"] == 1 and origin == previous_path(path)


def test_failed_write_leaves_old_checkpoint(tmp_path) -> None:
    path = tmp_path / "latest.pt"
    save_checkpoint(path, {"step": 1})

    def explode(handle) -> None:
        handle.write(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(path, explode)
    assert load_checkpoint(path)[0]["step"] == 1
    assert not list(tmp_path.glob(".*tmp*"))


def test_nothing_loadable(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path / "latest.pt")
    (tmp_path / "x.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="x.pt"):
        load_checkpoint(tmp_path / "x.pt", fallback=False)


def test_export_weights(tmp_path) -> None:
    from safetensors.torch import load_file

    model = torch.nn.Conv2d(3, 2, 1)
    export_weights(tmp_path / "export", model, {"arch": "conv"})
    tensors = load_file(str(tmp_path / "export" / "model.safetensors"))
    assert torch.equal(tensors["weight"], model.weight.detach())
    assert json.loads((tmp_path / "export" / "config.json").read_text()) == {"arch": "conv"}


def test_disk_full_is_one_clear_error_and_keeps_the_old_file(tmp_path) -> None:
    import errno

    from segshift.errors import WriteError
    from segshift.fileio import atomic_write, atomic_write_bytes

    target = atomic_write_bytes(tmp_path / "metrics.json", b"old")

    def full(handle):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteError, match=r"^cannot write .*metrics.json: No space left on device"):
        atomic_write(target, full)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left


def test_disk_full_during_training_exits_with_one_line(tiny_folder, tmp_path, capsys, monkeypatch):
    import errno

    import segshift.fileio as fileio
    from segshift.cli import main

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", full)
    args = ["train", "demo/source_only", f"data.streams.labeled.root={tiny_folder}"]
    args += [f"data.val.root={tiny_folder}", f"output_dir={tmp_path}", "data.num_workers=0"]
    args += ["data.streams.labeled.crop_size=[32,32]", "train.iters=2", "train.progress=plain"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write" in err[0] and "No space left on device" in err[0]
