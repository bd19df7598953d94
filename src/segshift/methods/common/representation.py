"""A projection ("representation") head for contrastive semi-supervised methods (U2PL, ReCo).

Both papers add a small head beside the classifier on the decoder features the classifier reads
(``model(x, return_feat=True)["feat"]``, (B, model.feat_channels, h, w)) and compute their pixel
contrast on its 256-d output at feature resolution:

- U2PL (``u2pl/models/decoder.py``, ``representation``): 3x3 conv -> BN -> ReLU -> Dropout2d(0.1)
  -> 1x1 conv, 256 channels;
- ReCo (``network/deeplabv3.py``, ``representation``): 3x3 conv -> BN -> ReLU -> 1x1 conv, 256.

The head belongs to the method (it is trained with the segmenter's head learning rate), not to
the model, so exported models and every other method stay as they are.

Example::

    head = projection_head(model.feat_channels, dim=256, dropout=0.1)
    rep = head(model(images, return_feat=True)["feat"])     # (B, 256, h, w)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def projection_head(in_channels: int, dim: int = 256, dropout: float = 0.0) -> nn.Sequential:
    """3x3 conv (no bias) -> BatchNorm -> ReLU [-> Dropout2d] -> 1x1 conv to ``dim`` channels."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, dim, 3, padding=1, bias=False),
        nn.BatchNorm2d(dim),
        nn.ReLU(inplace=True),
    ]
    if dropout > 0:
        layers.append(nn.Dropout2d(dropout))
    layers.append(nn.Conv2d(dim, dim, 1))
    return nn.Sequential(*layers)


def contrast_logits(anchors: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cosine similarities / temperature of (N, D) anchors with their (N, K, D) keys: (N, K).

    With the positive key first, ``F.cross_entropy(logits, zeros(N))`` is the InfoNCE loss of U2PL
    and ReCo.
    """
    anchors = F.normalize(anchors, dim=-1)
    keys = F.normalize(keys, dim=-1)
    return torch.einsum("nd,nkd->nk", anchors, keys) / temperature
