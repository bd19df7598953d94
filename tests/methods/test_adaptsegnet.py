"""AdaptSegNet (and the per-level pieces it shares with AdvEnt) against values computed by hand.

A tiny two-level segmenter stands in for the multi-level DeepLab-v2: logits at half resolution
from a stride-2 conv + BatchNorm, "out" and (optionally) "aux" heads.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import TwoLevel, two_level
from segshift.config import load_config
from segshift.errors import ConfigError
from segshift.methods.common.multi_level import level_adversarial_losses, output_levels
from segshift.registry import METHODS, MODELS

C = 4  # classes


@pytest.fixture
def make(monkeypatch):
    monkeypatch.setitem(MODELS._builders, "two_level", two_level)

    def build(name: str, *overrides: str, multi_level: bool = True):
        cfg = load_config(
            None,
            [
                f"method.name={name}",
                "model.arch=two_level",
                "model.normalization.preset=none",
                "model.align_corners=true",
                f"model.params.multi_level={str(multi_level).lower()}",
                *overrides,
            ],
        )
        method = METHODS.build(name, cfg=cfg, num_classes=C)
        method.train()
        return method

    return build


def batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, C, (2, 32, 48), generator=g)
    label[:, 0] = 255
    return {
        "source": {"image": torch.rand(2, 3, 32, 48, generator=g), "label": label},
        "target": {"image": torch.rand(2, 3, 32, 48, generator=g)},
    }


def constant_discriminator(value: float) -> nn.Module:
    """D(x) = value everywhere (a 1x1 conv with zero weights)."""
    conv = nn.Conv2d(C, 1, 1)
    nn.init.zeros_(conv.weight)
    nn.init.constant_(conv.bias, value)
    return conv


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_one_discriminator_per_predicted_level(make) -> None:
    multi = make("adaptsegnet")
    assert list(multi.discriminators) == ["main", "aux"]
    assert list(multi.configure_optimizers()) == [
        "model",
        "discriminator_main",
        "discriminator_aux",
    ]
    assert list(make("adaptsegnet", multi_level=False).discriminators) == ["main"]
    assert list(make("adaptsegnet", "method.params.lambda_adv_aux=0").discriminators) == ["main"]
    optimizer = multi.configure_optimizers()["discriminator_aux"]
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.param_groups[0]["lr"] == 1e-4
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.99)


def test_probing_the_levels_leaves_batchnorm_statistics_alone() -> None:
    model = TwoLevel(C).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert output_levels(model) == ("main", "aux")
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_helper_directions_and_ls_by_hand() -> None:
    """D(x) = x on one channel: source maps 1, target maps 3. Source label 0, target label 1."""
    disc = nn.Conv2d(1, 1, 1)
    nn.init.ones_(disc.weight)
    nn.init.zeros_(disc.bias)
    discs = nn.ModuleDict({"main": disc})
    source, target = {"main": torch.ones(1, 1, 2, 2)}, {"main": torch.full((1, 1, 2, 2), 3.0)}
    total, metrics = level_adversarial_losses(discs, source, target, {"main": 0.5})
    assert metrics["adv_main"].item() == pytest.approx(softplus(3.0))  # D(target) -> 0
    assert metrics["d_main"].item() == pytest.approx((softplus(1.0) + softplus(-3.0)) / 2)
    assert total.item() == pytest.approx(0.5 * softplus(3.0) + metrics["d_main"].item())
    total, metrics = level_adversarial_losses(discs, source, target, {"main": 0.5}, "ls")
    assert metrics["adv_main"].item() == pytest.approx(9.0)  # MSE to 0
    assert metrics["d_main"].item() == pytest.approx((1.0 + 4.0) / 2)  # (1-0)^2, (3-1)^2


@pytest.mark.parametrize(
    ("mode", "adv", "d"),
    [
        ("vanilla", softplus(2.0), (softplus(2.0) + softplus(-2.0)) / 2),
        ("ls", 4.0, (4.0 + 1.0) / 2),
    ],
)
def test_step_losses_by_hand(make, mode: str, adv: float, d: float) -> None:
    method = make("adaptsegnet", f"method.params.gan_mode={mode}")
    method.discriminators["main"] = constant_discriminator(2.0)
    method.discriminators["aux"] = constant_discriminator(2.0)
    out = method.training_step(batch(), 0)
    for level in ("main", "aux"):
        assert out[f"adv_{level}"].item() == pytest.approx(adv)
        assert out[f"d_{level}"].item() == pytest.approx(d)
    expected = out["ce"] + 0.1 * out["ce_aux"] + (0.001 + 0.0002) * adv + 2 * d
    assert out["loss"].item() == pytest.approx(expected.item())


def test_discriminator_sees_softmax_at_input_size(make) -> None:
    method = make("adaptsegnet")
    seen = []
    method.discriminators["aux"].register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    data = batch()
    method.training_step(data, 0)
    target_map, source_map = seen[0], seen[1]  # generator term first, then D's terms
    logits = method.model(data["target"]["image"])["aux"]  # train-mode BN: same batch statistics
    expected = torch.softmax(
        F.interpolate(logits, size=(32, 48), mode="bilinear", align_corners=True), dim=1
    )
    assert target_map.shape == (2, C, 32, 48) and source_map.shape == (2, C, 32, 48)
    assert torch.allclose(target_map, expected, atol=1e-6)
    assert target_map.requires_grad and not source_map.requires_grad
    assert torch.allclose(source_map.sum(1), torch.ones(2, 32, 48))


@pytest.mark.parametrize("name", ["adaptsegnet", "advent"])
def test_generator_term_trains_only_the_segmenter_and_d_term_only_the_discriminators(
    make, name: str
) -> None:
    method = make(name, "method.params.lambda_adv_main=10", "method.params.lambda_adv_aux=5")
    data = batch()

    def gradients() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        method.zero_grad(set_to_none=True)
        method.training_step(data, 0)["loss"].backward()
        return (
            [p.grad.clone() for p in method.model.parameters()],
            [p.grad.clone() for p in method.discriminators.parameters()],
        )

    seg_full, disc_full = gradients()
    method.adv_weights = {"main": 0.0, "aux": 0.0}
    seg_without_g, disc_without_g = gradients()
    # the discriminators' gradients do not depend on the generator weight: G gives them nothing
    assert all(torch.allclose(a, b) for a, b in zip(disc_full, disc_without_g))
    # without G the segmenter's gradient is the source loss's alone: D's term gives it nothing
    method.zero_grad(set_to_none=True)
    source = data["source"]
    method.source_loss(method.model(source["image"]), source["label"])[0].backward()
    seg_only = [p.grad for p in method.model.parameters()]
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(seg_without_g, seg_only))
    assert not all(torch.allclose(a, b) for a, b in zip(seg_full, seg_without_g))


def test_bad_params_are_config_errors(make) -> None:
    with pytest.raises(ConfigError, match="gan_mode"):
        make("adaptsegnet", "method.params.gan_mode=wgan")
    with pytest.raises(ConfigError, match="lambda_adv_main"):
        make("adaptsegnet", "method.params.lambda_adv_mian=0.1")
