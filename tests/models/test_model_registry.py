"""Every registered segmentation model runs forward + backward on a tiny batch."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from segshift.errors import ConfigError
from segshift.models import DISCRIMINATORS, MODELS, build_model
from segshift.models.parts import channel_dropout

NUM_CLASSES = 5
SEGMENTATION_MODELS = [name for name in MODELS.names() if name not in DISCRIMINATORS]
# Small stand-ins so the suite stays fast; models not listed use resnet18.
SMALL: dict[str, dict[str, Any]] = {
    "segformer": {"encoder": "mit_b0"},
    "deeplabv2": {"encoder": "resnet50", "params": {"multi_level": True}},
}


def model_config(arch: str, **overrides: Any) -> SimpleNamespace:
    fields = {"arch": arch, "encoder": "resnet18", "encoder_weights": None, "params": {}}
    fields.update(SMALL.get(arch, {}))
    fields.update(overrides)
    return SimpleNamespace(**fields)


@pytest.mark.parametrize("arch", SEGMENTATION_MODELS)
def test_forward_backward(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(model_config(arch), NUM_CLASSES)
    outputs = model(torch.randn(2, 3, 64, 64))

    assert isinstance(outputs, dict) and "out" in outputs
    assert set(outputs) <= {"out", "aux", "feat"}
    for key in outputs.keys() & {"out", "aux"}:
        assert outputs[key].shape[:2] == (2, NUM_CLASSES)
    sum(logits.float().mean() for logits in outputs.values()).backward()

    encoder_params = {id(p) for p in model.encoder.parameters()}
    head_params = [p for p in model.parameters() if id(p) not in encoder_params]
    assert encoder_params and head_params
    # Every trainable parameter must get a gradient: DDP rejects unused ones.
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, f"{name} gets no gradient"
            assert torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize("arch", SEGMENTATION_MODELS)
def test_model_in_parts(arch: str) -> None:
    """forward(x, perturb, return_feat): the perturbation reaches the decoder, "feat" is the head's
    input with .feat_channels channels, and every trainable parameter still gets a gradient."""
    torch.manual_seed(0)
    model = build_model(model_config(arch), NUM_CLASSES).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        plain = model(x)
        parts = model(x, perturb=lambda features: features, return_feat=True)
        both = model(x, perturb=channel_dropout(0.5, keep_clean=True))
    assert set(parts) == set(plain) | {"feat"}
    torch.testing.assert_close(parts["out"], plain["out"])
    assert parts["feat"].shape[:2] == (2, model.feat_channels)
    assert both["out"].shape[0] == 4  # [clean; dropped out] decoded in one pass
    clean, dropped = both["out"].chunk(2)
    torch.testing.assert_close(clean, plain["out"])
    assert (dropped - clean).abs().max() > 1e-3

    seen = []
    model.train()
    out = model(
        x, perturb=lambda features: seen.append(len(features)) or features, return_feat=True
    )
    assert seen and seen[0] >= 2  # the stage features, shallow to deep
    sum(v.float().mean() for v in out.values()).backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, f"{name} gets no gradient"


def test_channel_dropout_drops_whole_channels_and_rescales() -> None:
    torch.manual_seed(0)
    features = [torch.ones(2, 64, 3, 3)]
    (dropped,) = channel_dropout(0.5)(features)
    per_channel = dropped.flatten(2)
    assert set(per_channel.unique().tolist()) == {0.0, 2.0}  # kept channels scaled by 1 / (1 - p)
    assert (per_channel.amin(-1) == per_channel.amax(-1)).all()  # whole channels
    assert 0.3 < (per_channel[..., 0] == 0).float().mean() < 0.7
    with pytest.raises(ValueError, match="p must be in"):
        channel_dropout(1.0)


@pytest.mark.parametrize("arch", ["fast", "unet"])
def test_any_input_size_gives_logits_at_input_size(arch: str) -> None:
    model = build_model(model_config(arch), NUM_CLASSES).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 50, 70))["out"]
    assert out.shape == (1, NUM_CLASSES, 50, 70)


def test_unknown_arch_is_a_config_error_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match="did you mean 'unet'"):
        build_model(model_config("unet2"), NUM_CLASSES)


def test_discriminator_is_not_a_segmentation_model() -> None:
    with pytest.raises(ConfigError, match="discriminator"):
        build_model(model_config("patchgan"), NUM_CLASSES)


def test_unknown_param_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="model.params"):
        build_model(model_config("fast", params={"no_such_option": 1}), NUM_CLASSES)


def test_unknown_timm_encoder_is_a_config_error_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match="did you mean 'mobilenetv3_large_100'"):
        build_model(model_config("fast", encoder="tu-mobilenetv3_large"), NUM_CLASSES)


def test_timm_encoder() -> None:
    model = build_model(model_config("fast", encoder="tu-mobilenetv3_small_050"), NUM_CLASSES)
    assert model(torch.randn(1, 3, 64, 64))["out"].shape == (1, NUM_CLASSES, 64, 64)


@pytest.mark.parametrize("arch", ["fast", "deeplabv2"])
def test_model_dropout_is_training_noise_without_parameters(arch: str) -> None:
    """model.dropout (Noisy Student): the head's input is dropped in training only, and the
    weights load into a model without dropout (a student from its teacher)."""
    torch.manual_seed(0)
    plain = build_model(model_config(arch), NUM_CLASSES)
    noisy = build_model(model_config(arch, dropout=0.5), NUM_CLASSES)
    noisy.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 64, 64)
    plain.eval(), noisy.eval()
    with torch.no_grad():
        torch.testing.assert_close(noisy(x)["out"], plain(x)["out"])
        noisy.train()
        first, second = noisy(x)["out"], noisy(x)["out"]
    assert (first - second).abs().max() > 1e-3  # a fresh dropout mask each call
    with pytest.raises(ConfigError, match="model.dropout"):
        build_model(model_config(arch, dropout=1.0), NUM_CLASSES)
