"""The model in parts: feature perturbations between the encoder and the decoder.

Every segmentation model's ``forward(x, perturb=None, return_feat=False)`` runs encoder ->
``perturb`` -> decoder -> head in one call, so that the perturbed pass goes through the wrapped
model's forward (DDP synchronises only what forward computes):

- ``perturb(features) -> features``: the encoder's stage features (a list, shallow to deep: smp's
  encoder outputs, DeepLab-v2's [layer3, layer4]) mapped to new ones; the batch size may change
  (UniMatch decodes the clean and the dropped-out features of a batch in one pass);
- ``return_feat=True`` adds ``"feat"``, the decoder features the segmentation head reads
  (B, model.feat_channels, h, w): the input of a method's own heads (a contrastive
  "representation" head in U2PL and ReCo, CCT's auxiliary decoders).

Example (UniMatch's feature-perturbation stream, ``p = 0.5``)::

    both = model(images, perturb=channel_dropout(0.5, keep_clean=True))["out"]
    clean, perturbed = both.chunk(2)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Perturb = Callable[[list[torch.Tensor]], list[torch.Tensor]]


def channel_dropout(p: float = 0.5, keep_clean: bool = False) -> Perturb:
    """Drop whole channels of every stage feature with probability ``p`` (``Dropout2d``, always
    on: it is a training perturbation), scaling the kept ones by 1 / (1 - p). With
    ``keep_clean`` the batch doubles: [clean features; dropped-out features] (UniMatch)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"channel_dropout: p must be in [0, 1), got {p}")

    def perturb(features: list[torch.Tensor]) -> list[torch.Tensor]:
        dropped = [F.dropout2d(f, p, training=True) for f in features]
        if not keep_clean:
            return dropped
        return [torch.cat((f, d)) for f, d in zip(features, dropped, strict=True)]

    return perturb
