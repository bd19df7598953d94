"""Every packaged config loads, builds and trains two steps on fixture data laid out like its own."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

import segshift.engine.trainer as trainer_module
from helpers import TINY_METHOD_PARAMS, read_log
from segshift.config import is_pipeline_config, load_config, packaged_configs
from segshift.engine.trainer import Trainer

CONFIGS = sorted(
    str(p.relative_to(packaged_configs()).with_suffix(""))
    for p in packaged_configs().rglob("*.yaml")
    if p.name != "base.yaml" and not is_pipeline_config(p)  # pipelines: tests/pipeline
)


@pytest.fixture
def dataset_roots(
    make_cityscapes, make_gta5, make_synthia, make_camvid, make_voc, folder_factory, tmp_path
) -> dict[str, Path]:
    return {
        "cityscapes": make_cityscapes(),
        "gta5": make_gta5(),
        "synthia": make_synthia(),
        "camvid": make_camvid(),
        "voc": make_voc(aug=True) / "VOC2012",
        "folder": folder_factory(tmp_path / "folder"),
    }


def shrink(cfg, roots: dict[str, Path], out: Path) -> list[str]:
    """Overrides that point every dataset at its fixture and make the run tiny.

    Batches of 2: BatchNorm in train mode (e.g. the ASPP image-pooling branch) needs >1 value.
    """
    overrides = [f"output_dir={out}", "data.num_workers=0", "train.iters=2", "train.stop_at=null"]
    overrides += ["train.eval_every=2", "train.devices=1", "train.strategy=auto"]
    overrides += ["train.precision=32-true", "train.accelerator=cpu", "train.progress=plain"]
    datasets = {f"data.streams.{k}": v for k, v in cfg.data.streams.items()}
    if cfg.data.val is not None:  # translation configs (configs/translate) have none
        datasets["data.val"] = cfg.data.val
    for key, ds in datasets.items():
        overrides += [f"{key}.root={roots[ds.name]}", f"{key}.batch_size=2"]
        if ds.resize is not None:
            overrides.append(f"{key}.resize=[64,128]")
        if ds.crop_size is not None:
            overrides.append(f"{key}.crop_size=[64,64]")
        if ds.n_labeled is not None:
            overrides.append(f"{key}.n_labeled=2")
        if getattr(ds, "rcs_temperature", None) is not None:  # fixture labels are 32x64
            overrides.append(f"{key}.rcs_min_pixels=10")
    overrides += TINY_METHOD_PARAMS.get(cfg.method.name, [])  # e.g. U2PL's 600 MB banks
    if cfg.eval.crop_size is not None:
        overrides += ["eval.crop_size=[32,32]", "eval.stride=[16,16]"]
    return overrides


PLAIN = (torch.Tensor, int, float, str, bool, type(None))


def _plain_values(value: Any, where: str = "state") -> None:
    """What ``torch.load(weights_only=True)`` reads back: tensors, plain values, containers."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str | int), f"{where}: key {key!r}"
            _plain_values(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for k, item in enumerate(value):
            _plain_values(item, f"{where}[{k}]")
    else:
        assert isinstance(value, PLAIN), f"{where}: {type(value).__name__}"


@pytest.mark.parametrize("name", CONFIGS)
def test_packaged_config_trains_two_steps(
    name: str, dataset_roots, tmp_path: Path, monkeypatch
) -> None:
    cfg = load_config(name)
    if name.startswith("recipes/"):
        # GPU recipes: checkpoints of 0.5-1.5 GB, three per run, were a third of this test's
        # time; writing and exact resume are tested per method (tests/engine/test_trainer.py),
        # here only that the state is what a weights-only load reads back.
        written: list[str] = []

        def check_state(path, state, keep_previous=True) -> None:
            _plain_values(state)
            written.append(Path(path).name)

        monkeypatch.setattr(trainer_module, "save_checkpoint", check_state)
    trainer = Trainer(load_config(name, shrink(cfg, dataset_roots, tmp_path / "runs")))
    metrics = trainer.fit()
    samples = sorted(p.name for p in (trainer.run_dir / "samples").glob("*.png"))
    if cfg.method.params.get("classdist", {}).get("weight", 0) > 0:  # every step adds the term
        logged = [r for r in read_log(trainer.run_dir) if r["kind"] == "train"]
        assert logged and all("classdist" in r for r in logged), name
    shutil.rmtree(tmp_path / "runs")  # GPU recipes write checkpoints of up to ~1 GB each
    assert trainer.step == 2
    if name.startswith("recipes/"):
        assert "latest.pt" in written
    if not trainer.method.segments:  # image translation: sample grids instead of scores
        assert (metrics, samples) == ({}, ["step_000002.png"])
        return
    assert 0.0 <= metrics["pixel_accuracy"] <= 1.0
    assert len(metrics["iou"]) == trainer.num_classes
