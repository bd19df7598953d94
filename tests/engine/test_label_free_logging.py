"""Label-free scores during training (``eval.unlabeled_scores``, translation quality), kept
step checkpoints (``train.keep_checkpoints_every``) and ``segshift score`` on a tiny run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from helpers import every_stream, method_overrides, read_log
from segshift.cli import main
from segshift.config import load_config
from segshift.engine.trainer import Trainer
from segshift.errors import ConfigError
from segshift.evaluation import scores
from segshift.evaluation.translation_scores import frechet_distance, patch_features

SCORED = "eval.unlabeled_scores=[entropy,infomax,agreement,class_shift,snd,mixval,atc]"


def test_scores_logged_kept_checkpoints_and_the_score_command(
    tiny_config, tiny_folder, tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.setattr(scores, "SND_PIXELS", 256)  # a small similarity matrix
    cfg = tiny_config(
        *method_overrides("minent"),
        *every_stream(tiny_folder),
        SCORED,
        "eval.unlabeled_images=3",
        "train.keep_checkpoints_every=2",
    )
    Trainer(cfg).fit()
    run = cfg.output_dir + "/" + cfg.name
    evals = [r for r in read_log(Path(run)) if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4]
    for record in evals:  # beside the mIoU, in log.jsonl and TensorBoard
        assert "miou" in record
        assert -1 <= record["score.entropy"] <= 0 and -1 <= record["score.infomax"] <= 1
        assert -1 <= record["score.class_shift"] <= 0
        for name in ("agreement", "snd", "mixval", "atc"):
            assert 0 <= record[f"score.{name}"] <= 1, name
    kept = sorted(p.name for p in Path(run, "checkpoints").glob("step_*.pt"))
    assert kept == ["step_000002.pt", "step_000004.pt"]

    # segshift score: every checkpoint, the same images as the training's scores
    out = tmp_path / "scores.json"
    argv = ["score", run, "--data", str(tiny_folder), "--source", str(tiny_folder)]
    argv += ["--all-checkpoints", "--json", str(out), "--md", str(tmp_path / "s.md")]
    assert main([*argv, "--scores", "entropy,class_shift,atc", "--max-images", "3"]) == 0
    report = json.loads(out.read_text())
    assert report["scores"] == ["entropy", "class_shift", "atc"]
    assert report["data"]["images"] == 3
    states = report["states"]
    assert [s["step"] for s in states] == [2, 4]  # latest, .prev and best hold the same steps
    assert sum(len(s.get("same_as", [])) for s in states) == 3
    for state, logged in zip(states, evals):
        assert state["scores"]["entropy"] == pytest.approx(logged["score.entropy"])
        assert state["scores"]["class_shift"] == pytest.approx(logged["score.class_shift"])
    best = max(states, key=lambda s: s["scores"]["entropy"])["checkpoint"]
    assert report["best"]["entropy"] == best
    assert "| step |" in capsys.readouterr().out
    assert (tmp_path / "s.md").read_text().count("*") >= 3  # the best state of each score

    # refusals: a bad name (did you mean), a source score without --source, a file with --all
    assert main(["score", run, "--data", str(tiny_folder), "--scores", "entrpy"]) == 2
    assert "did you mean 'entropy'" in capsys.readouterr().err
    assert main(["score", run, "--data", str(tiny_folder), "--scores", "class_shift"]) == 2
    assert "needs --source" in capsys.readouterr().err
    best = f"{run}/checkpoints/best.pt"
    assert main(["score", best, "--data", str(tiny_folder), "--all-checkpoints"]) == 2
    assert "needs a run directory" in capsys.readouterr().err


def test_a_bad_score_name_is_refused_at_config_load(tiny_folder, tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("eval:\n  unlabeled_scores: [snd, entrophy]\n")
    with pytest.raises(
        ConfigError, match=r"bad.yaml.*eval.unlabeled_scores.*did you mean 'entropy'"
    ):
        load_config(path)


def test_unlabeled_scores_need_an_unlabeled_stream(tiny_config) -> None:
    with pytest.raises(ConfigError, match="eval.unlabeled_stream: no unlabeled stream"):
        Trainer(tiny_config("eval.unlabeled_scores=[entropy]")).fit()


def test_translation_training_logs_patch_distances(tiny_folder, tmp_path) -> None:
    streams = ("source", "target")
    cfg = load_config(
        "translate/synthcity",
        [
            *(f"data.streams.{s}.root={tiny_folder}" for s in streams),
            *(f"data.streams.{s}.crop_size=[32,32]" for s in streams),
            f"output_dir={tmp_path}",
            "data.num_workers=0",
            "train.iters=2",
            "train.eval_every=1",
            "train.progress=plain",
            "eval.unlabeled_images=3",
            *method_overrides("cyclegan")[1:],
        ],
    )
    trainer = Trainer(cfg)
    trainer.fit()
    evals = [r for r in read_log(trainer.run_dir) if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [1, 2]
    for record in evals:
        assert record["translation.patch_fd"] >= 0 and record["translation.patch_fd_source"] >= 0
    # source and target are the same folder: the untranslated images are the closest
    assert evals[0]["translation.patch_fd_source"] <= evals[0]["translation.patch_fd"]


def test_frechet_distance_of_patch_features() -> None:
    a = torch.randn(200, 3, dtype=torch.float64)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    # equal covariance, mean shifted by (1, 0, 0): distance 1
    assert frechet_distance(a, a + torch.tensor([1.0, 0, 0])) == pytest.approx(1.0)
    # 1-d Gaussians: (mu1 - mu2)^2 + (sigma1 - sigma2)^2
    x = torch.tensor([[-1.0], [1.0]])  # std sqrt(2)
    y = 3 * x  # std 3 sqrt(2)
    assert frechet_distance(x, y) == pytest.approx((math.sqrt(2) - 3 * math.sqrt(2)) ** 2)
    flat = torch.full((2, 3, 16, 16), 0.5)
    features = patch_features(flat)
    assert features.shape == (2 * 2 * 2, 8)
    assert torch.allclose(features[:, :3], torch.full((8, 3), 0.5))
    assert torch.allclose(features[:, 3:], torch.zeros(8, 5), atol=1e-6)
