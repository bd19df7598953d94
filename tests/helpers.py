"""Helpers shared by test modules (``tests`` is on pytest's pythonpath)."""

from __future__ import annotations

import json

import torch
from torch import nn

from segshift.engine.trainer import Trainer


class TwoLevel(nn.Module):
    """A multi-level stand-in for DeepLab-v2: a stride-2 conv + BatchNorm encoder, 1x1 "out"
    and (optionally) "aux" heads on the same features."""

    def __init__(self, num_classes: int, multi_level: bool = True) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.BatchNorm2d(6))
        self.classifier = nn.Conv2d(6, num_classes, 1)
        self.aux_classifier = nn.Conv2d(6, num_classes, 1) if multi_level else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = torch.relu(self.encoder(x))
        outputs = {"out": self.classifier(features)}
        if self.aux_classifier is not None:
            outputs["aux"] = self.aux_classifier(features)
        return outputs


def two_level(num_classes, encoder=None, encoder_weights=None, multi_level=True) -> TwoLevel:
    """Builder for ``MODELS`` (monkeypatched in as ``two_level``), seeded for fixed weights."""
    torch.manual_seed(0)
    return TwoLevel(num_classes, multi_level)


def read_log(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def every_stream(root) -> list[str]:
    """Overrides giving every stream name a method may ask for, all on the tiny dataset."""
    overrides = []
    for name, labeled in (("source", True), ("target", False), ("unlabeled", False)):
        prefix = f"data.streams.{name}"
        overrides += [
            f"{prefix}.name=folder",
            f"{prefix}.root={root}",
            f"{prefix}.labeled={str(labeled).lower()}",
            f"{prefix}.batch_size=2",
            f"{prefix}.crop_size=[32,32]",
            f"{prefix}.hflip=true",
        ]
    return overrides


# Methods whose default networks are big for a CPU test: small widths, same code paths.
TINY_METHOD_PARAMS = {
    "cyclegan": ["method.params.ngf=8", "method.params.n_blocks=1", "method.params.ndf=8"],
    # bank caps that a few tiny steps can reach (official: 50,000 + 30,000 keys per class); the
    # growth to the cap and the dropping of the oldest keys are tested in tests/methods/test_u2pl.py
    "u2pl": ["method.params.queue_size=512", "method.params.queue_size_first=512"],
}


def method_overrides(method: str) -> list[str]:
    """``method.name=<method>`` and the method's tiny network sizes, if it has any."""
    return [f"method.name={method}", *TINY_METHOD_PARAMS.get(method, [])]


def assert_resume_exact(tiny_config, tmp_path, *extra: str) -> tuple[Trainer, Trainer]:
    """2N steps in one go == N steps, stop, resume, N steps: weights, optimizer state, losses."""
    straight = Trainer(tiny_config("train.iters=4", f"output_dir={tmp_path / 'a'}", *extra))
    straight.fit()
    first = Trainer(tiny_config("train.stop_at=2", f"output_dir={tmp_path / 'b'}", *extra))
    first.fit()
    assert first.step == 2
    resumed = Trainer(tiny_config("train.iters=4", f"output_dir={tmp_path / 'b'}", *extra))
    resumed.fit()
    a, b = straight.method.state_dict(), resumed.method.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key

    def losses(trainer: Trainer) -> list[dict]:
        records = [r for r in read_log(trainer.run_dir) if r["kind"] == "train"]
        return [{k: v for k, v in r.items() if k not in ("time", "sec_per_step")} for r in records]

    assert losses(straight) == losses(resumed)
    assert straight.optimizers.keys() == resumed.optimizers.keys()
    for name in straight.optimizers:
        state_a = straight.optimizers[name].state_dict()["state"]
        state_b = resumed.optimizers[name].state_dict()["state"]
        assert state_a.keys() == state_b.keys()
        for key in state_a:
            for field, value in state_a[key].items():
                assert torch.equal(value, state_b[key][field]), (name, key, field)
    return straight, resumed
