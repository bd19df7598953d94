"""Bad input met by the trainer and the CLI: clear errors naming the file, nothing written lost."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from segshift.cli import main
from segshift.engine.checkpoint import load_checkpoint
from segshift.engine.trainer import Trainer
from segshift.errors import ConfigError, DataError


@pytest.mark.parametrize("workers", [0, 1])
def test_corrupt_image_mid_training_keeps_checkpoint(
    tiny_config, tiny_folder: Path, workers: int
) -> None:
    trainer = Trainer(
        tiny_config(
            "train.iters=40",
            "train.ckpt_every=2",
            "train.eval_every=0",
            f"data.num_workers={workers}",
        )
    )
    original = trainer.train_step
    calls = []

    def corrupt_after_two_steps():
        if len(calls) == 2:
            for image in (tiny_folder / "images").iterdir():
                image.write_bytes(image.read_bytes()[:40])  # truncate every image
        calls.append(1)
        return original()

    trainer.train_step = corrupt_after_two_steps
    with pytest.raises(DataError, match=r"^\S*img_\d+\.png: cannot read image") as caught:
        trainer.fit()
    assert "Traceback" not in str(caught.value)
    state, _ = load_checkpoint(trainer.run_dir / "checkpoints" / "latest.pt")
    # workers prefetch batches read before the damage, so the failure may come a few steps later
    assert state["step"] >= 2 and state["step"] % 2 == 0


def test_checkpoint_from_another_model(tiny_config, tmp_path: Path, capsys) -> None:
    trainer = Trainer(tiny_config())
    trainer.fit()
    other = tiny_config("model.encoder=resnet34")
    # Resuming names the changed key before any state is loaded.
    with pytest.raises(ConfigError, match="model.encoder: 'resnet18' -> 'resnet34'"):
        Trainer(other).resume(trainer.run_dir / "checkpoints" / "latest.pt")
    config = tmp_path / "other.yaml"
    from omegaconf import OmegaConf

    config.write_text(OmegaConf.to_yaml(other))
    code = main(["eval", str(config), "--checkpoint", str(trainer.run_dir)])
    assert code == 2
    assert "does not fit" in capsys.readouterr().err


def test_disk_full_while_predicting_names_file_and_keeps_earlier(
    tiny_config, tiny_folder: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    trainer = Trainer(tiny_config())
    trainer.fit()
    import segshift.fileio as fileio

    real_fdopen = fileio.os.fdopen
    opened = []

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()
            return False

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass

        def fileno(self):
            return self.handle.fileno()

    def fdopen(fd, mode="r", *args, **kwargs):
        handle = real_fdopen(fd, mode, *args, **kwargs)
        opened.append(1)
        # legend.json + legend.png, then 3 files per image (index mask, colour, overlay):
        # 2 images fit, the 3rd fails
        return FullDisk(handle) if len(opened) > 8 else handle

    monkeypatch.setattr(fileio.os, "fdopen", fdopen)
    out = tmp_path / "pred"
    code = main(
        [
            "predict",
            str(tiny_folder / "images"),
            "--checkpoint",
            str(trainer.run_dir),
            "--out",
            str(out),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "img_002_color.png" in err and "No space left" in err
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    earlier = [f"{stem}{suffix}" for stem in ("img_000", "img_001")
               for suffix in ("_color.png", "_overlay.png")]  # fmt: skip
    assert set(earlier + ["masks/img_000.png", "masks/img_001.png"]) <= set(written)
    assert "img_002_color.png" not in written  # the failed file is not left half-written
    assert not [name for name in written if ".tmp" in name or name.startswith(".")]


def test_missing_dataset_root_names_it(tiny_config, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=str(missing)):
        Trainer(tiny_config(f"data.streams.labeled.root={missing}", f"data.val.root={missing}"))


def test_mixed_image_sizes_in_a_batch_say_what_to_do(tiny_config, tiny_folder: Path) -> None:
    from PIL import Image

    for sub in ("images", "masks"):
        path = tiny_folder / sub / "img_001.png"
        with Image.open(path) as image:
            image.resize((48, 24), Image.NEAREST).save(path)
    # evaluation groups images by size (tests/evaluation/test_mixed_sizes.py); a training
    # stream without a crop cannot
    trainer = Trainer(
        tiny_config("data.streams.labeled.crop_size=null", "data.streams.labeled.batch_size=6")
    )
    trainer.setup_training()
    with pytest.raises(DataError, match=r"differ in size.*img_001.*batch_size: 1"):
        next(trainer.streams["labeled"])
