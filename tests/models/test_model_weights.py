"""encoder_weights: local files load into the encoder; failed downloads and bad paths explain."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import segmentation_models_pytorch as smp
import torch
from safetensors.torch import save_file

from segshift.errors import ConfigError
from segshift.models import build_model


def config(arch: str, encoder: str, encoder_weights: str | None) -> SimpleNamespace:
    return SimpleNamespace(arch=arch, encoder=encoder, encoder_weights=encoder_weights, params={})


def offline(*args: object, **kwargs: object) -> None:
    raise OSError("Name or service not known")


@pytest.mark.parametrize(
    "arch, encoder, patch_target",
    [
        ("fast", "resnet18", (smp.encoders, "hf_hub_download")),
        ("deeplabv2", "resnet50", (torch.hub, "load_state_dict_from_url")),
    ],
)
def test_failed_download_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch, arch: str, encoder: str, patch_target: tuple
) -> None:
    monkeypatch.setattr(*patch_target, offline)
    with pytest.raises(ConfigError, match="could not be downloaded") as info:
        build_model(config(arch, encoder, "imagenet"), num_classes=3)
    assert "model.encoder_weights" in str(info.value) and "null" in str(info.value)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_file_loads_into_the_encoder(
    tmp_path: Path, suffix: str, caplog: pytest.LogCaptureFixture
) -> None:
    source = build_model(config("fast", "resnet18", None), num_classes=3)
    state = {f"module.{k}": v for k, v in source.encoder.state_dict().items()}
    state["fc.weight"] = torch.zeros(2, 2)
    path = tmp_path / f"encoder{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": state}, path)

    with caplog.at_level(logging.WARNING):
        model = build_model(config("fast", "resnet18", str(path)), num_classes=3)
    for name, value in model.encoder.state_dict().items():
        torch.testing.assert_close(value, source.encoder.state_dict()[name])
    assert "fc.weight" in caplog.text


def test_deeplabv2_loads_a_torchvision_style_file(tmp_path: Path) -> None:
    source = build_model(config("deeplabv2", "resnet50", None), num_classes=3)
    path = tmp_path / "resnet50.pth"
    torch.save(source.encoder.state_dict(), path)
    model = build_model(config("deeplabv2", "resnet50", str(path)), num_classes=3)
    torch.testing.assert_close(model.encoder.conv1.weight, source.encoder.conv1.weight)


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.pth"
    with pytest.raises(ConfigError, match="nowhere.pth"):
        build_model(config("fast", "resnet18", str(path)), num_classes=3)


def test_file_for_another_network_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"generator.weight": torch.zeros(1)}, str(path))
    with pytest.raises(ConfigError, match="no key"):
        build_model(config("fast", "resnet18", str(path)), num_classes=3)


def test_plain_timm_file_loads_into_a_tu_encoder(tmp_path: Path) -> None:
    """A deep-stem ResNet file with timm's own names (UniMatch's resnet101.pth layout)."""
    import timm

    backbone = timm.create_model("resnet18d", pretrained=False)
    path = tmp_path / "resnet18d.pth"
    torch.save(backbone.state_dict(), path)  # conv1.0.weight, ..., fc.weight: no prefix
    model = build_model(config("fast", "tu-resnet18d", str(path)), num_classes=3)
    torch.testing.assert_close(model.encoder.model.conv1[0].weight, backbone.conv1[0].weight)
    torch.testing.assert_close(model.encoder.model.layer4[1].bn2.bias, backbone.layer4[1].bn2.bias)
