"""Issue 25, messages that now help: the key that changed, inputs after options, one line for a
file that needs unpickling, a root that is a file."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segshift.cli import main
from segshift.engine.checkpoint import load_checkpoint
from segshift.errors import CheckpointError, ConfigError
from segshift.models.weights import read_state_dict


def test_resume_with_another_model_arch_names_the_key(run_copy, capsys) -> None:
    assert main(["train", "--resume", str(run_copy), "model.arch=unet", "train.iters=4"]) == 2
    err = capsys.readouterr().err
    assert "with a changed model.arch: 'fast' -> 'unet'" in err
    assert "state_dict" not in err and "Missing key" not in err


def test_eval_takes_overrides_after_its_options(trained, tmp_path: Path, capsys) -> None:
    run, data = trained
    config = run / "config.yaml"
    args = ["eval", str(config), "--checkpoint", str(run), f"data.val.root={data}"]
    assert main([*args, "--out", str(tmp_path / "ev"), "eval.flip=true"]) == 0
    assert (tmp_path / "ev" / "metrics.json").is_file()


def test_predict_takes_images_after_its_options(trained, tmp_path: Path) -> None:
    run, data = trained
    a, b = sorted((data / "images").iterdir())[:2]
    out = tmp_path / "pred"
    assert main(["predict", str(a), "--checkpoint", str(run), "--out", str(out), str(b)]) == 0
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{a.stem}.png", f"{b.stem}.png"]


class Code:
    def __reduce__(self):
        return (print, ("this would run",))


@pytest.mark.parametrize("payload", ["namespace", "code"])
def test_a_file_that_needs_unpickling_is_refused_in_one_line(tmp_path: Path, payload) -> None:
    weights = {"conv.weight": torch.zeros(2)}
    extra = argparse.Namespace(lr=0.1) if payload == "namespace" else Code()
    path = tmp_path / "legacy.pth"
    torch.save({"state_dict": weights, "args": extra}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(ConfigError) as caught:
        read_state_dict(path)
    message = str(caught.value)
    assert "\n" not in message and "possibly code" in message
    assert "weights_only=False); s = s.get('state_dict', s); save_file(" in message
    assert "add_safe_globals" not in message
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path, fallback=False)
    assert "\n" not in str(caught.value) and "possibly code" in str(caught.value)


def test_encoder_weights_needing_unpickling_through_train(
    folder_factory, train_args, tmp_path, capsys
) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "x": Code()}, path)
    data = folder_factory(tmp_path / "data")
    args = train_args(data, tmp_path / "runs", "evil", f"model.encoder_weights={path}")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "possibly code" in err


def test_a_root_that_is_a_file_is_not_a_directory(trained, tmp_path: Path, capsys) -> None:
    file = tmp_path / "val.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(file)
    assert main(["eval", str(trained[0]), f"data.val.root={file}"]) == 2
    assert f"folder root {file} is not a directory" in capsys.readouterr().err
