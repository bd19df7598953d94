"""`segshift translate train`: a translation run from the packaged CPU config on tiny unlabeled
folders (sample grids, generators, schedule), and its refusals; the linear_decay schedule."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from safetensors.torch import load_file

from helpers import read_log
from segshift.cli import main
from segshift.config import load_config
from segshift.engine.schedules import LinearDecay
from segshift.errors import ConfigError
from segshift.models.cyclegan import ResnetGenerator

KEYS = ("step", "kind", "time")  # of every log record


def tiny_overrides(root, out) -> list[str]:
    streams = ("source", "target")
    return [
        *(f"data.streams.{s}.root={root}" for s in streams),
        *(f"data.streams.{s}.crop_size=[32,32]" for s in streams),
        f"output_dir={out}",
        "name=tiny",
        "data.num_workers=0",
        "train.iters=4",
        "train.eval_every=2",
        "train.log_every=1",
        "train.progress=plain",
        "method.params.ngf=8",
        "method.params.n_blocks=1",
        "method.params.ndf=8",
    ]


def test_translate_train_writes_samples_generators_and_decays(tiny_folder, tmp_path, capsys):
    assert (
        main(["translate", "train", "translate/synthcity", *tiny_overrides(tiny_folder, tmp_path)])
        == 0
    )
    run = tmp_path / "tiny"
    assert "sample grid: " in capsys.readouterr().out
    # 4 fixed images per stream (of 6), rows source | translated | reconstructed, then target's
    grids = sorted(p.name for p in (run / "samples").iterdir())
    assert grids == ["step_000002.png", "step_000004.png"]
    with Image.open(run / "samples" / "step_000004.png") as grid:
        assert grid.size == (3 * 32 + 2 * 2, 8 * 32 + 7 * 2)
    assert list((run / "tb").iterdir())
    records = read_log(run)
    evals = [r for r in records if r["kind"] == "eval"]  # no mIoU: translation quality only
    assert [r["step"] for r in evals] == [2, 4]
    assert all(k.startswith("translation.") for r in evals for k in r if k not in KEYS)
    lrs = [r["lr"] for r in records if r["kind"] == "train"]  # constant half, then to zero
    assert lrs == pytest.approx([2e-4, 2e-4 * 2 / 3, 2e-4 / 3, 0.0])
    # the export holds both generators; G_A loads into a ResnetGenerator
    weights = load_file(str(run / "export" / "model.safetensors"))
    assert {k.split(".")[0] for k in weights} == {"source_to_target", "target_to_source"}
    generator = ResnetGenerator(ngf=8, n_blocks=1)
    prefix = "source_to_target."
    generator.load_state_dict(
        {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
    )
    meta = json.loads((run / "export" / "config.json").read_text())
    assert meta["config"]["method"]["name"] == "cyclegan" and meta["label_space"] is None
    # resuming a finished run with more iterations goes on from its checkpoint
    assert main(["translate", "train", "--resume", str(run), "train.iters=5"]) == 0
    assert sorted(p.name for p in (run / "samples").iterdir())[-1] == "step_000005.png"
    assert [r["step"] for r in read_log(run) if r["kind"] == "train"] == [1, 2, 3, 4, 5]


def test_translate_train_refuses_a_segmentation_method(tiny_folder, tmp_path, capsys) -> None:
    overrides = [f"data.streams.labeled.root={tiny_folder}", f"data.val.root={tiny_folder}"]
    assert main(["translate", "train", "demo/source_only", *overrides]) == 2
    err = capsys.readouterr().err
    assert "method.name: 'supervised' trains a segmenter" in err and "cyclegan" in err


def test_translate_needs_a_command(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["translate"])


def test_linear_decay_is_the_official_rule() -> None:
    decay = LinearDecay(total_iters=200, constant_iters=100)
    assert [decay(t) for t in (0, 99)] == [1.0, 1.0]
    assert decay(100) == pytest.approx(1 - 1 / 101)  # docs/METHODS.md, "CycleGAN": epoch 101
    assert decay(199) == pytest.approx(1 / 101)
    assert decay(200) == 0.0 and decay(300) == 0.0
    assert LinearDecay(total_iters=5)(2) == pytest.approx(1 - 1 / 4)  # constant: 5 // 2 = 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("schedule.name=cosine", "schedule.name.*linear_decay"),
        ("schedule.constant_iters=-1", "schedule.constant_iters.*>= 0"),
    ],
)
def test_schedule_keys_are_checked(override, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("translate/synthcity", [override])
