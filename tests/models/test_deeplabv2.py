"""DeepLab-v2 (AdaptSegNet / ADVENT layout): stride, multi-level output, ASPP branches, BN."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segshift.errors import ConfigError
from segshift.models import MODELS
from segshift.models.deeplabv2 import DeepLabV2

NUM_CLASSES = 4


@pytest.fixture(scope="module")
def multi_level() -> DeepLabV2:
    torch.manual_seed(0)
    return MODELS.build(
        "deeplabv2", num_classes=NUM_CLASSES, encoder="resnet50", multi_level=True
    ).eval()


def test_output_stride_8_and_aux_on_layer3(multi_level: DeepLabV2) -> None:
    with torch.no_grad():
        outputs = multi_level(torch.randn(1, 3, 96, 128))
    # 96 -> conv1 48 -> ceil-mode pool 25 -> layer2 13; 128 -> 64 -> 33 -> 17.
    assert outputs["out"].shape == (1, NUM_CLASSES, 13, 17)
    assert outputs["aux"].shape == outputs["out"].shape
    assert multi_level.aux_classifier.branches[0].in_channels == 1024
    assert multi_level.classifier.branches[0].in_channels == 2048


def test_single_level_has_no_aux() -> None:
    model = MODELS.build("deeplabv2", num_classes=NUM_CLASSES, encoder="resnet50")
    assert set(model(torch.randn(1, 3, 64, 64))) == {"out"}


def test_two_branches_sum_the_dilation_6_and_12_convs(multi_level: DeepLabV2) -> None:
    two = DeepLabV2(NUM_CLASSES, depth=50, multi_level=True, aspp_branches=2).eval()
    result = two.load_state_dict(multi_level.state_dict(), strict=False)
    assert {key.split(".")[-2] for key in result.unexpected_keys} == {"2", "3"}
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        _, c4 = multi_level.encoder(multi_level.input_norm(x))
        expected = sum(multi_level.classifier.branches[i](c4) for i in (0, 1))
        torch.testing.assert_close(two(x)["out"], expected)
    assert [conv.dilation[0] for conv in multi_level.classifier.branches] == [6, 12, 18, 24]


def test_classifier_init_and_frozen_bn_affine(multi_level: DeepLabV2) -> None:
    weight = multi_level.classifier.branches[0].weight
    assert weight.std().item() == pytest.approx(0.01, rel=0.1)
    bns = [m for m in multi_level.encoder.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(p.requires_grad for bn in bns for p in bn.parameters())
    trainable = DeepLabV2(NUM_CLASSES, depth=50, freeze_bn_affine=False)
    assert all(p.requires_grad for p in trainable.parameters())


@pytest.mark.parametrize("caffe_stride, strided_conv", [(True, "conv1"), (False, "conv2")])
def test_stride_placement(caffe_stride: bool, strided_conv: str) -> None:
    block = DeepLabV2(NUM_CLASSES, depth=50, caffe_stride=caffe_stride).encoder.layer2[0]
    assert getattr(block, strided_conv).stride == (2, 2)
    assert block.conv1.stride[0] * block.conv2.stride[0] == 2


def test_dilations_and_stem() -> None:
    encoder = DeepLabV2(NUM_CLASSES, depth=50).encoder
    assert encoder.maxpool.ceil_mode
    assert all(block.conv2.dilation == (2, 2) for block in encoder.layer3)
    assert all(block.conv2.dilation == (4, 4) for block in encoder.layer4)
    layers = (encoder.layer1, encoder.layer2, encoder.layer3, encoder.layer4)
    assert [layer[0].downsample is not None for layer in layers] == [True] * 4
    assert all(block.downsample is None for layer in layers for block in layer[1:])


def test_bad_encoder_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="model.encoder"):
        MODELS.build("deeplabv2", num_classes=NUM_CLASSES, encoder="resnet18")
