"""`supervised` on several labeled streams (the loop's student) and its optional CutMix term."""

from __future__ import annotations

import pytest
import torch

from segshift.engine.trainer import Trainer
from segshift.errors import ConfigError


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


def test_supervised_student_cutmix_pastes_half_of_the_first_stream(tiny_config, tiny_folder):
    streams = []
    for name in ("source", "target"):
        streams += [f"data.streams.{name}.name=folder", f"data.streams.{name}.root={tiny_folder}"]
    cfg = tiny_config(
        *streams, "method.params.streams=[source,target]", "method.params.mix_weight=0.5"
    )
    method = Trainer(cfg).method
    seen = []
    loss = method._loss
    method._loss = lambda logits, label: seen.append(label.clone()) or loss(logits, label)
    first = {"image": torch.rand(2, 3, 32, 32), "label": torch.zeros(2, 32, 32, dtype=torch.long)}
    second = {"image": torch.rand(2, 3, 32, 32), "label": torch.ones(2, 32, 32, dtype=torch.long)}
    out = method.training_step({"source": first, "target": second}, step=3)
    plain, mixed = seen
    assert plain.shape == (4, 32, 32)  # the two streams concatenated
    share = (mixed == 0).float().mean(dim=(1, 2))  # a box of half of each image from `source`
    assert torch.allclose(share, torch.tensor([0.5, 0.5]), atol=0.05)
    assert out["loss"].item() == pytest.approx(out["ce"].item() + 0.5 * out["mixed"].item())
    with pytest.raises(ConfigError, match="mix_weight needs two streams"):
        Trainer(tiny_config("method.params.mix_weight=1"))
