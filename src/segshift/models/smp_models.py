"""segmentation_models_pytorch architectures over any smp or timm (`tu-`) encoder.

Architectures: DeepLabV3+ (Chen et al., ECCV 2018), DeepLabV3 (Chen et al., 2017), U-Net
(Ronneberger et al., MICCAI 2015), FPN (Kirillov et al., "Panoptic Feature Pyramid Networks",
CVPR 2019), PSPNet (Zhao et al., CVPR 2017) and SegFormer (Xie et al., NeurIPS 2021), plus `fast`,
a slim FPN over ResNet-18 for CPU runs.

Example::

    model = MODELS.build("unet", num_classes=11, encoder="resnet18", encoder_weights=None)
    model(torch.randn(2, 3, 64, 64))["out"].shape  # (2, 11, 64, 64)
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import segmentation_models_pytorch as smp
import timm
import torch
import torch.nn.functional as F
from torch import nn

from segshift.errors import ConfigError
from segshift.models.normalization import InputNorm
from segshift.models.parts import Perturb
from segshift.registry import MODELS, did_you_mean

SMP_ARCHS = ("deeplabv3plus", "deeplabv3", "unet", "fpn", "pspnet", "segformer")

# Chosen by timing a forward + backward + SGD step at batch 8 x 3 x 128 x 160 on 2 CPU threads:
# about 0.21 s, against 0.33 s with FPN's default decoder widths and 0.42 s for U-Net/ResNet-18.
# MobileNetV3 (0.16 s) learned a toy street layout less well from scratch in 150 steps.
FAST_DEFAULTS: dict[str, Any] = {
    "decoder_pyramid_channels": 64,
    "decoder_segmentation_channels": 32,
}


class SmpSegmenter(nn.Module):
    """Adapts an smp model to the segshift contract: `forward(x) -> {"out": logits}`.

    Input (B, 3, H, W) of any size: it is zero-padded at the bottom and right to the multiple of
    the encoder's output stride that smp requires, and the logits are cropped back, so "out" is
    (B, num_classes, H, W) for every architecture here. `.encoder` is the smp encoder; the decoder
    and segmentation head form the rest.
    """

    align_corners = False  # how consumers resize the logits; set by build_model
    head_dropout = 0.0  # dropout on the head's input in training (model.dropout); build_model
    # Set while an ONNX export with dynamic sizes traces the model: the graph then pads and crops
    # at every input size (a trace records one branch; the sizes are tensors in it).
    traced_any_size = False

    def __init__(self, net: smp.base.SegmentationModel) -> None:
        super().__init__()
        self.input_norm = InputNorm()
        self.net = net

    @property
    def encoder(self) -> nn.Module:
        return self.net.encoder

    def _prepare(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """Normalise and zero-pad to the stride smp requires; returns (x, pad_h, pad_w)."""
        x = self.input_norm(x)
        height, width = x.shape[-2:]
        stride = self.net.encoder.output_stride if self.net.requires_divisible_input_shape else 1
        pad_h, pad_w = -height % stride, -width % stride
        if self._pads_always() or pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return x, pad_h, pad_w

    def _pads_always(self) -> bool:
        return self.traced_any_size and torch.jit.is_tracing()

    @property
    def feat_channels(self) -> int:
        """Channels of the decoder features ("feat"), the segmentation head's input."""
        head = self.net.segmentation_head
        return next(m for m in head.modules() if isinstance(m, nn.Conv2d)).in_channels

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """RGB images in [0, 1] (B, 3, H, W) -> the encoder's last-stage features (B, C, h, w),
        from the same normalised, padded input as `forward`."""
        return self.net.encoder(self._prepare(x)[0])[-1]

    def forward(
        self, x: torch.Tensor, perturb: Perturb | None = None, return_feat: bool = False
    ) -> dict[str, torch.Tensor]:
        """RGB images in [0, 1] (B, 3, H, W) -> {"out": (B', num_classes, H, W) logits}.

        The model in parts (see `segshift.models`): `perturb` maps the encoder's stage features
        (a list, shallow to deep) to new ones before the decoder, and may change the batch size
        B' (UniMatch decodes clean and dropped-out features in one pass); `return_feat` adds the
        decoder features "feat" (B', feat_channels, h, w), the segmentation head's input.
        """
        height, width = x.shape[-2:]
        x, pad_h, pad_w = self._prepare(x)
        features = self.net.encoder(x)  # smp's own forward, in its parts
        if perturb is not None:
            features = list(perturb(list(features)))
        feat = self.net.decoder(features)
        out = self.net.segmentation_head(F.dropout(feat, self.head_dropout, self.training))
        if self._pads_always() or pad_h or pad_w:
            # ceil(height * out_h / padded_h) in integer arithmetic, which a trace records
            out_h = (height * out.shape[-2] + x.shape[-2] - 1) // x.shape[-2]
            out_w = (width * out.shape[-1] + x.shape[-1] - 1) // x.shape[-1]
            out = out[..., :out_h, :out_w]
        return {"out": out, "feat": feat} if return_feat else {"out": out}


def build_smp(
    arch: str,
    num_classes: int,
    encoder: str,
    encoder_weights: str | None = None,
    **params: Any,
) -> SmpSegmenter:
    """Build smp architecture `arch` with `num_classes` outputs; `params` go to its constructor.

    `encoder_weights` is None or a pretrained tag ("imagenet", ...); for a `tu-` encoder any tag
    means timm's default pretrained weights for that encoder name.
    """
    model_class = smp.MODEL_ARCHITECTURES_MAPPING[arch]
    if encoder.startswith("tu-") and not timm.is_model(encoder[3:]):
        hint = did_you_mean(encoder[3:], timm.list_models())
        raise ConfigError(f"model.encoder: timm has no model '{encoder[3:]}'{hint}")
    if not encoder.startswith("tu-"):
        # smp swallows unknown keyword arguments unless they go to a timm encoder.
        known = inspect.signature(model_class).parameters
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ConfigError(f"model.params: {arch} has no option {', '.join(unknown)}")
    weights: str | bool | None = encoder_weights
    if encoder.startswith("tu-") and encoder_weights is not None:
        weights = True
    net = model_class(encoder_name=encoder, encoder_weights=weights, classes=num_classes, **params)
    _drop_unused_stages(net.encoder)
    return SmpSegmenter(net)


def _drop_unused_stages(encoder: nn.Module) -> None:
    """Replace encoder stages deeper than `encoder_depth` (e.g. PSPNet's default depth 3) by
    identities: smp keeps them although they never run, and DDP rejects parameters without grads.
    """
    try:
        stages = encoder.get_stages()
    except (AttributeError, NotImplementedError):  # timm encoders prune themselves
        return
    max_stride = 2**encoder._depth
    unused = {
        id(module)
        for stride, modules in stages.items()
        if stride > max_stride
        for module in modules
    }
    for name, child in list(encoder.named_children()):
        if id(child) in unused:
            setattr(encoder, name, nn.Identity())


for _arch in SMP_ARCHS:
    MODELS.register(_arch)(functools.partial(build_smp, _arch))


@MODELS.register("fast")
def fast(
    num_classes: int,
    encoder: str = "resnet18",
    encoder_weights: str | None = None,
    **params: Any,
) -> SmpSegmenter:
    """A slim FPN (64 pyramid / 32 segmentation channels) for CPU runs; output at input size."""
    return build_smp("fpn", num_classes, encoder, encoder_weights, **{**FAST_DEFAULTS, **params})
