"""Issue 25, silently ignored or wasted: each is now an error or a warning naming the key."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

import segshift.engine.trainer as trainer_module
from segshift.cli import main
from segshift.errors import ConfigError
from segshift.pipeline.loop import run_pipeline


def test_mistyped_eval_subset_is_refused(trained, capsys) -> None:
    assert main(["eval", str(trained[0]), "eval.subset=nosuch"]) == 2
    err = capsys.readouterr().err
    assert "eval.subset: 'nosuch' is not a class subset of label space 'camvid'" in err


def test_ids_outside_a_built_in_label_space_are_listed(folder_factory, tmp_path, capsys) -> None:
    """CamVid masks holding 50, 200 (8-bit) or 259 (16-bit) are read as 255: data check lists
    each id with its files (a warning: training can start)."""
    data = folder_factory(tmp_path / "data", n=3)
    masks = sorted((data / "masks").iterdir())
    for path, value in zip(masks[:2], (50, 200), strict=True):
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        mask[:2] = value
        cv2.imwrite(str(path), mask)
    wide = cv2.imread(str(masks[2]), cv2.IMREAD_UNCHANGED).astype(np.uint16)
    wide[:2] = 259
    cv2.imwrite(str(masks[2]), wide)
    assert main(["data", "check", str(data)]) == 0
    out = capsys.readouterr().out
    for value, path in zip((50, 200, 259), masks, strict=True):
        line = f"raw id outside label space 'camvid' (read as 255): {value} in 1 file(s): {path}"
        assert line in out
    assert "warnings:" in out


def test_crop_larger_than_every_image_and_inherited_subsets_are_said(
    tiny_config, folder_factory, tmp_path, capsys
) -> None:
    other = folder_factory(tmp_path / "other", n=5)
    cfg = tiny_config(
        "data.streams.labeled.crop_size=[64,64]",
        "data.streams.labeled.n_labeled=4",
        f"data.streams.labeled.concat=[{{root: {other}}}]",
        "train.iters=1",
        "train.eval_every=0",
    )
    trainer_module.Trainer(cfg).fit()
    out = capsys.readouterr().out
    assert (
        "WARNING: data.streams.labeled.crop_size [64, 64] is larger than every image (32x40 "
        "(HxW) at most, x1.25 by scale_range)"
    ) in out
    assert "note: data.streams.labeled.concat[0] reads the stream's n_labeled=4" in out


@pytest.fixture
def pipeline_file(tmp_path: Path, folder_factory) -> Path:
    """A one-round pipeline on tiny folders, 2-step trainings."""
    source = folder_factory(tmp_path / "source", seed=1)
    target = folder_factory(tmp_path / "target", seed=2)
    stream = ["batch_size=2", "crop_size=[32,32]", "scale_range=[1.0,1.0]"]
    common = [
        f"data.streams.source.root={source}",
        f"data.streams.target.root={target}",
        f"data.val.root={target}",
        "data.num_workers=0",
        "train.iters=2",
        "train.eval_every=2",
        "train.ckpt_every=2",
        "train.progress=plain",
        "schedule.warmup_iters=0",
        *[f"data.streams.{s}.{o}" for s in ("source", "target") for o in stream],
    ]
    spec = {
        "name": "loop",
        "output_dir": str(tmp_path / "runs"),
        "pipeline": {
            "overrides": common,
            "baselines": {"source_only": {"config": "uda/source_only"}},
            "teacher": {"config": "uda/source_only"},
            "pseudo_label": {"stream": "target", "threshold": 0.0, "examples": 1},
            "student": {"config": "uda/student", "real_share": [0.5]},
            "rounds": 1,
        },
    }
    path = tmp_path / "loop.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("pipeline.pseudo_label.threshold=7", "'pipeline.pseudo_label.threshold': expected a n"),
        ("pipeline.student.real_share=[1.5]", "'pipeline.student.real_share': expected a list"),
        ("pipeline.pseudo_label.batch_size=0", "'pipeline.pseudo_label.batch_size': expected"),
        ("pipeline.teacher.config=uda/nosuch", "pipeline.teacher (uda/nosuch): config file not"),
        ("pipeline.student.stream=nosuch", "pipeline.student.stream: 'nosuch' is not a stream"),
        ("pipeline.pseudo_label.labels=/no/such", "pipeline.pseudo_label.labels: /no/such is none"),
    ],
)
def test_pipeline_stage_fields_are_checked_before_any_stage_trains(
    pipeline_file, monkeypatch, override, message
) -> None:
    def no_training(self):
        raise AssertionError(f"{self.cfg.name} trained before the pipeline spec was checked")

    monkeypatch.setattr(trainer_module.Trainer, "fit", no_training)
    with pytest.raises(ConfigError, match="^.*" + message.replace("(", r"\(").replace(")", r"\)")):
        run_pipeline(pipeline_file, [override])
    assert not (pipeline_file.parent / "runs" / "loop").exists()


def test_a_copied_pipeline_directory_reuses_its_stages(pipeline_file, monkeypatch, capsys) -> None:
    runs = pipeline_file.parent / "runs"
    first = run_pipeline(pipeline_file)
    shutil.copytree(runs / "loop", runs / "copy")
    shutil.rmtree(runs / "loop")  # the copy must not read the original

    def no_training(self):
        raise AssertionError(f"{self.cfg.name} was trained again")

    monkeypatch.setattr(trainer_module.Trainer, "fit", no_training)
    capsys.readouterr()
    again = run_pipeline(pipeline_file, ["name=copy"])
    out = capsys.readouterr().out
    for stage in ("baseline_source_only", "teacher", "pseudo_1", "student_1"):
        assert f"[pipeline] {stage}: done, cached ({runs / 'copy' / stage})" in out
    assert not (runs / "copy" / "stale").exists()
    assert again["miou"] == first["miou"]
    assert again["stage_miou"] == first["stage_miou"]
