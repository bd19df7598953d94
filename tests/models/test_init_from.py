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
