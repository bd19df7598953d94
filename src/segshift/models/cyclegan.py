"""CycleGAN's ResNet generator (Zhu et al., "Unpaired Image-to-Image Translation using
Cycle-Consistent Adversarial Networks", ICCV 2017; official code junyanz/pytorch-CycleGAN-and-pix2pix,
``models/networks.py``: ``ResnetGenerator``, ``ResnetBlock``, ``init_weights``).

Images are RGB in [-1, 1] (the generator ends in tanh); ``to_gan_range`` / ``from_gan_range`` map
segshift's [0, 1] batches there and back. The generator is fully convolutional: any input size
works, and the output has the input's size (inputs whose sides are not multiples of 4 are
reflection-padded inside and the output cropped back). The discriminator is the 70x70 PatchGAN
``patchgan`` of `segshift.models.discriminators`.

Example::

    g = ResnetGenerator(n_blocks=9)                 # resnet_9blocks, the paper's 256x256 setting
    fake = from_gan_range(g(to_gan_range(images)))  # (B,3,H,W) in [0, 1] -> same shape
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# the two stride-2 downsamplings: the sides the encoder-decoder maps back to the same size
SIDE_MULTIPLE = 4


def to_gan_range(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB (the batch contract) -> [-1, 1], what CycleGAN's networks see."""
    return images * 2.0 - 1.0


def from_gan_range(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] RGB."""
    return (images + 1.0) / 2.0


def init_normal(module: nn.Module, std: float = 0.02) -> nn.Module:
    """CycleGAN's ``init_weights('normal')``: conv weights N(0, std), biases 0."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(layer.weight, 0.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module


def _conv_norm_relu(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.InstanceNorm2d(channels), nn.ReLU(inplace=True)]


class ResnetBlock(nn.Module):
    """x + [ReflectionPad(1), Conv3x3, IN, ReLU, ReflectionPad(1), Conv3x3, IN](x); no ReLU after
    the sum, no dropout (CycleGAN's ``no_dropout``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1),
            *_conv_norm_relu(nn.Conv2d(channels, channels, 3), channels),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """(B, in, H, W) in [-1, 1] -> (B, out, H, W) in [-1, 1] (docs/METHODS.md, "CycleGAN").

    ReflectionPad(3) + Conv7x7 (in -> ngf), two Conv3x3 stride-2 downsamplings (ngf -> 2ngf ->
    4ngf), ``n_blocks`` residual blocks at 4ngf, two ConvTranspose3x3 stride-2 upsamplings, and
    ReflectionPad(3) + Conv7x7 (ngf -> out) + tanh. Every conv but the last is followed by
    InstanceNorm (affine=False, no running statistics) and ReLU; convs have biases (as the
    official code with instance norm). Weights N(0, 0.02), biases 0.
    ``n_blocks``: 9 for 256x256 training (the paper), 6 for 128x128; fewer for CPU runs.
    """

    def __init__(
        self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 9
    ) -> None:
        super().__init__()
        if ngf < 1 or n_blocks < 0:
            raise ValueError(f"ngf must be >= 1 and n_blocks >= 0, got {ngf} and {n_blocks}")
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            *_conv_norm_relu(nn.Conv2d(in_channels, ngf, 7), ngf),
        ]
        for width in (ngf, ngf * 2):
            layers += _conv_norm_relu(
                nn.Conv2d(width, width * 2, 3, stride=2, padding=1), width * 2
            )
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for width in (ngf * 4, ngf * 2):
            up = nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1, output_padding=1)
            layers += _conv_norm_relu(up, width // 2)
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        init_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % SIDE_MULTIPLE, -width % SIDE_MULTIPLE
        if pad_h or pad_w:  # reflect: no dark border for the instance norm statistics
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        return self.model(x)[..., :height, :width]
