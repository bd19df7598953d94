"""DeepLab-v2 (Chen et al., TPAMI 2017) as used by AdaptSegNet (Tsai et al., CVPR 2018) and
ADVENT (Vu et al., CVPR 2019): a dilated ResNet-50/101 with output stride 8 and an ASPP
classifier, optionally multi-level (an auxiliary classifier on layer3).

Shapes: input (B, 3, H, W) -> "out" (B, C, h, w) logits at output stride 8, h = H / 8 up to the
rounding of the ceil-mode max-pool (321 -> 41, 64 -> 9); "aux" (multi_level only) has the same size.

Example::

    model = MODELS.build("deeplabv2", num_classes=19, encoder="resnet101", multi_level=True)
    outputs = model(torch.randn(1, 3, 321, 321))  # {"out": (1,19,41,41), "aux": (1,19,41,41)}
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import ResNet50_Weights, ResNet101_Weights

from segshift.errors import ConfigError
from segshift.models.normalization import InputNorm
from segshift.models.parts import Perturb
from segshift.models.weights import load_into
from segshift.registry import MODELS

BLOCKS_PER_LAYER = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
IMAGENET_URLS = {50: ResNet50_Weights.IMAGENET1K_V1.url, 101: ResNet101_Weights.IMAGENET1K_V1.url}
ASPP_DILATIONS = (6, 12, 18, 24)


class Bottleneck(nn.Module):
    """ResNet bottleneck; `caffe_stride` puts the stride on the first 1x1 conv, as DeepLab does.

    `project` adds the 1x1 conv + BN shortcut ("downsample").
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int,
        dilation: int,
        caffe_stride: bool,
        project: bool,
    ) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        stride_1x1, stride_3x3 = (stride, 1) if caffe_stride else (1, stride)
        self.conv1 = nn.Conv2d(in_channels, planes, 1, stride=stride_1x1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride=stride_3x3, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if project:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class DilatedResNet(nn.Module):
    """ResNet-50/101 with layer3 dilated by 2 and layer4 by 4 (output stride 8).

    Parameter names follow torchvision's ResNet (conv1, bn1, layer1..layer4, downsample.0/1), so
    torchvision and DeepLab-v2 init files load directly. forward returns (layer3, layer4):
    (B, 1024, h, w) and (B, 2048, h, w).
    """

    def __init__(self, depth: int = 101, caffe_stride: bool = True) -> None:
        super().__init__()
        if depth not in BLOCKS_PER_LAYER:
            raise ConfigError(f"model.params.depth: {depth} is not one of {list(BLOCKS_PER_LAYER)}")
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        in_channels = 64
        layers = []
        layer_settings = zip((64, 128, 256, 512), (1, 2, 1, 1), (1, 1, 2, 4))
        for blocks, (planes, stride, dilation) in zip(BLOCKS_PER_LAYER[depth], layer_settings):
            # Only the first block of a layer projects the shortcut; in DeepLab it always does,
            # because of the stride (layer2), the width (layer1) or the dilation (layer3/4).
            layer = []
            for index in range(blocks):
                first = index == 0
                layer.append(
                    Bottleneck(
                        in_channels, planes, stride if first else 1, dilation, caffe_stride, first
                    )
                )
                in_channels = planes * Bottleneck.expansion
            layers.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        c3 = self.layer3(x)
        return c3, self.layer4(c3)


class ASPPClassifier(nn.Module):
    """DeepLab-v2 classifier: parallel 3x3 convs (dilation = padding 6/12/18/24) summed.

    `branches=2` keeps only the d=6 and d=12 convs: AdaptSegNet's `Classifier_Module` returns
    inside its loop, so only those two are ever summed there (docs/METHODS.md, "AdaptSegNet").
    """

    def __init__(self, in_channels: int, num_classes: int, branches: int = 4) -> None:
        super().__init__()
        if branches not in (2, 4):
            raise ConfigError(f"model.params.aspp_branches: {branches} is not 2 or 4")
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=d, dilation=d, bias=True)
            for d in ASPP_DILATIONS[:branches]
        )
        for conv in self.branches:
            nn.init.normal_(conv.weight, 0.0, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(branch(x) for branch in self.branches)


class DeepLabV2(nn.Module):
    """DeepLab-v2 with a main classifier on layer4 and, if `multi_level`, an aux one on layer3.

    With `freeze_bn_affine` the BatchNorm weights and biases get no gradient, as in the official
    AdaptSegNet/ADVENT code; BatchNorm still runs in whatever mode the caller sets.
    """

    align_corners = False  # how consumers resize the logits; set by build_model
    head_dropout = 0.0  # dropout on the classifiers' input in training (model.dropout); build_model

    def __init__(
        self,
        num_classes: int,
        depth: int = 101,
        multi_level: bool = False,
        aspp_branches: int = 4,
        freeze_bn_affine: bool = True,
        caffe_stride: bool = True,
    ) -> None:
        super().__init__()
        self.input_norm = InputNorm()
        self.encoder = DilatedResNet(depth, caffe_stride)
        self.classifier = ASPPClassifier(2048, num_classes, aspp_branches)
        self.aux_classifier = (
            ASPPClassifier(1024, num_classes, aspp_branches) if multi_level else None
        )
        if freeze_bn_affine:
            for module in self.encoder.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.requires_grad_(False)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """RGB images in [0, 1] (B, 3, H, W) -> layer4 features (B, 2048, h, w), stride 8."""
        return self.encoder(self.input_norm(x))[1]

    @property
    def feat_channels(self) -> int:
        """Channels of "feat": layer4's features, the ASPP classifier's input."""
        return 2048

    def forward(
        self, x: torch.Tensor, perturb: Perturb | None = None, return_feat: bool = False
    ) -> dict[str, torch.Tensor]:
        """RGB images in [0, 1] (B, 3, H, W) -> {"out", "aux"}: logits at output stride 8.

        The model in parts (see `segshift.models`): `perturb` maps [layer3, layer4] features to
        new ones (any batch size) before the classifiers; `return_feat` adds "feat", layer4's
        features (B, 2048, h, w), which the ASPP classifier reads directly (DeepLab-v2 has no
        decoder).
        """
        c3, c4 = self.encoder(self.input_norm(x))
        if perturb is not None:
            c3, c4 = perturb([c3, c4])
        drop = self.head_dropout if self.training else 0.0
        outputs = {"out": self.classifier(F.dropout(c4, drop) if drop else c4)}
        if self.aux_classifier is not None:
            outputs["aux"] = self.aux_classifier(F.dropout(c3, drop) if drop else c3)
        if return_feat:
            outputs["feat"] = c4
        return outputs


@MODELS.register("deeplabv2")
def deeplabv2(
    num_classes: int,
    encoder: str = "resnet101",
    encoder_weights: str | None = None,
    depth: int | None = None,
    **params: bool | int,
) -> DeepLabV2:
    """Build DeepLab-v2 on `encoder` "resnet50" or "resnet101" (or the `depth` param, which wins).

    `encoder_weights="imagenet"` downloads torchvision's ImageNet ResNet (trained with the stride on
    the 3x3 conv; the official DeepLab init file is Caffe-trained: pass its path instead to match).
    `params`: multi_level, aspp_branches, freeze_bn_affine, caffe_stride (see DeepLabV2).
    """
    if depth is None:
        depth = {"resnet50": 50, "resnet101": 101}.get(encoder)
        if depth is None:
            raise ConfigError(
                f"model.encoder: deeplabv2 takes 'resnet50' or 'resnet101', not '{encoder}'"
            )
    model = DeepLabV2(num_classes, depth=depth, **params)
    if encoder_weights is not None:
        if encoder_weights != "imagenet":
            raise ConfigError(
                f"model.encoder_weights: deeplabv2 knows 'imagenet' or a file path, "
                f"not '{encoder_weights}'"
            )
        url = IMAGENET_URLS[depth]
        state = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False)
        load_into(model.encoder, state, url)
    return model
