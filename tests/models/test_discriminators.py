"""AdaptSegNet's FCDiscriminator and CycleGAN's 70x70 PatchGAN: layout and output sizes."""

from __future__ import annotations

import torch
from torch import nn

from segshift.models import MODELS


def test_fc_discriminator_layout_and_output_size() -> None:
    d = MODELS.build("fc_discriminator", in_channels=19)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert all(
        c.kernel_size == (4, 4) and c.stride == (2, 2) and c.padding == (1, 1) for c in convs
    )
    assert sum(isinstance(m, nn.LeakyReLU) for m in d.modules()) == 4
    assert not any(
        isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.Sigmoid)) for m in d.modules()
    )
    assert d(torch.rand(2, 19, 64, 96)).shape == (2, 1, 2, 3)


def test_patchgan_output_size() -> None:
    d = MODELS.build("patchgan", in_channels=3)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1]
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in d.modules()) == 3
    # 64 -> 32 -> 16 -> 8 -> 7 -> 6 (256 -> 30 for the usual crop).
    assert d(torch.randn(2, 3, 64, 64)).shape == (2, 1, 6, 6)
