"""Every packaged config loads, builds and trains two steps on fixture data laid out like its own."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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
    if cfg.eval.crop_size is not None:
        overrides += ["eval.crop_size=[32,32]", "eval.stride=[16,16]"]
    return overrides


@pytest.mark.parametrize("name", CONFIGS)
def test_packaged_config_trains_two_steps(name: str, dataset_roots, tmp_path: Path) -> None:
    cfg = load_config(name)
    trainer = Trainer(load_config(name, shrink(cfg, dataset_roots, tmp_path / "runs")))
    metrics = trainer.fit()
    samples = sorted(p.name for p in (trainer.run_dir / "samples").glob("*.png"))
    shutil.rmtree(tmp_path / "runs")  # GPU recipes write checkpoints of up to ~1 GB each
    assert trainer.step == 2
    if not trainer.method.segments:  # image translation: sample grids instead of scores
        assert (metrics, samples) == ({}, ["step_000002.png"])
        return
    assert 0.0 <= metrics["pixel_accuracy"] <= 1.0
    assert len(metrics["iou"]) == trainer.num_classes
