"""Every bad value of issue 11 ends in one line on stderr, exit code 2, naming the key or file.

Config values are checked when the config is loaded (``segshift config`` never trains), so a
mistake costs nothing; classes.yaml mistakes are met when the dataset is built.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from segshift.cli import main
from segshift.config import PRECISIONS, load_config

CONFIG = "demo/source_only"
STREAM = "data.streams.labeled"


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err


def assert_one_line(code: int, err: str, *named: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for text in named:
        assert text in lines[0], (text, lines[0])


# (override, key named, valid range named)
BAD_CONFIG_VALUES = [
    (f"{STREAM}.batch_size=0", f"'{STREAM}.batch_size'", "integer >= 1"),
    (f"{STREAM}.batch_size=-4", f"'{STREAM}.batch_size'", "integer >= 1"),
    ("data.val.batch_size=0", "'data.val.batch_size'", "integer >= 1"),
    ("train.log_every=0", "'train.log_every'", "integer >= 1"),
    ("train.ckpt_every=0", "'train.ckpt_every'", "integer >= 1"),
    ("train.eval_every=-1", "'train.eval_every'", "integer >= 0"),
    ("train.iters=0", "'train.iters'", "integer >= 1"),
    ("train.iters=-5", "'train.iters'", "integer >= 1"),
    (f"{STREAM}.crop_size=[0,0]", f"'{STREAM}.crop_size'", "[height, width]"),
    (f"{STREAM}.crop_size=[64]", f"'{STREAM}.crop_size'", "[height, width]"),
    (f"{STREAM}.crop_size=[100000,100000]", f"'{STREAM}.crop_size'", "1..8192"),
    (f"{STREAM}.resize=[0,64]", f"'{STREAM}.resize'", "[height, width]"),
    (f"{STREAM}.scale_range=[2.0,0.5]", f"'{STREAM}.scale_range'", "0 < low <= high"),
    ("schedule.name=cosine", "'schedule.name'", "poly, constant"),
    ("eval.mode=sliding", "'eval.mode'", "whole, slide, slide_unimatch"),
    ("eval.mode=slide", "'eval.mode'", "eval.crop_size=[h,w]"),
    ("eval.crop_size=[0,0]", "'eval.crop_size'", "[height, width]"),
    ("eval.scales=[-1]", "'eval.scales'", "(0, 10]"),
    ("eval.scales=[]", "'eval.scales'", "non-empty"),
    ("optim.lr=-0.01", "'optim.lr'", "number >= 0"),
    ("optim.name=adagrad", "'optim.name'", "sgd, adamw or adam"),
    ("data.num_workers=-1", "'data.num_workers'", "integer >= 0"),
    ("train.precision=17", "'train.precision'", "32-true"),
    ("train.accelerator=quantum", "'train.accelerator'", "cpu"),
    ("train.devices=0", "'train.devices'", "count >= 1"),
    ("train.devices=two", "'train.devices'", "count >= 1"),
    ("seed=-1", "'seed'", "integer >= 0"),
    (f"{STREAM}.interpolation=cubic", f"'{STREAM}.interpolation'", "bilinear"),
    ("schedule.warmup_iters=-1", "'schedule.warmup_iters'", "integer >= 0"),
]


@pytest.mark.parametrize(("override", "key", "expected"), BAD_CONFIG_VALUES)
def test_bad_config_value_is_one_line(override: str, key: str, expected: str, capsys) -> None:
    code, err = run_cli(["config", CONFIG, override], capsys)
    assert_one_line(code, err, key, expected, "command line")


def test_bad_value_in_a_file_names_the_file(tmp_path: Path, capsys) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text("train:\n  iters: 0\n")
    code, err = run_cli(["config", str(config)], capsys)
    assert_one_line(code, err, str(config), "'train.iters'", "got 0")


def test_a_file_value_fixed_on_the_command_line_loads(tmp_path: Path) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text("train:\n  iters: 0\n")
    assert load_config(config, ["train.iters=7"]).train.iters == 7  # validated once, at the end


def test_output_dir_that_is_a_file(tmp_path: Path, capsys) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "below"):
        code, err = run_cli(["config", CONFIG, f"output_dir={out}"], capsys)
        assert_one_line(code, err, "'output_dir'", f"{afile} exists and is not a directory")


def test_bad_value_stops_train_before_any_run_dir(tmp_path: Path, capsys) -> None:
    code, err = run_cli(
        ["train", CONFIG, f"output_dir={tmp_path / 'runs'}", "train.log_every=0"], capsys
    )
    assert_one_line(code, err, "'train.log_every'")
    assert not (tmp_path / "runs").exists()


def test_good_values_still_load() -> None:
    cfg = load_config(
        CONFIG,
        [
            "train.devices=auto",
            "train.eval_every=0",
            "train.precision=bf16-mixed",
            "eval.mode=slide",
            "eval.crop_size=[64,64]",
            "optim.lr=0",
            "optim.name=AdamW",
        ],
    )
    assert (cfg.train.devices, cfg.eval.crop_size) == ("auto", [64, 64])
    assert load_config(CONFIG, ["train.devices=[0,1]"]).train.devices == [0, 1]


def test_precisions_are_lightnings() -> None:
    import typing

    from lightning_fabric.connector import _PRECISION_INPUT

    accepted = {str(v) for arg in typing.get_args(_PRECISION_INPUT) for v in typing.get_args(arg)}
    assert set(PRECISIONS) <= accepted


def test_interpolations_are_the_transforms() -> None:
    from segshift.config import DatasetConfig
    from segshift.transforms.pipeline import INTERPOLATIONS

    check = next(
        f.metadata["check"]
        for f in DatasetConfig.__dataclass_fields__.values()
        if f.name == "interpolation"
    )
    assert all(check.ok(name) for name in INTERPOLATIONS)
    assert not check.ok("lanczos")


# --- command-line arguments --------------------------------------------------------------------
SYNTHCITY = ["data", "synthcity", "--style", "sim"]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--n", "-3", "--size", "32x32"], ("--n", ">= 1", "-3")),
        (["--n", "2", "--size", "64by80"], ("--size", "HxW", "64by80")),
        (["--n", "2", "--size", "0x0"], ("--size", "16..8192", "0x0")),
        (["--n", "2", "--size", "64x"], ("--size", "HxW")),
        (["--n", "2", "--workers", "0"], ("--workers", ">= 1")),
    ],
)
def test_synthcity_bad_arguments(args: list[str], named: tuple[str, ...], tmp_path, capsys):
    out = tmp_path / "sim"
    code, err = run_cli([*SYNTHCITY, "--out", str(out), *args], capsys)
    assert_one_line(code, err, *named)
    assert not out.exists()


def test_synthcity_out_is_a_file(tmp_path: Path, capsys) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, err = run_cli([*SYNTHCITY, "--n", "1", "--out", str(afile)], capsys)
    assert_one_line(code, err, "--out", str(afile), "not a directory")
    assert afile.read_text() == "x"


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("--crop", "0x0", ("--crop", "1..8192", "'0x0'")),
        ("--crop", "512", ("--crop", "HxW")),
        ("--stride", "8x-2", ("--stride", "HxW")),
        ("--scales", "-1", ("--scales", "> 0", "'-1'")),
        ("--scales", "1,abc", ("--scales", "> 0")),
    ],
)
@pytest.mark.parametrize("command", ["eval", "predict"])
def test_inference_option_errors(command, option, value, named, tmp_path, capsys) -> None:
    target = ["eval", str(tmp_path / "run")] if command == "eval" else ["predict", str(tmp_path)]
    extra = ["--checkpoint", str(tmp_path), "--out", str(tmp_path / "o")]
    code, err = run_cli([*target, *extra, option, value], capsys)
    assert_one_line(code, err, *named)


# --- classes.yaml --------------------------------------------------------------------------------
BAD_CLASSES = [
    ("classes:\n  - {name: a, color: red}\n  - b\n", "[0].color", "[r, g, b]"),
    ("classes:\n  - {name: a, color: 5}\n  - b\n", "[0].color", "[r, g, b]"),
    ("classes:\n  - {name: a, color: [0, 0, 300]}\n", "[0].color", "0..255"),
    ("classes:\n  - {name: a, id: abc}\n  - b\n", "[0].id", "integer >= 0"),
    ("classes:\n  - {name: a, id: -1}\n", "[0].id", "integer >= 0"),
    ("classes:\n  - {name: a, id: 1}\n  - {name: b, id: 1}\n", "[1].id", "class 'a'"),
    (
        "classes:\n  - {name: a, color: [1, 2, 3]}\n  - {name: b, color: [1, 2, 3]}\n",
        "[1].color",
        "class 'a'",
    ),
    ("classes: [a, b, a]\n", "[2]", "listed twice"),
    ("classes: []\n", "classes.yaml", "empty"),
    ("classes: sky\n", "classes.yaml", "list of classes"),
    ("classes:\n  - {name: ''}\n", "[0].name", "non-empty"),
    ("classes: null\n", "classes.yaml", "label_space: NAME"),
]


@pytest.mark.parametrize(("text", "named", "expected"), BAD_CLASSES)
def test_bad_classes_yaml(text: str, named: str, expected: str, tiny_config, tiny_folder, capsys):
    classes = tiny_folder / "classes.yaml"
    classes.write_text(text)
    cfg = tiny_config()
    code, err = run_cli(
        ["train", CONFIG, *[f"{k}={v}" for k, v in _flat_overrides(cfg).items()]], capsys
    )
    assert_one_line(code, err, str(classes), named, expected)
    assert "write " not in err  # never suggests writing the file that is there


def _flat_overrides(cfg) -> dict[str, str]:
    """The tiny config's data and output keys as overrides (the CLI needs a config + overrides)."""
    return {
        f"{STREAM}.root": cfg.data.streams.labeled.root,
        "data.val.root": cfg.data.val.root,
        "output_dir": cfg.output_dir,
        "name": cfg.name,
        "data.num_workers": "0",
        "train.iters": "1",
    }


# --- Ctrl-C ------------------------------------------------------------------------------------
def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_in_eval_start_up_exits_130_quietly(monkeypatch, tmp_path, capsys) -> None:
    import segshift.config

    monkeypatch.setattr(segshift.config, "load_config", _interrupt)
    code = main(["eval", CONFIG, "--checkpoint", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 130
    assert err.strip() == "segshift eval: interrupted"


def test_ctrl_c_in_predict_exits_130_quietly(monkeypatch, tmp_path, capsys) -> None:
    import segshift.pipeline.predict

    monkeypatch.setattr(segshift.pipeline.predict, "predict_images", _interrupt)
    code = main(["predict", str(tmp_path), "--checkpoint", str(tmp_path), "--out", "o"])
    err = capsys.readouterr().err
    assert (code, err.strip()) == (130, "segshift predict: interrupted")
