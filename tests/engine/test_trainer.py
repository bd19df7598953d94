"""End-to-end behaviour of the trainer on a tiny folder dataset (CPU)."""

from __future__ import annotations

import math

import pytest
import torch

from helpers import assert_resume_exact, every_stream, method_overrides, read_log
from segshift.engine.checkpoint import load_checkpoint
from segshift.engine.trainer import Trainer
from segshift.errors import ConfigError, TrainingError, TrainingInterrupted
from segshift.registry import METHODS


def test_fit_writes_run_directory(tiny_config) -> None:
    trainer = Trainer(tiny_config())
    metrics = trainer.fit()
    run = trainer.run_dir
    assert (run / "config.yaml").is_file()
    assert (run / "checkpoints" / "latest.pt").is_file()
    assert (run / "checkpoints" / "latest.prev.pt").is_file()  # step 2 kept when step 4 landed
    assert (run / "checkpoints" / "best.pt").is_file()
    assert (run / "export" / "model.safetensors").is_file()
    assert list((run / "tb").iterdir())
    records = read_log(run)
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert all(math.isfinite(r["loss"]) for r in train)
    assert [r["step"] for r in evals] == [2, 4]
    assert 0.0 <= metrics["miou"] <= 1.0
    assert load_checkpoint(run / "checkpoints" / "latest.pt")[0]["step"] == 4


def test_lr_follows_poly_schedule(tiny_config) -> None:
    trainer = Trainer(tiny_config("optim.lr=0.01", "optim.head_lr_mult=10"))
    trainer.fit()
    train = [r for r in read_log(trainer.run_dir) if r["kind"] == "train"]
    # logged after each step: lr = 0.01 * (1 - step/4)^0.9 for the backbone group
    for record in train:
        expected = 0.01 * (1 - record["step"] / 4) ** 0.9
        assert record["lr"] == pytest.approx(expected)
    head = trainer.optimizers["model"].param_groups[1]
    assert head["initial_lr"] == pytest.approx(0.1)


@pytest.mark.parametrize("method", METHODS.names())
def test_resume_is_exact(method, tiny_config, tiny_folder, tmp_path) -> None:
    assert_resume_exact(
        tiny_config, tmp_path, *method_overrides(method), *every_stream(tiny_folder)
    )


def test_non_finite_loss_stops_and_keeps_checkpoint(tiny_config, monkeypatch) -> None:
    cfg = tiny_config("train.iters=6", "train.max_nonfinite=2")
    trainer = Trainer(cfg)
    original = trainer.method.training_step

    def poisoned(batch, step):
        out = original(batch, step)
        if step >= 2:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(trainer.method, "training_step", poisoned)
    with pytest.raises(
        TrainingError, match=r"non-finite.*2 consecutive steps: steps 3 to 4.*img_.*holds step 2"
    ):
        trainer.fit()
    state, _ = load_checkpoint(trainer.run_dir / "checkpoints" / "latest.pt")
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["method"].values() if v.is_floating_point())


def test_signal_writes_checkpoint_then_resume(tiny_config) -> None:
    trainer = Trainer(tiny_config("train.iters=6", "train.ckpt_every=100"))
    original = trainer.method.training_step

    def signalled(batch, step):
        if step == 2:
            trainer._on_signal(15, None)  # what SIGTERM's handler does
        return original(batch, step)

    trainer.method.training_step = signalled
    with pytest.raises(TrainingInterrupted, match=r"SIGTERM at step 3") as caught:
        trainer.fit()
    assert caught.value.exit_code == 143
    state, _ = load_checkpoint(trainer.run_dir / "checkpoints" / "latest.pt")
    assert state["step"] == 3
    again = Trainer(tiny_config("train.iters=6", "train.ckpt_every=100"))
    again.fit()
    assert again.step == 6


def test_missing_stream_is_a_config_error(tiny_config) -> None:
    with pytest.raises(ConfigError, match=r"data\.streams\.unlabeled.*streams: labeled"):
        Trainer(tiny_config("method.params.stream=unlabeled"))


def test_gradient_clipping_bounds_the_update(tiny_config) -> None:
    cfg = tiny_config(
        "optim.name=sgd", "optim.lr=0.01", "optim.momentum=0", "optim.weight_decay=0",
        "optim.clip_grad_norm=1e-6", "schedule.name=constant", "train.iters=3",
        "train.eval_every=0",
    )  # fmt: skip
    trainer = Trainer(cfg)
    before = [p.detach().clone() for p in trainer.method.parameters()]
    trainer.fit()
    moved = torch.sqrt(
        sum(((p.detach() - b) ** 2).sum() for p, b in zip(trainer.method.parameters(), before))
    )
    assert 0 < moved <= 3 * 0.01 * 1e-6 * 1.0001  # each SGD step moves at most lr * max_norm


def test_bf16_autocast_on_cpu(tiny_config) -> None:
    trainer = Trainer(tiny_config("train.precision=bf16-mixed", "train.iters=2"))
    metrics = trainer.fit()
    records = [r for r in read_log(trainer.run_dir) if r["kind"] == "train"]
    assert all(math.isfinite(r["loss"]) for r in records)
    assert 0.0 <= metrics["miou"] <= 1.0


def test_synthia_13_of_16_reported(tiny_config, tiny_folder) -> None:
    (tiny_folder / "classes.yaml").write_text("label_space: synthia16\n")
    trainer = Trainer(tiny_config("train.iters=1"))
    result = trainer.fit()
    assert len(result["iou"]) == 16
    thirteen = trainer.label_space.subsets["13"]
    assert len(thirteen) == 13
    expected = torch.nanmean(torch.tensor(result["iou"], dtype=torch.float64)[thirteen])
    assert result["miou_13"] == pytest.approx(float(expected))
    evals = [r for r in read_log(trainer.run_dir) if r["kind"] == "eval"]
    assert evals[-1]["miou_13"] == pytest.approx(result["miou_13"])


def test_stream_and_val_label_spaces_must_match(tiny_config, tiny_folder, tmp_path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    for sub in ("images", "masks"):
        (other / sub).symlink_to(tiny_folder / sub)
    (other / "classes.yaml").write_text("label_space: synthia16\n")
    trainer = Trainer(tiny_config(f"data.val.root={other}"))
    with pytest.raises(ConfigError, match=r"data\.streams\.labeled.*camvid.*synthia16"):
        trainer.fit()


def test_resume_with_changed_config_says_so(tiny_config, capsys) -> None:
    Trainer(tiny_config("train.stop_at=2")).fit()
    capsys.readouterr()
    Trainer(tiny_config("optim.lr=0.5")).fit()
    out = capsys.readouterr().out
    assert "resumed" in out and "at step 2" in out
    # stop_at belongs to the first invocation: it is not part of the run, so no note about it
    assert (
        "changed optim.lr:" in out
        and "-> 0.5 (the learning-rate schedule" in out
        and "train.stop_at" not in out
    )


def test_log_says_how_often_each_stream_repeats(tiny_config, capsys) -> None:
    """A few labeled images cycled for many steps are not repeated silently: 6 images, 2 per
    step, 4 steps = 8 / 6 = 1.3 passes."""
    Trainer(tiny_config()).fit()
    out = capsys.readouterr().out
    assert "data.streams.labeled: 6 labeled images, 2 per step per process: 1.3 passes" in out
