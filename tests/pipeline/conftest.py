"""Fixtures of the pipeline tests: a tiny two-round pipeline config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

STREAM = ["batch_size=2", "crop_size=[32,32]", "hflip=false", "scale_range=[1.0,1.0]"]


@pytest.fixture
def pipeline_file(tmp_path: Path, folder_factory) -> Path:
    """A two-round pipeline on tiny folders: labeled source, unlabeled target (with masks on disk
    for the quality report), val; 2-step trainings."""
    source = folder_factory(tmp_path / "source", seed=1)
    target = folder_factory(tmp_path / "target", seed=2)
    common = [
        f"data.streams.source.root={source}",
        f"data.streams.target.root={target}",
        f"data.val.root={target}",
        "data.num_workers=0",
        "data.val.batch_size=2",
        "train.iters=2",
        "train.eval_every=2",
        "train.ckpt_every=1",
        "train.log_every=1",
        "train.progress=plain",
        "schedule.warmup_iters=0",
    ]
    common += [f"data.streams.{s}.{o}" for s in ("source", "target") for o in STREAM]
    spec = {
        "name": "loop",
        "output_dir": str(tmp_path / "runs"),
        "pipeline": {
            "overrides": common,
            "baselines": {"source_only": {"config": "uda/source_only"}},
            "teacher": {"config": "uda/source_only"},
            "pseudo_label": {
                "stream": "target",
                "rule": "threshold",
                "threshold": 0.0,
                "labels": {"name": "folder", "root": str(target)},
                "examples": 2,
            },
            "student": {"config": "uda/student", "real_share": [0.5, 0.75]},
            "rounds": 2,
        },
    }
    path = tmp_path / "loop.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path
