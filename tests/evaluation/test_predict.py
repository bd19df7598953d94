"""Whole / sliding-window inference and flip / multi-scale TTA."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segshift.evaluation import predict

NUM_CLASSES = 4


class DictModel(nn.Module):
    """Wraps a layer so that forward returns {"out": logits}; records input sizes."""

    def __init__(self, layer: nn.Module, downsample: int = 1) -> None:
        super().__init__()
        self.layer = layer
        self.downsample = downsample
        self.input_sizes: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> dict:
        self.input_sizes.append(tuple(x.shape[-2:]))
        out = self.layer(x)
        return {"out": F.avg_pool2d(out, self.downsample) if self.downsample > 1 else out}


def pointwise_model() -> DictModel:
    """A 1x1 conv: translation- and flip-equivariant, so every inference mode must agree."""
    torch.manual_seed(0)
    return DictModel(nn.Conv2d(3, NUM_CLASSES, 1)).eval()


def symmetric_model() -> DictModel:
    """A 3x3 conv with left-right symmetric kernels: flip-equivariant but not flip-invariant."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, NUM_CLASSES, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_((conv.weight + conv.weight.flip(-1)) / 2)
    return DictModel(conv).eval()


def images(*size: int) -> torch.Tensor:
    return torch.randn(*size, generator=torch.Generator().manual_seed(1))


def test_whole_returns_softmax_at_input_size():
    x = images(2, 3, 12, 15)
    probs = predict(pointwise_model(), x, NUM_CLASSES)
    assert probs.shape == (2, NUM_CLASSES, 12, 15)
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 12, 15))


def test_whole_upsamples_strided_logits():
    model = DictModel(nn.Conv2d(3, NUM_CLASSES, 1), downsample=4).eval()
    x = images(1, 3, 16, 24)
    probs = predict(model, x, NUM_CLASSES)
    logits = F.interpolate(model(x)["out"], size=(16, 24), mode="bilinear", align_corners=False)
    torch.testing.assert_close(probs, logits.softmax(1))


@pytest.mark.parametrize(
    ("crop", "stride"), [((8, 8), (5, 5)), ((7, 10), (7, 10)), ((19, 4), None)]
)
def test_slide_agrees_with_whole_for_equivariant_model(crop, stride):
    model, x = pointwise_model(), images(2, 3, 19, 23)
    whole = predict(model, x, NUM_CLASSES)
    slide = predict(model, x, NUM_CLASSES, mode="slide", crop_size=crop, stride=stride)
    torch.testing.assert_close(slide, whole)


def test_slide_pads_images_smaller_than_the_crop():
    model, x = pointwise_model(), images(1, 3, 5, 6)
    slide = predict(model, x, NUM_CLASSES, mode="slide", crop_size=(8, 12), stride=(4, 4))
    assert model.input_sizes == [(8, 12)]
    torch.testing.assert_close(slide, predict(model, x, NUM_CLASSES))


def test_flip_tta_is_a_no_op_for_a_flip_equivariant_model():
    model, x = symmetric_model(), images(2, 3, 9, 14)
    plain = predict(model, x, NUM_CLASSES)
    assert not torch.allclose(plain, plain.flip(-1))  # the flip has to be undone
    torch.testing.assert_close(predict(model, x, NUM_CLASSES, flip=True), plain)


def test_flip_tta_averages_flipped_softmax():
    torch.manual_seed(3)
    model, x = DictModel(nn.Conv2d(3, NUM_CLASSES, 3, padding=1)).eval(), images(1, 3, 8, 8)
    with torch.no_grad():
        expected = (model(x)["out"].softmax(1) + model(x.flip(-1))["out"].flip(-1).softmax(1)) / 2
    torch.testing.assert_close(predict(model, x, NUM_CLASSES, flip=True), expected)


def test_multi_scale_output_size_and_averaging():
    model, x = pointwise_model(), images(2, 3, 16, 20)
    probs = predict(model, x, NUM_CLASSES, scales=(0.5, 1.0, 1.5), flip=True, output_size=(31, 17))
    assert probs.shape == (2, NUM_CLASSES, 31, 17)
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 31, 17))
    assert sorted(set(model.input_sizes)) == [(8, 10), (16, 20), (24, 30)]

    with torch.no_grad():
        half = F.interpolate(x, size=(8, 10), mode="bilinear", align_corners=False)
        logits = F.interpolate(
            model(half)["out"], size=(16, 20), mode="bilinear", align_corners=False
        )
    torch.testing.assert_close(predict(model, x, NUM_CLASSES, scales=(0.5,)), logits.softmax(1))


def test_multi_scale_slide():
    probs = predict(
        pointwise_model(),
        images(1, 3, 20, 20),
        NUM_CLASSES,
        mode="slide",
        crop_size=(12, 12),
        scales=(0.75, 1.25),
    )
    assert probs.shape == (1, NUM_CLASSES, 20, 20)


def test_bad_arguments_raise():
    model, x = pointwise_model(), images(1, 3, 8, 8)
    with pytest.raises(ValueError, match="mode"):
        predict(model, x, NUM_CLASSES, mode="sliding")
    with pytest.raises(ValueError, match="crop_size"):
        predict(model, x, NUM_CLASSES, mode="slide")
    with pytest.raises(ValueError, match="scales"):
        predict(model, x, NUM_CLASSES, scales=(0.0,))
    with pytest.raises(ValueError, match="predicts 4 classes, expected 5"):
        predict(model, x, 5)
