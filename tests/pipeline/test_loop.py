"""`segshift pipeline`: teacher -> [pseudo-label -> student] x R on fixtures, cached and resumable."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

import segshift.engine.trainer as trainer_module
from segshift.config import load_config
from segshift.errors import ConfigError
from segshift.pipeline.loop import StageStopped, load_pipeline_config, per_round, run_pipeline


def count_trainings(monkeypatch) -> list[str]:
    names: list[str] = []
    original = trainer_module.Trainer.fit

    def fit(self):
        names.append(self.cfg.name)
        return original(self)

    monkeypatch.setattr(trainer_module.Trainer, "fit", fit)
    return names


def test_two_rounds_end_to_end(pipeline_file: Path, monkeypatch) -> None:
    trained = count_trainings(monkeypatch)
    result = run_pipeline(pipeline_file)
    out = pipeline_file.parent / "runs" / "loop"
    assert trained == ["baseline_source_only", "teacher", "student_1", "student_2"]
    for stage in ("teacher", "student_1", "student_2"):
        assert (out / stage / "export" / "model.safetensors").is_file()
    # each student starts from the previous model and mixes its batch by the round's share
    student_1 = load_config(out / "student_1" / "config.yaml")
    assert student_1.model.init_from == str(out / "teacher")
    assert student_1.data.streams.target.root == str(out / "pseudo_1")
    assert student_1.data.streams.target.labeled
    assert [student_1.data.streams[s].batch_size for s in ("target", "source")] == [2, 2]
    student_2 = load_config(out / "student_2" / "config.yaml")
    assert student_2.model.init_from == str(out / "student_1")
    assert [student_2.data.streams[s].batch_size for s in ("target", "source")] == [3, 1]
    # threshold 0 keeps every pixel: full coverage of the 6 target images
    masks = sorted((out / "pseudo_1" / "masks").glob("*.png"))
    assert len(masks) == 6
    report = json.loads((out / "pseudo_1" / "stage.json").read_text())["result"]["report"]
    assert report["coverage"] == pytest.approx(1.0)
    quality = report["labels"]  # against the target's own masks
    row = next(
        r for r in (out / "summary.csv").read_text().splitlines() if r.startswith("pseudo_1")
    )
    assert row.split(",")[3] == str(quality["miou"]) and 0.0 <= quality["miou"] <= 1.0
    assert (out / "pseudo_1" / "examples.png").is_file()
    summary = (out / "summary.md").read_text()
    for stage in ("baseline_source_only", "teacher", "pseudo_1", "student_1", "student_2"):
        assert f"| {stage} |" in summary
    rows = (out / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("stage,what,miou") and len(rows) == 1 + 6
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["miou"] == pytest.approx(
        json.loads((out / "student_2" / "stage.json").read_text())["result"]["miou"]
    )


def test_rerun_skips_done_stages_and_resumes_inside_one(pipeline_file: Path, monkeypatch) -> None:
    import segshift.pipeline.pseudo_label as pseudo_module

    trained = count_trainings(monkeypatch)
    out = pipeline_file.parent / "runs" / "loop"
    # a crash inside a stage: the first invocation stops the baseline after step 1 of 2
    with pytest.raises(StageStopped, match="baseline_source_only stopped at step 1 of 2"):
        run_pipeline(pipeline_file, ["train.stop_at=1"])
    # a crash between stages: pseudo-labelling fails after the teacher finished
    generate = pseudo_module.generate_pseudo_labels

    def crash(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(pseudo_module, "generate_pseudo_labels", crash)
    trained.clear()
    with pytest.raises(RuntimeError, match="killed"):
        run_pipeline(pipeline_file)
    assert trained == ["baseline_source_only", "teacher"]
    log = (out / "baseline_source_only" / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in log if '"train"' in x] == [1, 2]  # resumed at step 1
    monkeypatch.setattr(pseudo_module, "generate_pseudo_labels", generate)
    trained.clear()
    run_pipeline(pipeline_file)  # goes on at pseudo_1: baseline and teacher cached
    assert trained == ["student_1", "student_2"]
    trained.clear()
    run_pipeline(pipeline_file)  # everything cached
    assert trained == []


def test_changed_stage_config_reruns_it_and_later_stages(
    pipeline_file: Path, monkeypatch, capsys
) -> None:
    run_pipeline(pipeline_file)
    trained = count_trainings(monkeypatch)
    run_pipeline(pipeline_file, ["pipeline.pseudo_label.threshold=0.9"])
    assert trained == ["student_1", "student_2"]  # teacher and baseline stay cached
    printed = capsys.readouterr().out
    assert "pseudo_1: config changed" in printed
    stale = list((pipeline_file.parent / "runs" / "loop" / "stale").iterdir())
    assert {p.name.rsplit("-", 2)[0] for p in stale} == {
        "pseudo_1",
        "student_1",
        "pseudo_2",
        "student_2",
    }


def test_bad_pipeline_configs_name_the_key(pipeline_file: Path) -> None:
    with pytest.raises(ConfigError, match="pipeline.student.init"):
        load_pipeline_config(pipeline_file, ["pipeline.student.init=nobody"])
    with pytest.raises(ConfigError, match="pipeline.pseudo_label.stream: 'nowhere'"):
        run_pipeline(pipeline_file, ["pipeline.pseudo_label.stream=nowhere"])
    with pytest.raises(ConfigError, match="'pipeline.roundz' .did you mean 'rounds'"):
        load_pipeline_config(pipeline_file, ["pipeline.roundz=2"])
    with pytest.raises(ConfigError, match="pipeline.select_by: .*did you mean 'entropy'"):
        load_pipeline_config(pipeline_file, ["pipeline.select_by=score.entrpy"])


def test_select_by_a_score_picks_the_round(pipeline_file: Path) -> None:
    select = ["pipeline.rounds=1", "pipeline.select_by=score.entropy", "eval.unlabeled_images=3"]
    result = run_pipeline(pipeline_file, select)
    out = pipeline_file.parent / "runs" / "loop"
    scored = {}
    for stage in ("teacher", "student_1"):  # each model scored on the images it pseudo-labels
        cache = json.loads((out / stage / "label_free_scores.json").read_text())
        (scored[stage],) = cache.values()
    chosen = max(scored, key=scored.get)
    assert result["selected_stage"] == chosen
    assert result["score.entropy"] == scored[chosen]
    stage_result = json.loads((out / chosen / "stage.json").read_text())["result"]
    assert result["miou"] == pytest.approx(stage_result["miou"])
    summary = (out / "summary.md").read_text()
    assert "| score.entropy |" in summary.splitlines()[2]
    (row,) = [r for r in csv.DictReader(io.StringIO((out / "summary.csv").read_text()))
              if r["what"].endswith("(selected)")]  # fmt: skip
    assert float(row["miou_run"]) == pytest.approx(stage_result["miou"])
    assert f"(selected) | {100 * float(row['miou']):.2f}" in summary
    assert f"{scored[chosen]:.4f}" in summary


def test_per_round_schedule_repeats_its_last_value() -> None:
    assert [per_round([0.2, 0.35], r) for r in (1, 2, 3)] == [0.2, 0.35, 0.35]
    assert per_round([], 1) is None


def test_packaged_pipelines_load_and_cli_runs(pipeline_file: Path, capsys) -> None:
    from segshift.cli import main
    from segshift.config import is_pipeline_config, packaged_configs

    packaged = [p for p in packaged_configs().rglob("*.yaml") if is_pipeline_config(p)]
    assert {p.stem for p in packaged} >= {"demo", "synthcity"}
    for path in packaged:
        cfg = load_pipeline_config(path, ["data.val.root=x"])
        assert cfg.pipeline.overrides[-1] == "data.val.root=x"  # a stage key: every stage gets it
        for stage in [cfg.pipeline.teacher, cfg.pipeline.student, *cfg.pipeline.baselines.values()]:
            load_config(stage.config, list(stage.overrides))  # the stage configs exist and load
    assert main(["pipeline", str(pipeline_file), "train.stop_at=1"]) == 0
    assert "baseline_source_only stopped at step 1 of 2" in capsys.readouterr().out


def test_few_labels_pipeline_pseudo_labels_the_unlabeled_rest(tmp_path: Path, folder_factory):
    """pipeline/few_labels on one 6-image folder: 2 labeled images (n_labeled), the other 4 are
    pseudo-labeled; the student trains on sim + pseudo-labeled + labeled, split by real_share."""
    source = folder_factory(tmp_path / "source", seed=1)
    real = folder_factory(tmp_path / "real", seed=2)
    overrides = [
        f"data.streams.source.root={source}",
        f"data.streams.labeled.root={real}",
        f"data.streams.target.root={real}",
        "data.streams.labeled.n_labeled=2",
        f"data.val.root={real}",
        f"output_dir={tmp_path / 'runs'}",
        "data.num_workers=0",
        "data.val.batch_size=2",
        "train.iters=1",
        "train.eval_every=1",
        "train.progress=plain",
        "schedule.warmup_iters=0",
        *[f"data.streams.{s}.crop_size=[32,32]" for s in ("source", "target", "labeled")],
        *[f"data.streams.{s}.batch_size=2" for s in ("source", "target", "labeled")],
        "pipeline.pseudo_label.threshold=0.0",
    ]
    result = run_pipeline("pipeline/few_labels", overrides)
    out = tmp_path / "runs" / "few_labels"
    labeled = load_config(out / "teacher" / "config.yaml").data.streams.labeled
    assert labeled.n_labeled == 2
    from segshift.data import build_dataset

    kept = {f.name for f in build_dataset(labeled, train=False).files}
    pseudo = {p.stem for p in (out / "pseudo_1" / "masks").glob("*.png")}
    assert len(kept) == 2 and len(pseudo) == 4 and not kept & pseudo
    student = load_config(out / "student_1" / "config.yaml")
    assert list(student.method.params.streams) == ["source", "target", "labeled"]
    assert student.data.streams.target.n_labeled is None  # the pseudo folder is not subset again
    # real_share 0.5 of the student's batch of 10 (its overrides: 4 source + 2 target + 4
    # labeled): 5 pseudo-labeled, the rest split 4:4 -> 2.5 each, the tie to the first stream
    sizes = [student.data.streams[s].batch_size for s in ("target", "source", "labeled")]
    assert sizes == [5, 3, 2]
    baseline = load_config(out / "baseline_supervised_only" / "config.yaml")
    assert list(baseline.method.params.streams) == ["labeled"]
    assert set(result["stage_miou"]) == {"baseline_supervised_only", "teacher", "student_1"}
    assert result["stage_miou"]["student_1"] == result["miou"]


@pytest.mark.parametrize(
    ("sizes", "share", "expected"),
    [
        ({"target": 8, "source": 4, "labeled": 4}, 0.5, {"target": 8, "source": 4, "labeled": 4}),
        # rest 10 split 8:4 -> quotas 6.67 / 3.33 -> 6 + 3, the remainder to source (.67)
        ({"target": 8, "source": 8, "labeled": 4}, 0.5, {"target": 10, "source": 7, "labeled": 3}),
        ({"target": 4, "source": 4}, 0.75, {"target": 6, "source": 2}),
        ({"target": 4, "source": 4}, 0.0, {"source": 8}),  # no pseudo-labeled images at all
    ],
)
def test_real_share_splits_the_batch(sizes: dict, share: float, expected: dict) -> None:
    from omegaconf import OmegaConf

    from segshift.pipeline.loop import Pipeline

    cfg = OmegaConf.create(
        {
            "method": {"name": "supervised", "params": {"streams": list(sizes)}},
            "data": {"streams": {name: {"batch_size": n} for name, n in sizes.items()}},
        }
    )
    Pipeline._apply_share(None, cfg, "target", share)
    assert list(cfg.method.params.streams) == list(expected)
    assert {name: cfg.data.streams[name].batch_size for name in expected} == expected
    cfg.method.name = "dacs"
    with pytest.raises(ConfigError, match="real_share needs a `supervised` student"):
        Pipeline._apply_share(None, cfg, "target", share)
