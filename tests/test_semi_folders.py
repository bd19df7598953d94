"""The folder-only semi-supervised case as a user brings it: 20 labeled + 200 unlabeled
synthcity photo images in plain folders, trained from ``semi/folders`` naming only folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from segshift.config import load_config
from segshift.data.synthcity import generate, render_sample
from segshift.engine.trainer import Trainer
from segshift.registry import METHODS

SIZE = (32, 40)


def test_twenty_labeled_two_hundred_unlabeled_plain_folders(tmp_path: Path, capsys) -> None:
    labeled = generate(tmp_path / "labeled", "photo", n=20, size=SIZE, seed=1)
    val = generate(tmp_path / "val", "photo", n=4, size=SIZE, seed=2)
    (val / "classes.yaml").unlink(missing_ok=True)  # the validation folder reuses LABELED's
    unlabeled = tmp_path / "unlabeled"  # just images, no masks, no sub-folders
    unlabeled.mkdir()
    for i in range(200):
        image, _ = render_sample("photo", SIZE, seed=3, index=i)
        Image.fromarray(image).save(unlabeled / f"frame_{i:04d}.jpg")
    cfg = load_config(
        "semi/folders",
        [
            f"data.streams.labeled.root={labeled}",
            f"data.streams.unlabeled.root={unlabeled}",
            f"data.val.root={val}",
            f"output_dir={tmp_path / 'runs'}",
            "data.num_workers=0",
            "data.streams.labeled.resize=null",
            "data.streams.unlabeled.resize=null",
            "data.val.resize=null",
            "data.streams.labeled.crop_size=[32,32]",
            "data.streams.unlabeled.crop_size=[32,32]",
            "data.streams.labeled.batch_size=2",
            "data.streams.unlabeled.batch_size=2",
            "train.iters=2",
            "train.eval_every=2",
            "train.progress=plain",
        ],
    )
    trainer = Trainer(cfg)
    trainer.fit()
    out = capsys.readouterr().out
    assert "data.streams.labeled: 20 labeled images" in out
    assert "data.streams.unlabeled: 200 unlabeled images" in out
    log = [
        json.loads(x)
        for x in (tmp_path / "runs" / "folders" / "log.jsonl").read_text().splitlines()
    ]
    evals = [r for r in log if r["kind"] == "eval"]
    assert len(evals) == 1 and 0.0 <= evals[0]["miou"] <= 1.0
    assert trainer.num_classes == 11


@pytest.mark.parametrize(
    "method", ["fixmatch", "unimatch", "cps", "mean_teacher", "cct", "u2pl", "reco"]
)
def test_any_semi_method_builds_from_the_folders_config_by_name(method: str) -> None:
    """The config's header promises ``method.name=X`` for every semi-supervised method: the
    method's own defaults apply, no parameter of another method is left behind."""
    cfg = load_config(
        "semi/folders",
        ["data.streams.labeled.root=L", "data.streams.unlabeled.root=U", "data.val.root=V"]
        + [f"method.name={method}"],
    )
    built = METHODS.build(method, cfg=cfg, num_classes=3)
    assert {"labeled", "unlabeled"} <= set(built.streams)
