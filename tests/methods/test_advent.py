"""AdvEnt: the discriminators see weighted self-information maps; the optional entropy term."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segshift.config import load_config
from segshift.methods.common.losses import entropy_map, self_information
from segshift.registry import METHODS, MODELS

C = 4  # classes


class TwoLevel(nn.Module):
    """Logits at half resolution from a stride-2 conv + BatchNorm, "out" and "aux" heads."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.BatchNorm2d(6))
        self.classifier = nn.Conv2d(6, num_classes, 1)
        self.aux_classifier = nn.Conv2d(6, num_classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = torch.relu(self.encoder(x))
        return {"out": self.classifier(features), "aux": self.aux_classifier(features)}


@pytest.fixture
def make(monkeypatch):
    def two_level(num_classes, encoder=None, encoder_weights=None):
        torch.manual_seed(0)
        return TwoLevel(num_classes)

    monkeypatch.setitem(MODELS._builders, "two_level", two_level)

    def build(*overrides: str):
        cfg = load_config(
            None,
            [
                "method.name=advent",
                "model.arch=two_level",
                "model.normalization.preset=none",
                "model.align_corners=true",
                *overrides,
            ],
        )
        return METHODS.build("advent", cfg=cfg, num_classes=C).train()

    return build


def batch() -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "source": {
            "image": torch.rand(2, 3, 32, 48, generator=g),
            "label": torch.randint(0, C, (2, 32, 48), generator=g),
        },
        "target": {"image": torch.rand(2, 3, 32, 48, generator=g)},
    }


def test_defaults_are_advent_without_entropy_term(make) -> None:
    method = make()
    assert method.adv_weights == {"main": 0.001, "aux": 0.0002}
    assert method.ent_weights == {}
    out = method.training_step(batch(), 0)
    assert not any(key.startswith("ent_") for key in out)


@pytest.mark.parametrize("level", ["main", "aux"])
def test_discriminators_see_self_information(make, level: str) -> None:
    method = make()
    seen = []
    method.discriminators[level].register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    data = batch()
    method.training_step(data, 0)
    target_map = seen[0]  # the generator term comes first
    key = {"main": "out", "aux": "aux"}[level]
    logits = method.model(data["target"]["image"])[key]  # train-mode BN: same batch statistics
    probs = torch.softmax(
        F.interpolate(logits, size=(32, 48), mode="bilinear", align_corners=True), dim=1
    )
    expected = -probs * torch.log2(probs + 1e-30) / math.log2(C)  # ADVENT's prob_2_entropy
    assert target_map.shape == (2, C, 32, 48)
    assert torch.allclose(target_map, expected, atol=1e-6)
    assert torch.allclose(target_map.sum(1), entropy_map(probs), atol=1e-6)
    assert target_map.sum(1).max() <= 1 + 1e-6 and target_map.min() >= 0


def test_uniform_prediction_gives_one_over_c_per_channel(make) -> None:
    method = make()
    for head in (method.model.classifier, method.model.aux_classifier):
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
    seen = []
    method.discriminators["main"].register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    method.training_step(batch(), 0)
    assert all(torch.allclose(m, torch.full_like(m, 1 / C)) for m in seen)
    assert torch.allclose(self_information(torch.full((1, C, 1, 1), 1 / C)).sum(), torch.ones(()))


def test_joint_entropy_term_adds_to_the_adversarial_loss(make) -> None:
    method = make("method.params.lambda_ent_main=0.5", "method.params.lambda_ent_aux=0.25")
    out = method.training_step(batch(), 0)
    adversarial = sum(
        w * out[f"adv_{lvl}"] + out[f"d_{lvl}"] for lvl, w in (("main", 0.001), ("aux", 0.0002))
    )
    entropy = 0.5 * out["ent_main"] + 0.25 * out["ent_aux"]
    expected = out["ce"] + 0.1 * out["ce_aux"] + adversarial + entropy
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert 0 < out["ent_main"].item() < 1
