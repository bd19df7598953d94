"""The trainer serves what later methods need: two streams, an EMA teacher, a discriminator
with its own optimizer, one backward per step, and exact resume of all of it.

The method below is a test double shaped like AdaptSegNet + an EMA teacher; it is registered
only for these tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from helpers import assert_resume_exact, every_stream
from segshift.methods.base import Method
from segshift.methods.common.ema import ema_update, make_teacher
from segshift.methods.common.losses import cross_entropy, resize_logits
from segshift.methods.common.optim import build_optimizer, param_groups
from segshift.models import build_model
from segshift.registry import METHODS, MODELS


@dataclass
class ToyParams:
    adv_weight: float = 0.01
    alpha: float = 0.99


class ToyAdversarialTeacher(Method):
    streams = ("source", "target")
    Params = ToyParams

    def __init__(self, cfg, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__(cfg, num_classes, ignore_index)
        self.model = build_model(cfg.model, num_classes)
        self.teacher = make_teacher(self.model)
        self.discriminator = MODELS.build("fc_discriminator", in_channels=num_classes)

    def training_step(self, batch, step):
        source, target = batch["source"], batch["target"]
        logits_s = self.model(source["image"])["out"]
        logits_t = resize_logits(self.model(target["image"])["out"], target["image"].shape[-2:])
        seg = cross_entropy(logits_s, source["label"])
        p_s = torch.softmax(resize_logits(logits_s, source["image"].shape[-2:]), 1)
        p_t = torch.softmax(logits_t, 1)
        self.discriminator.requires_grad_(False)
        d_t = self.discriminator(p_t)
        adv = F.binary_cross_entropy_with_logits(d_t, torch.zeros_like(d_t))
        self.discriminator.requires_grad_(True)
        d_src, d_tgt = self.discriminator(p_s.detach()), self.discriminator(p_t.detach())
        d_loss = 0.5 * (
            F.binary_cross_entropy_with_logits(d_src, torch.zeros_like(d_src))
            + F.binary_cross_entropy_with_logits(d_tgt, torch.ones_like(d_tgt))
        )
        total = seg + self.params.adv_weight * adv + d_loss
        return {"loss": total, "seg": seg.detach(), "adv": adv.detach(), "d": d_loss.detach()}

    def configure_optimizers(self):
        optim = self.cfg.optim
        model = build_optimizer(optim, param_groups(self.model, optim.lr, optim.head_lr_mult))
        disc = torch.optim.Adam(self.discriminator.parameters(), lr=1e-4, betas=(0.9, 0.99))
        return {"model": model, "discriminator": disc}

    def after_step(self, step: int) -> None:
        ema_update(self.teacher, self.model, self.params.alpha, step)

    def eval_model(self):
        return self.teacher


@pytest.fixture
def toy_method(monkeypatch) -> str:
    monkeypatch.setitem(METHODS._builders, "toy_adversarial_teacher", ToyAdversarialTeacher)
    return "toy_adversarial_teacher"


def test_toy_method_resumes_exactly(toy_method, tiny_config, tiny_folder, tmp_path) -> None:
    straight, _ = assert_resume_exact(
        tiny_config, tmp_path, f"method.name={toy_method}", *every_stream(tiny_folder)
    )
    method = straight.method
    assert set(straight.optimizers) == {"model", "discriminator"}
    fresh = ToyAdversarialTeacher(straight.cfg, straight.num_classes)
    moved = [
        not torch.equal(a, b)
        for a, b in zip(method.discriminator.parameters(), fresh.discriminator.parameters())
    ]
    assert all(moved)  # the discriminator was trained
    student, teacher = method.model.state_dict(), method.teacher.state_dict()
    differs = [
        k
        for k in student
        if student[k].is_floating_point() and not torch.equal(student[k], teacher[k])
    ]
    assert differs  # the teacher is an average, not a copy
    records = [r for r in straight.run_dir.joinpath("log.jsonl").read_text().splitlines()]
    assert all('"adv"' in r and '"d"' in r for r in records if '"kind": "train"' in r)
