"""Smoke tests of every subcommand through ``segshift.cli.main`` (in-process, CPU, tiny data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segshift.cli import main

TINY = [
    "data.num_workers=0",
    "data.streams.labeled.batch_size=2",
    "data.streams.labeled.crop_size=[32,32]",
    "data.val.batch_size=2",
    "train.iters=2",
    "train.eval_every=2",
    "train.ckpt_every=2",
    "train.log_every=1",
    "train.progress=plain",
    "name=cli",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, folder_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("cli")
    data = folder_factory(base / "data")
    code = main(
        [
            "train",
            "demo/source_only",
            f"data.streams.labeled.root={data}",
            f"data.val.root={data}",
            f"output_dir={base / 'runs'}",
            *TINY,
        ]
    )
    assert code == 0
    return base / "runs" / "cli", data


def test_train_then_eval_prints_both_layouts(trained, capsys) -> None:
    run, _ = trained
    assert main(["eval", str(run), "--flip"]) == 0
    out = capsys.readouterr().out
    assert "===>sky:" in out and "===> mIoU:" in out
    assert "class name" in out and "pixAcc" in out
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert (run / "eval" / "metrics.csv").is_file()
    assert metrics  # written by the same call


def test_resume_finished_run_is_a_no_op(trained, capsys) -> None:
    run, _ = trained
    assert main(["train", "--resume", str(run)]) == 0
    records = (run / "log.jsonl").read_text().splitlines()
    assert sum(1 for r in records if '"kind": "train"' in r) == 2


def test_predict_writes_colour_and_overlay(trained, tmp_path) -> None:
    run, data = trained
    out = tmp_path / "pred"
    assert main(["predict", str(data / "images"), "--checkpoint", str(run), "--out", str(out)]) == 0
    assert len(list(out.glob("*_color.png"))) == 6
    assert len(list(out.glob("*_overlay.png"))) == 6


def test_predict_bad_image_names_file(trained, tmp_path, capsys) -> None:
    run, _ = trained
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert main(["predict", str(bad), "--checkpoint", str(run), "--out", str(tmp_path)]) == 2
    assert "broken.png" in capsys.readouterr().err


def test_config_typo_exits_2_with_suggestion(capsys) -> None:
    assert main(["config", "demo/oracle", "optim.lrr=0.1"]) == 2
    assert "did you mean 'lr'" in capsys.readouterr().err


def test_config_prints_resolved(capsys) -> None:
    assert main(["config", "demo/oracle", "train.iters=7"]) == 0
    assert "iters: 7" in capsys.readouterr().out


def test_unknown_model_suggests(tmp_path, capsys, folder_factory) -> None:
    data = folder_factory(tmp_path / "d", n=2)
    code = main(
        [
            "train",
            "demo/oracle",
            f"data.streams.labeled.root={data}",
            f"data.val.root={data}",
            f"output_dir={tmp_path}",
            "model.arch=deeplabv3pluss",
        ]
    )
    assert code == 2
    assert "did you mean 'deeplabv3plus'" in capsys.readouterr().err


def test_list_names_registries(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "supervised" in out and "camvid" in out and "deeplabv2" in out


def test_data_synthcity(tmp_path, capsys) -> None:
    out = tmp_path / "sim"
    args = ["data", "synthcity", "--out", str(out), "--style", "sim", "--n", "3", "--size", "32x40"]
    assert main(args) == 0
    assert len(list((out / "images").glob("*.png"))) == 3
    assert (out / "classes.yaml").is_file()


def test_predict_from_shared_export_matches_run(trained, tmp_path) -> None:
    # the run trained 2 steps and evaluated at step 2, so its best checkpoint is the export
    run, data = trained
    from_run, from_export = tmp_path / "run", tmp_path / "export"
    images = str(data / "images")
    assert main(["predict", images, "--checkpoint", str(run), "--out", str(from_run)]) == 0
    export = str(run / "export")
    assert main(["predict", images, "--checkpoint", export, "--out", str(from_export)]) == 0
    for mask in from_run.glob("*_color.png"):
        assert mask.read_bytes() == (from_export / mask.name).read_bytes()


def test_resume_of_a_copied_run_trains_in_the_copy(trained, tmp_path) -> None:
    import shutil

    run, _ = trained
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and ".lock" not in p.name}
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    assert main(["train", "--resume", str(copy), "train.iters=3", "train.eval_every=3"]) == 0
    steps = [json.loads(r)["step"] for r in (copy / "log.jsonl").read_text().splitlines()]
    assert max(steps) == 3
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and ".lock" not in p.name}
    assert after == before  # the original run is untouched
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2


def test_restart_needs_overwrite(trained, tmp_path, capsys) -> None:
    import shutil

    run, data = trained
    copy = tmp_path / "again"
    shutil.copytree(run, copy / "cli")
    args = ["train", "demo/source_only", f"data.streams.labeled.root={data}"]
    args += [f"data.val.root={data}", f"output_dir={copy}", *TINY, "train.resume=false"]
    assert main(args) == 2
    assert "overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
