"""Every registered segmentation model exports to ONNX with dynamic batch and image size and
matches PyTorch in ONNX Runtime, or the error names the operator that blocks it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch

from segshift.errors import ConfigError
from segshift.models import DISCRIMINATORS, MODELS, build_model
from segshift.models.onnx_runtime import session
from segshift.pipeline.export_onnx import Deployable, trace

# The smallest encoder each architecture takes; a new architecture is tested on resnet18.
ENCODERS = {"deeplabv2": "resnet50", "segformer": "mit_b0"}
PARAMS = {"deeplabv2": {"multi_level": True}}  # exports its main head
# PSPNet's pyramid pooling (adaptive average pooling to 1, 2, 3, 6 cells) needs a known input
# size in the TorchScript exporter: it exports at a fixed size only.
FIXED_SIZE_ONLY = {"pspnet": "adaptive_avg_pool2d"}
SEGMENTERS = [name for name in MODELS.names() if name not in DISCRIMINATORS]


def tiny_model(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = SimpleNamespace(
        arch=arch,
        encoder=ENCODERS.get(arch, "resnet18"),
        encoder_weights=None,
        params=PARAMS.get(arch, {}),
    )
    return build_model(cfg, num_classes=3).eval()


def onnx_logits(data: bytes, images: torch.Tensor) -> np.ndarray:
    return session(data, threads=1, name="test").run(None, {"image": images.numpy()})[0]


@pytest.mark.parametrize("arch", SEGMENTERS)
def test_every_segmentation_model_exports_with_dynamic_size(arch: str) -> None:
    model = tiny_model(arch)
    module = Deployable(model, "logits")
    if arch in FIXED_SIZE_ONLY:
        with pytest.raises(ConfigError) as err:
            trace(module, [64, 64], dynamic=True, opset=17, arch=arch)
        message = str(err.value)
        assert f"blocked by the operator {FIXED_SIZE_ONLY[arch]}" in message
        assert "without --dynamic" in message and "\n" not in message
        data = trace(module, [48, 48], dynamic=False, opset=17, arch=arch)
        sizes = [(1, 48, 48)]
    else:
        data = trace(module, [64, 64], dynamic=True, opset=17, arch=arch)
        sizes = [(2, 64, 64), (1, 45, 61)]  # another batch, a size off every stride
    for batch, height, width in sizes:
        images = torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            expected = model(images)["out"].numpy()
        got = onnx_logits(data, images)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
    if arch == "deeplabv2":  # only the main head is in the graph
        names = [init.name for init in onnx.load_from_string(data).graph.initializer]
        assert names and not any("aux_classifier" in name for name in names)


def test_argmax_output_is_the_class_map_at_input_size() -> None:
    model = tiny_model("deeplabv2")  # logits at 1/8: the graph resizes them first
    data = trace(Deployable(model, "argmax"), [64, 64], dynamic=True, opset=17, arch="deeplabv2")
    images = torch.rand(2, 3, 41, 57, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        logits = torch.nn.functional.interpolate(
            model(images)["out"], size=(41, 57), mode="bilinear", align_corners=False
        )
    got = onnx_logits(data, images)
    assert got.shape == (2, 41, 57) and got.dtype == np.int64
    assert (got == logits.argmax(1).numpy()).mean() > 0.999


def test_the_normalisation_is_inside_the_graph() -> None:
    """A BGR, 0-255 (Caffe) normalisation and the ImageNet one give other logits from the same
    weights; the graph reproduces each, fed RGB images in [0, 1]."""
    model = tiny_model("unet")
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    outputs = []
    for preset in ("imagenet", "caffe"):
        from segshift.models.normalization import PRESETS, InputNorm

        model.input_norm = InputNorm(PRESETS[preset])
        data = trace(Deployable(model, "logits"), [32, 32], dynamic=False, opset=17, arch="unet")
        with torch.inference_mode():
            expected = model(images)["out"].numpy()
        outputs.append(onnx_logits(data, images))
        np.testing.assert_allclose(outputs[-1], expected, rtol=1e-3, atol=1e-4)
    assert not np.allclose(outputs[0], outputs[1])
