"""``segshift sweep``: the grid, its run directories, the table (CSV + Markdown) and the plot."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

from helpers import read_log
from segshift.cli import main
from segshift.engine.trainer import Trainer
from segshift.errors import ConfigError
from segshift.pipeline import sweep

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
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
    "schedule.warmup_iters=0",
]


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def table_rows(markdown: str) -> list[list[str]]:
    """The body rows of the Markdown table, as cells."""
    rows = [line for line in markdown.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
        assert image.size == (768, 504)  # 6.4 x 4.2 inches at 120 dpi


def test_two_point_sweep_writes_runs_table_and_plot(tiny_folder, tmp_path, monkeypatch) -> None:
    out = tmp_path / "sweep"
    argv = [
        "sweep",
        "demo/source_only",
        f"data.streams.labeled.root={tiny_folder}",
        f"data.val.root={tiny_folder}",
        *TINY,
        "--set",
        "data.streams.labeled.n_labeled=2,4",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    rows = read_csv(out / "sweep.csv")
    assert [r["run"] for r in rows] == ["n_labeled=2", "n_labeled=4"]
    assert [r["data.streams.labeled.n_labeled"] for r in rows] == ["2", "4"]
    assert [r["seed"] for r in rows] == ["0", "0"]
    for row, n_labeled in zip(rows, (2, 4)):
        run = out / row["run"]
        saved = (run / "config.yaml").read_text()
        assert f"n_labeled: {n_labeled}\n" in saved and f"output_dir: {out}\n" in saved
        final = [r for r in read_log(run) if r["kind"] == "eval"][-1]
        assert final["step"] == 2
        assert float(row["miou"]) == final["miou"]  # full precision, the trainer's last eval
        result = json.loads((run / "sweep_result.json").read_text())["metrics"]
        assert len(result["class_names"]) == 11  # CamVid
        for name, iou in zip(result["class_names"], result["iou"]):
            expected = float("nan") if iou is None else iou
            assert float(row[f"iou_{name}"]) == pytest.approx(expected, nan_ok=True)
    body = table_rows((out / "sweep.md").read_text())
    assert body == [
        [r["data.streams.labeled.n_labeled"], f"{100 * float(r['miou']):.2f}", "-", "1"]
        for r in rows
    ]
    assert_png(out / "sweep.png")

    # a rerun trains nothing and rewrites the same table
    calls = []
    monkeypatch.setattr(Trainer, "fit", lambda self: calls.append(self) or {})
    csv_before = (out / "sweep.csv").read_text()
    assert main(argv) == 0
    assert calls == []
    assert (out / "sweep.csv").read_text() == csv_before


def fake_metrics(table: dict[tuple[str, int], float]):
    """A stand-in for ``run_point``: mIoU looked up from (optim.lr text, seed), 3 classes."""
    calls = []

    def run_point(config, overrides, run_dir):
        values = dict(o.split("=", 1) for o in overrides)
        miou = table[(values["optim.lr"], int(values.get("seed", 0)))]
        calls.append(Path(run_dir).name)
        return {"miou": miou, "iou": [miou, float("nan"), 2 * miou], "class_names": ["a", "b", "c"]}

    return run_point, calls


BASE = [
    "data.streams.labeled.root=/nowhere",  # nothing is built: run_point is replaced
    "data.val.root=/nowhere",
]
MIOU = {("0.01", 0): 0.5, ("0.01", 1): 0.6, ("0.02", 0): 0.3, ("0.02", 1): 0.5}


def test_seeds_are_averaged_mean_and_sample_std(tmp_path, monkeypatch) -> None:
    run_point, calls = fake_metrics(MIOU)
    monkeypatch.setattr(sweep, "run_point", run_point)
    out = tmp_path / "sweep"
    results = sweep.run_sweep("demo/source_only", ["optim.lr=0.01,0.02", "seed=0,1"], BASE, out=out)
    names = ["lr=0.01,seed=0", "lr=0.01,seed=1", "lr=0.02,seed=0", "lr=0.02,seed=1"]
    assert calls == names and list(results) == names
    rows = read_csv(out / "sweep.csv")
    assert [(r["optim.lr"], r["seed"], float(r["miou"])) for r in rows] == [
        ("0.01", "0", 0.5),
        ("0.01", "1", 0.6),
        ("0.02", "0", 0.3),
        ("0.02", "1", 0.5),
    ]
    assert [r["iou_b"] for r in rows] == ["nan"] * 4
    assert float(rows[1]["iou_c"]) == 1.2
    # lr 0.01: mean 0.55, sample std sqrt(2 * 0.05^2 / 1) = 0.070711
    # lr 0.02: mean 0.40, sample std sqrt(2 * 0.10^2 / 1) = 0.141421
    assert table_rows((out / "sweep.md").read_text()) == [
        ["0.01", "55.00", "7.07", "2"],
        ["0.02", "40.00", "14.14", "2"],
    ]
    assert_png(out / "sweep.png")

    # reading back: NaN IoU survives the JSON round trip, and nothing runs again
    again = sweep.run_sweep("demo/source_only", ["optim.lr=0.01,0.02", "seed=0,1"], BASE, out=out)
    assert calls == names
    assert again["lr=0.01,seed=1"]["miou"] == 0.6
    assert math.isnan(again["lr=0.01,seed=1"]["iou"][1])


def test_finished_point_with_changed_config_is_refused(tmp_path, monkeypatch) -> None:
    run_point, calls = fake_metrics(MIOU)
    monkeypatch.setattr(sweep, "run_point", run_point)
    out = tmp_path / "sweep"
    sweep.run_sweep("demo/source_only", ["optim.lr=0.01"], BASE, out=out)
    # keys that cannot change the result are fine
    sweep.run_sweep("demo/source_only", ["optim.lr=0.01"], [*BASE, "train.progress=off"], out=out)
    assert calls == ["lr=0.01"]
    with pytest.raises(ConfigError, match=r"lr=0.01 was finished with another.*optim.momentum"):
        sweep.run_sweep(
            "demo/source_only", ["optim.lr=0.01"], [*BASE, "optim.momentum=0.5"], out=out
        )


def test_categorical_axis_gives_a_bar_chart(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(
        sweep,
        "run_point",
        lambda config, overrides, run_dir: {"miou": 0.25, "iou": [0.25], "class_names": ["x"]},
    )
    out = tmp_path / "sweep"
    sweep.run_sweep("demo/source_only", ["method.name=supervised,other"], BASE, out=out)
    assert table_rows((out / "sweep.md").read_text()) == [
        ["supervised", "25.00", "-", "1"],
        ["other", "25.00", "-", "1"],
    ]
    assert_png(out / "sweep.png")


def test_unknown_key_fails_before_anything_runs(tmp_path, monkeypatch) -> None:
    def never(*args):
        raise AssertionError("a point ran")

    monkeypatch.setattr(sweep, "run_point", never)
    with pytest.raises(ConfigError, match="optim.lrr"):
        sweep.run_sweep("demo/source_only", ["seed=0,1", "optim.lrr=0.1"], BASE, out=tmp_path)
    assert main(["sweep", "demo/source_only", *BASE, "--set", "train.itres=1,2"]) == 2
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["seed"], "must look like KEY=V1,V2"),
        (["seed=0,1", "seed=2"], "given twice"),
        (["seed=0,0"], "repeated"),
        (["seed=0,"], "empty value"),
        (["name=a,b"], "sets 'name'"),
        (["optim.betas=[0.9]"], "not a scalar"),
        ([], "at least one"),
    ],
)
def test_bad_axes_are_config_errors(sets, message) -> None:
    with pytest.raises(ConfigError, match=message):
        sweep.parse_axes(sets)


def test_axis_values_are_yaml_scalars() -> None:
    (axis,) = sweep.parse_axes(["data.streams.labeled.n_labeled=23,1e-3,0.5,null,all,true"])
    assert axis.values == (23, 0.001, 0.5, None, "all", True)
    assert not axis.numeric
    assert sweep.parse_axes(["optim.lr=1,0.5"])[0].numeric


def test_point_names_use_shortest_unique_key_suffix() -> None:
    texts = {
        "data.streams.labeled.n_labeled": "23",
        "data.streams.unlabeled.n_labeled": "null",
        "method.name": "a/b c",
        "seed": "0",
    }
    assert sweep.point_name(texts) == (
        "labeled.n_labeled=23,unlabeled.n_labeled=null,name=a_b_c,seed=0"
    )


def test_dry_run_lists_points_and_runs_nothing(tmp_path, capsys) -> None:
    out = tmp_path / "sweep"
    assert (
        main(
            [
                "sweep",
                "demo/source_only",
                *BASE,
                "--set",
                "seed=0,1",
                "--out",
                str(out),
                "--dry-run",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "[1/2] seed=0 (to run)" in printed and "[2/2] seed=1 (to run)" in printed
    assert not out.exists()


def test_default_out_is_under_output_dir(tmp_path) -> None:
    assert sweep.default_out("demo/source_only", [*BASE, f"output_dir={tmp_path}"]) == (
        tmp_path / "sweep_source_only"
    )


def test_pipeline_config_dispatches_to_run_pipeline(tmp_path, monkeypatch) -> None:
    config = tmp_path / "loop.yaml"
    config.write_text("pipeline:\n  rounds: 2\nseed: 0\n")
    received = []
    loop = ModuleType("segshift.pipeline.loop")
    loop.run_pipeline = lambda path, overrides: (
        received.append((path, overrides))
        or {
            "miou": 0.4,
            "iou": [0.4],
        }
    )
    monkeypatch.setitem(sys.modules, "segshift.pipeline.loop", loop)
    assert sweep.is_pipeline_config(config)
    assert not sweep.is_pipeline_config("demo/source_only")
    run_dir = tmp_path / "out" / "seed=1"
    assert sweep.run_point(config, ["seed=1"], run_dir) == {"miou": 0.4, "iou": [0.4]}
    assert received == [(config, ["seed=1", "name=seed=1", f"output_dir={tmp_path / 'out'}"])]


def test_pipeline_points_are_checked_against_the_pipeline_schema(tmp_path) -> None:
    axes = sweep.parse_axes(["pipeline.rounds=1,2", "seed=3"])
    points = sweep.build_points("pipeline/synthcity", axes, ["train.iters=5"], tmp_path)
    assert [p.name for p in points] == ["rounds=1,seed=3", "rounds=2,seed=3"]
    assert [(p.seed, p.config["pipeline"]["rounds"]) for p in points] == [(3, 1), (3, 2)]
    assert points[0].config["output_dir"] == str(tmp_path)
    assert points[0].config["name"] == "rounds=1,seed=3"
    with pytest.raises(ConfigError, match="pipeline.roundz"):
        sweep.build_points(
            "pipeline/synthcity", sweep.parse_axes(["pipeline.roundz=1"]), [], tmp_path
        )


def test_pipeline_points_get_a_column_and_line_per_stage(tmp_path, monkeypatch) -> None:
    """A pipeline point reports every stage's mIoU: the table has a column per stage (mean +- std
    over seeds), the CSV a miou_<stage> column, the plot a line per stage."""
    stages = {  # (n_labeled, seed) -> (supervised-only, student)
        ("2", 0): (0.2, 0.4),
        ("2", 1): (0.3, 0.5),
        ("4", 0): (0.5, 0.6),
    }

    def run_point(config, overrides, run_dir):
        values = dict(o.split("=", 1) for o in overrides)
        key = (values["data.streams.labeled.n_labeled"], int(values["seed"]))
        if key not in stages:
            return None  # stopped early: the point is left out of the table
        baseline, student = stages[key]
        stage_miou = {"baseline_supervised_only": baseline, "student_1": student}
        return {"miou": student, "iou": [student], "class_names": ["a"], "stage_miou": stage_miou}

    monkeypatch.setattr(sweep, "run_point", run_point)
    out = tmp_path / "sweep"
    sets = ["data.streams.labeled.n_labeled=2,4", "seed=0,1"]
    overrides = [f"data.streams.{s}.root=/nowhere" for s in ("source", "target", "labeled")]
    sweep.run_sweep("pipeline/few_labels", sets, [*overrides, "data.val.root=/n"], out=out)
    markdown = (out / "sweep.md").read_text()
    assert (
        "| data.streams.labeled.n_labeled | baseline_supervised_only | student_1 | n |" in markdown
    )
    # n=2: 25 +- 7.07 (sample std of 0.2, 0.3) and 45 +- 7.07; n=4: one seed, no std
    assert table_rows(markdown) == [
        ["2", "25.00 +- 7.07", "45.00 +- 7.07", "2"],
        ["4", "50.00", "60.00", "1"],
    ]
    rows = read_csv(out / "sweep.csv")
    assert [(r["seed"], r["miou_baseline_supervised_only"], r["miou_student_1"]) for r in rows] == [
        ("0", "0.2", "0.4"),
        ("1", "0.3", "0.5"),
        ("0", "0.5", "0.6"),
    ]
    assert_png(out / "sweep.png")
    again = sweep.run_sweep("pipeline/few_labels", sets, [*overrides, "data.val.root=/n"], out=out)
    assert again["n_labeled=2,seed=1"]["stage_miou"] == {
        "baseline_supervised_only": 0.3,
        "student_1": 0.5,
    }
