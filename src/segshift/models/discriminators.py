"""Discriminators for adversarial domain adaptation and image translation.

They are registered in MODELS but are not segmentation models: they take `in_channels` instead
of `num_classes`/`encoder` and return a plain logit map, not a dict (no sigmoid; pair them with
BCEWithLogits or MSE losses).

Example::

    d = MODELS.build("fc_discriminator", in_channels=19)
    d(torch.softmax(logits, dim=1)).shape  # (B, 1, H / 32, W / 32)
"""

from __future__ import annotations

from torch import nn

from segshift.registry import MODELS

DISCRIMINATORS = ("fc_discriminator", "patchgan")


@MODELS.register("fc_discriminator")
def fc_discriminator(in_channels: int, ndf: int = 64) -> nn.Sequential:
    """AdaptSegNet's output-space FCDiscriminator (Tsai et al., CVPR 2018), also ADVENT's.

    Five 4x4 stride-2 convs (in -> ndf -> 2ndf -> 4ndf -> 8ndf -> 1) with LeakyReLU(0.2) after the
    first four, no normalisation, PyTorch default init. (B, in, H, W) -> (B, 1, H / 32, W / 32).
    """
    widths = (in_channels, ndf, ndf * 2, ndf * 4, ndf * 8)
    layers: list[nn.Module] = []
    for c_in, c_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
    layers.append(nn.Conv2d(widths[-1], 1, 4, stride=2, padding=1))
    return nn.Sequential(*layers)


@MODELS.register("patchgan")
def patchgan(in_channels: int = 3, ndf: int = 64, n_layers: int = 3) -> nn.Sequential:
    """CycleGAN's 70x70 PatchGAN `NLayerDiscriminator` (Zhu et al., ICCV 2017; Isola et al., 2017).

    Conv4x4 s2 (no norm) + LeakyReLU(0.2), then n_layers - 1 Conv4x4 s2 and one Conv4x4 s1 with
    InstanceNorm (affine=False) + LeakyReLU(0.2), then a Conv4x4 s1 to one channel; weights
    N(0, 0.02), biases 0. With n_layers=3: (B, in, 256, 256) -> (B, 1, 30, 30).
    """
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1),
        nn.LeakyReLU(0.2, inplace=True),
    ]
    width = ndf
    for index in range(1, n_layers + 1):
        next_width = ndf * min(2**index, 8)
        stride = 2 if index < n_layers else 1
        layers += [
            nn.Conv2d(width, next_width, 4, stride=stride, padding=1),
            nn.InstanceNorm2d(next_width),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        width = next_width
    layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
    discriminator = nn.Sequential(*layers)
    for module in discriminator.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, 0.0, 0.02)
            nn.init.zeros_(module.bias)
    return discriminator
