"""`model.init_from`: a model starts from a trained run's weights (the loop's student)."""

from __future__ import annotations

import pytest
import torch

from segshift.engine.trainer import Trainer
from segshift.errors import ConfigError
from segshift.models import build_model


def test_init_from_run_loads_its_exported_weights(tiny_config) -> None:
    teacher = Trainer(tiny_config("name=teacher"))
    teacher.fit()
    cfg = tiny_config("name=student", f"model.init_from={teacher.run_dir}")
    student = build_model(cfg.model, 11)
    expected = teacher.method.eval_model().state_dict()
    for key, value in student.state_dict().items():
        assert torch.equal(value, expected[key]), key
    # the export directory and the file itself name the same weights
    for path in (teacher.run_dir / "export", teacher.run_dir / "export" / "model.safetensors"):
        cfg.model.init_from = str(path)
        other = build_model(cfg.model, 11)
        assert all(torch.equal(v, expected[k]) for k, v in other.state_dict().items())


def test_init_from_errors_name_the_path(tiny_config, tmp_path) -> None:
    cfg = tiny_config(f"model.init_from={tmp_path / 'nowhere'}")
    with pytest.raises(ConfigError, match="model.init_from: no trained weights at .*nowhere"):
        build_model(cfg.model, 11)
    teacher = Trainer(tiny_config("name=teacher"))
    teacher.fit()
    cfg = tiny_config(f"model.init_from={teacher.run_dir}")
    with pytest.raises(ConfigError, match="does not fit this model"):
        build_model(cfg.model, 5)  # other classes: the head's shape differs


def test_supervised_streams_train_on_one_concatenated_batch(tiny_config, tiny_folder) -> None:
    streams = []
    for name in ("source", "target"):
        streams += [
            f"data.streams.{name}.name=folder",
            f"data.streams.{name}.root={tiny_folder}",
            f"data.streams.{name}.batch_size={1 if name == 'source' else 3}",
            f"data.streams.{name}.crop_size=[32,32]",
        ]
    trainer = Trainer(tiny_config(*streams, "method.params.streams=[source,target]"))
    assert trainer.method.streams == ("source", "target")
    model, seen = trainer.method.model, []
    forward = model.forward
    model.forward = lambda x: (model.training and seen.append(x.shape[0])) or forward(x)
    trainer.fit()
    assert seen == [4] * 4  # 1 source + 3 target images in each of the 4 steps
