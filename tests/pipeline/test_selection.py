"""``select_by``: checkpoints and grid points chosen by a label-free score in a sweep."""

from __future__ import annotations

import json

import pytest

from segshift.cli import main
from segshift.errors import ConfigError
from segshift.evaluation import scores
from segshift.pipeline.selection import CACHE, check_select_by, score_of
from segshift.pipeline.sweep import run_sweep

STREAM = ["batch_size=2", "crop_size=[32,32]", "hflip=false", "scale_range=[1.0,1.0]"]
TINY = [
    "data.num_workers=0",
    "data.val.batch_size=2",
    "train.iters=2",
    "train.eval_every=2",
    "train.ckpt_every=1",
    "train.keep_checkpoints_every=1",
    "train.log_every=1",
    "train.progress=plain",
    "schedule.warmup_iters=0",
    "eval.unlabeled_images=3",
]


def test_select_by_values_are_checked_with_did_you_mean() -> None:
    assert check_select_by("score.snd") == "score.snd" and score_of("score.snd") == "snd"
    assert check_select_by("last") == "last" and score_of("miou") is None
    with pytest.raises(ConfigError, match="did you mean 'entropy'"):
        check_select_by("score.entrpy")
    with pytest.raises(ConfigError, match="last, miou or score.NAME"):
        check_select_by("best")


def test_a_tiny_sweep_chooses_checkpoints_and_the_point_by_a_score(
    tiny_folder, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setattr(scores, "SND_PIXELS", 64)
    out = tmp_path / "sweep"
    overrides = [f"data.streams.{s}.root={tiny_folder}" for s in ("source", "target")]
    overrides += [f"data.streams.{s}.{o}" for s in ("source", "target") for o in STREAM]
    overrides += [f"data.val.root={tiny_folder}", *TINY]
    results = run_sweep(
        "uda/minent",
        ["optim.lr=0.01,0.001"],
        overrides,
        out=out,
        select_by="score.entropy",
    )
    assert sorted(results) == ["lr=0.001", "lr=0.01"]
    selection = json.loads((out / "selection.json").read_text())
    assert selection["select_by"] == "score.entropy"
    for name, row in selection["runs"].items():
        # every kept state was scored on the unlabeled target; the chosen one scores highest
        cached = json.loads((out / name / CACHE).read_text())
        entropy = {k: v for k, v in cached.items() if "|entropy|" in k}
        assert {k.split("|")[1] for k in entropy} == {"1", "2"}  # steps 1 and 2
        assert row["score"] == max(entropy.values())
        chosen = next(k for k, v in entropy.items() if v == row["score"])
        assert row["step"] == int(chosen.split("|")[1])
        assert row["last_miou"] == pytest.approx(results[name]["miou"])
        if row["step"] == 2:
            assert row["miou"] == pytest.approx(row["last_miou"])
    mean = {n: r["score"] for n, r in selection["runs"].items()}  # one seed per point
    assert selection["picked"] == max(mean, key=mean.get)
    truth = {n: r["miou"] for n, r in selection["runs"].items()}
    assert selection["regret"] == pytest.approx(truth[selection["picked"]] - max(truth.values()))
    markdown = (out / "sweep.md").read_text()
    assert "## Selection by score.entropy (no target labels)" in markdown
    assert f"regret {100 * selection['regret']:+.2f} mIoU" in markdown
    # a rerun trains nothing and reads the scores back from the runs' caches
    capsys.readouterr()
    argv = ["sweep", "uda/minent", *overrides, "--set", "optim.lr=0.01,0.001"]
    assert main([*argv, "--out", str(out), "--select-by", "score.entropy"]) == 0
    assert json.loads((out / "selection.json").read_text()) == selection
    assert main([*argv, "--out", str(out), "--select-by", "score.entrpy"]) == 2
    assert "did you mean 'entropy'" in capsys.readouterr().err
