"""Optimizers: head LR multiplier and the official DeepLab-v2 repeated backbone parameters."""

from __future__ import annotations

import io
import warnings
from collections import Counter
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import segshift.models  # noqa: F401  (registers the models)
from helpers import assert_resume_exact
from segshift.errors import ConfigError
from segshift.methods.common.optim import (
    RepeatSGD,
    build_optimizer,
    official_repeat_counts,
    param_groups,
)
from segshift.registry import MODELS

LR, MOMENTUM, WD = 0.1, 0.9, 0.1


def sgd_cfg(name: str = "sgd", nesterov: bool = False) -> SimpleNamespace:
    return SimpleNamespace(
        name=name,
        lr=LR,
        momentum=MOMENTUM,
        nesterov=nesterov,
        weight_decay=WD,
        betas=[0.9, 0.999],
    )


@pytest.fixture(scope="module")
def deeplab() -> nn.Module:
    torch.manual_seed(0)
    return MODELS.build("deeplabv2", num_classes=3, encoder="resnet50")


def test_legacy_repeats_match_hand_computed_values():
    """PyTorch 0.4 semantics: wd * p is added into the gradient in place at every repeat."""
    p = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = RepeatSGD([{"params": [p], "repeats": [2]}], lr=LR, momentum=MOMENTUM, weight_decay=WD)
    # step 1, g = 0.5
    #   repeat 1: d = 0.5 + 0.1*1.0 = 0.6;            b = 0.6;                p = 1 - 0.06 = 0.94
    #   repeat 2: d = 0.6 + 0.1*0.94 = 0.694;         b = 0.9*0.6 + 0.694 = 1.234; p = 0.8166
    p.grad = torch.tensor([0.5], dtype=torch.float64)
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([0.8166], dtype=torch.float64))
    torch.testing.assert_close(opt.state[p]["momentum_buffer"], torch.tensor([1.234]).double())
    assert p.grad.item() == 0.5  # the gradient is left untouched
    # step 2, g = -0.2
    #   repeat 1: d = -0.2 + 0.08166 = -0.11834;      b = 1.1106 - 0.11834 = 0.99226
    #             p = 0.8166 - 0.099226 = 0.717374
    #   repeat 2: d = -0.11834 + 0.0717374 = -0.0466026; b = 0.893034 - 0.0466026 = 0.8464314
    #             p = 0.717374 - 0.08464314 = 0.63273086
    p.grad = torch.tensor([-0.2], dtype=torch.float64)
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([0.63273086], dtype=torch.float64))
    torch.testing.assert_close(opt.state[p]["momentum_buffer"], torch.tensor([0.8464314]).double())


def legacy_sgd_reference(p0, grads, k, nesterov):
    """PyTorch 0.4's SGD loop over a group that lists one parameter k times, written out."""
    p, state = p0.clone(), {}
    for g in grads:
        grad = g.clone()  # p.grad, which 0.4 modifies in place
        for _ in range(k):
            grad += WD * p
            if "buf" not in state:
                state["buf"] = grad.clone()
            else:
                state["buf"] = MOMENTUM * state["buf"] + grad
            d = grad + MOMENTUM * state["buf"] if nesterov else state["buf"]
            p = p - LR * d
    return p, state["buf"]


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("k", [1, 3, 4])
def test_legacy_repeats_match_the_pytorch_04_loop(k, nesterov):
    gen = torch.Generator().manual_seed(k)
    p0 = torch.randn(5, generator=gen, dtype=torch.float64)
    grads = [torch.randn(5, generator=gen, dtype=torch.float64) for _ in range(3)]
    p = nn.Parameter(p0.clone())
    opt = RepeatSGD(
        [{"params": [p], "repeats": [k]}],
        lr=LR,
        momentum=MOMENTUM,
        weight_decay=WD,
        nesterov=nesterov,
    )
    for g in grads:
        p.grad = g.clone()
        opt.step()
    want_p, want_buf = legacy_sgd_reference(p0, grads, k, nesterov)
    torch.testing.assert_close(p.detach(), want_p, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(opt.state[p]["momentum_buffer"], want_buf, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("nesterov", [False, True])
def test_one_step_with_repeats_equals_k_plain_sgd_steps(nesterov):
    """Without the decay accumulation, k repeats are exactly k torch.optim.SGD steps."""
    k = 3
    gen = torch.Generator().manual_seed(0)
    p0 = torch.randn(4, 3, generator=gen)
    grads = [torch.randn(4, 3, generator=gen) for _ in range(3)]
    p, q = nn.Parameter(p0.clone()), nn.Parameter(p0.clone())
    kw = dict(lr=LR, momentum=MOMENTUM, weight_decay=WD, nesterov=nesterov)
    repeated = RepeatSGD([{"params": [p], "repeats": [k]}], accumulate_decay=False, **kw)
    plain = torch.optim.SGD([q], foreach=False, **kw)
    for g in grads:
        p.grad = g.clone()
        repeated.step()
        for _ in range(k):
            q.grad = g.clone()
            plain.step()
        assert torch.equal(p, q)
        assert torch.equal(repeated.state[p]["momentum_buffer"], plain.state[q]["momentum_buffer"])


def test_without_repeats_it_is_torch_sgd():
    gen = torch.Generator().manual_seed(0)
    p0 = torch.randn(6, generator=gen)
    p, q = nn.Parameter(p0.clone()), nn.Parameter(p0.clone())
    kw = dict(lr=LR, momentum=MOMENTUM, weight_decay=WD)
    ours, theirs = RepeatSGD([p], **kw), torch.optim.SGD([q], foreach=False, **kw)
    for _ in range(3):
        g = torch.randn(6, generator=gen)
        p.grad, q.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    assert torch.equal(p, q)


def test_deeplabv2_repeat_counts_follow_the_official_generator(deeplab):
    encoder = deeplab.encoder
    counts = official_repeat_counts(encoder)
    assert counts["conv1.weight"] == 1
    assert counts["layer1.0.conv1.weight"] == 3
    assert counts["layer1.0.downsample.0.weight"] == 4
    assert counts["layer4.2.conv3.weight"] == 3
    for name, count in counts.items():
        assert count == name.count("."), name

    groups = param_groups(deeplab, 1.0, 10.0, official_repeats=True)
    backbone, head = groups
    assert backbone["name"] == "backbone" and head["name"] == "head"
    # The official get_1x_lr_params_NOscale walk, as a multiset of parameters.
    official = Counter()
    blocks = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")
    for block in (getattr(encoder, name) for name in blocks):
        for module in block.modules():
            official.update(id(p) for p in module.parameters() if p.requires_grad)
    ours = Counter()
    for p, k in zip(backbone["params"], backbone["repeats"], strict=True):
        ours[id(p)] += k
    assert ours == official
    assert sum(backbone["repeats"]) == 161  # ResNet-50: 1 + 31 + 40 + 58 + 31
    # Frozen BatchNorm parameters are left out; the classifier is listed once, at 10x.
    bn_ids = {
        id(p) for m in encoder.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()
    }
    assert not bn_ids & {id(p) for p in backbone["params"]}
    assert "repeats" not in head and head["lr"] == 10.0
    assert {id(p) for p in head["params"]} == {id(p) for p in deeplab.classifier.parameters()}
    assert "repeats" not in param_groups(deeplab, 1.0, 10.0)[0]


def test_build_optimizer_picks_repeat_sgd_without_warnings(deeplab):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt = build_optimizer(sgd_cfg(), param_groups(deeplab, LR, 10.0, official_repeats=True))
    assert type(opt) is RepeatSGD
    plain = build_optimizer(sgd_cfg(), param_groups(deeplab, LR, 10.0))
    assert type(plain) is torch.optim.SGD


@pytest.mark.parametrize("name", ["adamw", "adam"])
def test_repeats_need_sgd(deeplab, name):
    with pytest.raises(ConfigError, match="official_param_repeats"):
        build_optimizer(sgd_cfg(name), param_groups(deeplab, LR, 10.0, official_repeats=True))


def test_repeats_need_an_encoder():
    with pytest.raises(ConfigError, match="encoder"):
        param_groups(nn.Linear(2, 2), LR, 10.0, official_repeats=True)


def test_repeat_sgd_rejects_listed_duplicates():
    p = nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="once"):
        RepeatSGD([{"params": [p, p]}], lr=LR)
    with pytest.raises(ValueError, match="repeats"):
        RepeatSGD([{"params": [p], "repeats": [0]}], lr=LR)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Sequential(nn.Linear(3, 4)), nn.Linear(4, 4))
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def test_state_dict_round_trip():
    torch.manual_seed(0)
    model = Tiny()
    groups = param_groups(model, LR, 10.0, official_repeats=True)
    assert groups[0]["repeats"] == [2, 2, 1, 1]  # 0.0.weight/bias, 1.weight/bias
    opt = build_optimizer(sgd_cfg(nesterov=True), groups)
    x = torch.randn(5, 3)

    def train_step(m: nn.Module, o: torch.optim.Optimizer) -> None:
        o.zero_grad()
        m(x).square().mean().backward()
        o.step()

    for _ in range(2):
        train_step(model, opt)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)

    fresh = Tiny()
    fresh.load_state_dict(saved["model"])
    fresh_opt = build_optimizer(sgd_cfg(nesterov=True), param_groups(fresh, LR, 10.0, True))
    fresh_opt.load_state_dict(saved["opt"])
    assert fresh_opt.param_groups[0]["repeats"] == [2, 2, 1, 1]
    train_step(model, opt)
    train_step(fresh, fresh_opt)
    for a, b in zip(model.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(a, b)


def test_trainer_resume_is_exact_with_official_repeats(tiny_config, tmp_path):
    straight, _ = assert_resume_exact(
        tiny_config,
        tmp_path,
        "optim.name=sgd",
        "optim.official_param_repeats=true",
        "optim.clip_grad_norm=1.0",
    )
    assert type(straight.optimizers["model"].optimizer) is RepeatSGD
