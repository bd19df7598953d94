"""MinEnt: source cross-entropy plus the target's mean normalised entropy, per level."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segshift.config import load_config
from segshift.methods.common.losses import entropy_map
from segshift.registry import METHODS, MODELS

C = 5  # classes


class TwoLevel(nn.Module):
    """Logits at half resolution from a stride-2 conv, "out" and (optionally) "aux" heads."""

    def __init__(self, num_classes: int, multi_level: bool) -> None:
        super().__init__()
        self.encoder = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.classifier = nn.Conv2d(6, num_classes, 1)
        self.aux_classifier = nn.Conv2d(6, num_classes, 1) if multi_level else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = torch.relu(self.encoder(x))
        outputs = {"out": self.classifier(features)}
        if self.aux_classifier is not None:
            outputs["aux"] = self.aux_classifier(features)
        return outputs


@pytest.fixture
def make(monkeypatch):
    def two_level(num_classes, encoder=None, encoder_weights=None, multi_level=True):
        torch.manual_seed(0)
        return TwoLevel(num_classes, multi_level)

    monkeypatch.setitem(MODELS._builders, "two_level", two_level)

    def build(*overrides: str, multi_level: bool = True):
        cfg = load_config(
            None,
            [
                "method.name=minent",
                "model.arch=two_level",
                "model.normalization.preset=none",
                f"model.params.multi_level={str(multi_level).lower()}",
                *overrides,
            ],
        )
        return METHODS.build("minent", cfg=cfg, num_classes=C).train()

    return build


def batch() -> dict:
    g = torch.Generator().manual_seed(0)
    label = torch.randint(0, C, (2, 16, 24), generator=g)
    label[:, :2] = 255
    return {
        "source": {"image": torch.rand(2, 3, 16, 24, generator=g), "label": label},
        "target": {"image": torch.rand(2, 3, 16, 24, generator=g)},
    }


def uniform(method) -> None:
    for head in (method.model.classifier, method.model.aux_classifier):
        if head is not None:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)


def test_uniform_prediction_gives_lambda_times_one(make) -> None:
    method = make()
    uniform(method)
    out = method.training_step(batch(), 0)
    assert out["ent_main"].item() == pytest.approx(1.0, abs=1e-6)
    assert out["ent_aux"].item() == pytest.approx(1.0, abs=1e-6)
    assert out["ce"].item() == pytest.approx(math.log(C), abs=1e-6)  # ignored rows left out
    expected = (1 + 0.1) * math.log(C) + 0.001 * 1 + 0.0002 * 1
    assert out["loss"].item() == pytest.approx(expected, abs=1e-6)


def test_confident_prediction_has_no_entropy(make) -> None:
    method = make(multi_level=False)
    uniform(method)
    nn.init.constant_(method.model.classifier.bias[2:3], 50.0)
    out = method.training_step(batch(), 0)
    assert out["ent_main"].item() < 1e-15
    assert "ent_aux" not in out and "ce_aux" not in out
    assert list(method.configure_optimizers()) == ["model"]


def test_entropy_is_taken_at_input_resolution(make) -> None:
    method = make("method.params.lambda_ent_main=0.5", "model.align_corners=true")
    data = batch()
    out = method.training_step(data, 0)
    logits = method.model(data["target"]["image"])["out"]
    upsampled = F.interpolate(logits, size=(16, 24), mode="bilinear", align_corners=True)
    expected = entropy_map(torch.softmax(upsampled, 1)).mean()
    assert out["ent_main"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert out["loss"].item() == pytest.approx(
        (out["ce"] + 0.1 * out["ce_aux"] + 0.5 * out["ent_main"] + 0.0002 * out["ent_aux"]).item()
    )


def test_entropy_gradient_sharpens_the_target_prediction(make) -> None:
    """A descent step on the entropy alone raises the confidence of the argmax class."""
    method = make("method.params.lambda_seg=0", multi_level=False)
    uniform(method)
    with torch.no_grad():
        method.model.classifier.bias.copy_(torch.tensor([0.5, 0.0, 0.0, 0.0, 0.0]))
    data = batch()
    data["source"]["label"].fill_(255)  # no source pixels: the entropy is the only signal
    method.training_step(data, 0)["loss"].backward()
    bias = method.model.classifier.bias
    assert bias.grad[0] < 0 and all(bias.grad[1:] > 0)  # descent favours class 0
