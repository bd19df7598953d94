"""Pixel contrast for semi-supervised methods (U2PL, ReCo): a projection ("representation") head,
contrast logits and U2PL's per-class memory banks of negative keys.

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
    bank = MemoryBank([50_000] + [30_000] * 18, dim=256)   # U2PL's caps; starts empty
    bank.push(c, keys)                                       # (N, 256) keys of class c
"""

from __future__ import annotations

from typing import Any

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


class MemoryBank(nn.Module):
    """One queue of (D,) keys per class, oldest first (U2PL, ``u2pl/utils/utils.py``
    ``dequeue_and_enqueue``): a push appends the new keys, then the oldest beyond ``sizes[c]`` are
    dropped. Queues start empty and grow to their caps, so a state dict holds only the keys held
    (buffers ``keys_<c>``, (n_c, D)); loading one resizes the queues to it.
    """

    def __init__(self, sizes: list[int], dim: int) -> None:
        super().__init__()
        self.sizes = list(sizes)
        for c in range(len(self.sizes)):
            self.register_buffer(f"keys_{c}", torch.zeros(0, dim))

    def entries(self, cls: int) -> torch.Tensor:
        """The (n_c, D) keys of class ``cls``, oldest first."""
        return self._buffers[f"keys_{cls}"]

    @torch.no_grad()
    def push(self, cls: int, keys: torch.Tensor) -> None:
        """Append (N, D) ``keys`` to class ``cls``'s queue, keeping its newest ``sizes[cls]``."""
        held = self.entries(cls)
        if len(keys) == 0:
            return
        queue = torch.cat([held, keys.to(held)])
        self._buffers[f"keys_{cls}"] = queue[max(len(queue) - self.sizes[cls], 0) :]

    def fill(self) -> float:
        """The share of the caps that the queues hold."""
        held = sum(len(self.entries(c)) for c in range(len(self.sizes)))
        return held / max(sum(self.sizes), 1)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        _from_ring_buffer(state_dict, prefix, self.sizes)
        for c in range(len(self.sizes)):
            stored = state_dict.get(f"{prefix}keys_{c}")
            if stored is not None:  # the length follows the checkpoint, the key size must match
                held = self.entries(c)
                self._buffers[f"keys_{c}"] = held.new_zeros(len(stored), *held.shape[1:])
        super()._load_from_state_dict(state_dict, prefix, *args)


def _from_ring_buffer(state_dict: dict, prefix: str, sizes: list[int]) -> None:
    """Rewrite, in place, a bank saved before the queues grew (one buffer ``keys`` of all caps,
    per-class write pointers ``ptr`` and fill counts ``count``) as per-class queues."""
    names = [f"{prefix}{name}" for name in ("keys", "count", "ptr")]
    if not all(name in state_dict for name in names) or len(state_dict[names[0]]) != sum(sizes):
        return
    keys, count, ptr = (state_dict.pop(name) for name in names)
    for c, ring in enumerate(keys.split(sizes)):
        n, p = int(count[c]), int(ptr[c])  # a full ring's oldest key sits at its pointer
        state_dict[f"{prefix}keys_{c}"] = (
            torch.cat([ring[p:], ring[:p]]) if n == len(ring) else ring[:n]
        )
