"""Class-distribution contrast: images with similar class histograms get similar embeddings.

segshift's own method, added to any method with ``method.params.classdist`` (``weight`` > 0).
Every labeled image (source, labeled target) and every pseudo-labeled image comes with a label
map, so it has a class histogram. Two images whose histograms are alike (a road scene with cars
and a road scene with cars, one synthetic and one real) are pulled together in an image-level
embedding space; images with different classes are pushed apart. Across domains as well as
within one, this asks the network for image features that follow scene content, not style.

Per step, for the images of the views a method hands over (decoder features ``feat``
(B, C_f, h, w) and labels (B, H, W); ignored and unconfident pixels are ``ignore_index``)::

    z_i   = normalize(MLP(pool(feat_i)))               (proj_dim,), pool: mean | max over h x w
    p_i   = histogram of the counted pixels of image i, normalised to sum 1    (C,)
    keys  = this step's images of every process (DDP: other ranks' without gradient)
            + a FIFO queue of the last ``queue`` images (z, p, domain; no gradient)
    s_ij  = sim(p_i, p_j) in [0, 1]                      target similarity (below)
    w_ij  = s_ij / sum_{k != i} s_ik                    soft positives of anchor i
    L_i   = - sum_{j != i} w_ij log softmax_{j != i}(z_i . z_j / temperature)
    L     = weight x mean over anchors i with sum_j s_ij > 0

The anchors are this process's images; an image takes part (as anchor, key and queue entry)
only when at least ``min_counted`` of its pixels are counted. L_i is the cross-entropy between
the label-derived distribution w_i and the embedding-similarity distribution over the keys: it
is smallest when the embeddings' softmax reproduces the histogram similarities. With 0/1
similarities (same class set or not) it is SupCon's L_out (Khosla et al., "Supervised
Contrastive Learning", NeurIPS 2020) with the queue of MoCo (He et al., CVPR 2020).

Target similarity ``similarity`` (identical histograms give 1, disjoint class sets 0):

- ``cosine`` (default): cosine of the two histograms;
- ``js``: 1 - the Jensen-Shannon divergence in bits (in [0, 1]);
- ``jaccard``: |A n B| / |A u B| of the class sets, a class counting as present when it holds
  at least ``presence`` of the image's counted pixels.

Labels: the ground truth of labeled images; for unlabeled ones the method's pseudo-labels (its
EMA teacher's, or the model's own detached prediction) where their confidence reaches
``confidence``. The projection head (Linear, ReLU, Linear) belongs to the method and trains at
the head learning rate; it is not part of the evaluated or exported model. The queue lives in
the method's ``state_dict`` (buffers), so checkpoints hold it and resume is exact; under DDP
each step's embeddings, histograms and domains are gathered from every process (rank order)
before they enter the queue, so every process keeps the same queue. Queue entries come from
earlier steps of a changing network (no momentum encoder): a short queue keeps them fresh.

Relatives: SupCon (image-level, hard class labels), ReCo / U2PL (pixel-level contrast with
class prototypes and memory banks, within one domain), ProDA (Zhang et al., CVPR 2021:
cross-domain class prototypes that denoise pseudo-labels). This loss works on whole images and
soft, histogram-derived positives, so source and target images meet when their scenes hold the
same classes in similar proportions.

Example config::

    method: {name: dacs, params: {classdist: {weight: 0.1, temperature: 0.1, queue: 256}}}
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segshift.errors import ConfigError
from segshift.methods.common.distributed import gather_rows

SIMILARITIES = ("cosine", "js", "jaccard")
POOLS = ("mean", "max")


@dataclass
class ClassDistParams:
    """``method.params.classdist``; ``weight: 0`` (the default) leaves the method as it is."""

    weight: float = 0.0  # loss weight; 0 = off
    temperature: float = 0.1  # SupCon's
    similarity: str = "cosine"  # cosine | js | jaccard (see the module docstring)
    presence: float = 0.01  # jaccard: share of counted pixels that makes a class present
    queue: int = 256  # images kept from earlier steps (0: this step's images only)
    proj_dim: int = 128
    hidden: int = 256  # projection head: Linear(C_f, hidden) -> ReLU -> Linear(hidden, proj_dim)
    pool: str = "mean"  # mean | max over the feature map
    confidence: float = 0.9  # pseudo-labels counted at this confidence or above
    min_counted: float = 0.05  # share of an image's pixels that must be counted

    def __post_init__(self) -> None:
        checks = {
            "weight": (self.weight >= 0, "a number >= 0"),
            "temperature": (self.temperature > 0, "a number > 0"),
            "similarity": (self.similarity in SIMILARITIES, "one of " + ", ".join(SIMILARITIES)),
            "presence": (0 <= self.presence < 1, "a number in [0, 1)"),
            "queue": (self.queue >= 0, "an integer >= 0"),
            "proj_dim": (self.proj_dim >= 1, "an integer >= 1"),
            "hidden": (self.hidden >= 1, "an integer >= 1"),
            "pool": (self.pool in POOLS, "one of " + ", ".join(POOLS)),
            "confidence": (0 <= self.confidence <= 1, "a number in [0, 1]"),
            "min_counted": (0 <= self.min_counted <= 1, "a number in [0, 1]"),
        }
        for key, (ok, expected) in checks.items():
            if not ok:
                raise ConfigError(
                    f"method.params.classdist.{key}: {getattr(self, key)!r} is not {expected}"
                )


@dataclass
class FeatureView:
    """Images handed to the contrast: decoder ``feat`` (B, C_f, h, w), ``label`` (B, H, W) int64
    with ``ignore_index`` on pixels not counted, and each image's ``domain`` name (None: one
    unnamed domain)."""

    feat: torch.Tensor
    label: torch.Tensor
    domain: Sequence[str] | None = None


def stream_views(
    feat: torch.Tensor, batch: dict[str, dict[str, Any]], streams: Sequence[str]
) -> list[FeatureView]:
    """One view per labeled stream of ``batch``, whose images ``feat`` (B_1 + B_2 + ..., C_f, h,
    w) holds in the order of ``streams``; labels and domains from the streams' batches."""
    parts = feat.split([len(batch[name]["label"]) for name in streams])
    return [
        FeatureView(part, batch[name]["label"], batch[name].get("domain"))
        for part, name in zip(parts, streams, strict=True)
    ]


def semi_views(
    feat: torch.Tensor,
    batch: dict[str, dict[str, Any]],
    labeled: Sequence[str],
    pseudo: torch.Tensor,
    unlabeled: str = "unlabeled",
) -> list[FeatureView]:
    """The views of a semi-supervised step whose ``feat`` holds the ``labeled`` streams' images
    and then stream ``unlabeled``'s, the latter counted by (B_u, H, W) ``pseudo``-labels."""
    n_labeled = sum(len(batch[name]["label"]) for name in labeled)
    view = FeatureView(feat[n_labeled:], pseudo, batch[unlabeled].get("domain"))
    return [*stream_views(feat[:n_labeled], batch, labeled), view]


def class_histograms(label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, C) float pixel counts per class of (B, H, W) labels; values outside [0, C) (the
    ignore index) are not counted."""
    flat = label.reshape(len(label), -1)
    valid = (flat >= 0) & (flat < num_classes)
    rows = torch.arange(len(label), device=label.device)[:, None].expand_as(flat)
    index = (rows * num_classes + flat)[valid]
    counts = torch.bincount(index, minlength=len(label) * num_classes)
    return counts.view(len(label), num_classes).float()


def confident_labels(
    label: torch.Tensor,
    confidence: torch.Tensor,
    threshold: float,
    valid: torch.Tensor | None = None,
    ignore_index: int = 255,
) -> torch.Tensor:
    """(B, H, W) pseudo-labels with ``ignore_index`` where ``confidence`` < ``threshold`` or
    outside ``valid`` (crop padding)."""
    keep = confidence >= threshold
    if valid is not None:
        keep = keep & valid
    return label.masked_fill(~keep, ignore_index)


def normalized(histograms: torch.Tensor) -> torch.Tensor:
    """Rows scaled to sum 1; all-zero rows stay zero."""
    return histograms / histograms.sum(dim=1, keepdim=True).clamp(min=1e-12)


def histogram_similarity(
    a: torch.Tensor, b: torch.Tensor, kind: str = "cosine", presence: float = 0.01
) -> torch.Tensor:
    """(N, M) similarity in [0, 1] of (N, C) and (M, C) histograms (counts or shares): 1 for
    identical histograms, 0 for disjoint class sets and for an empty histogram."""
    p, q = normalized(a.float()), normalized(b.float())
    if kind == "cosine":
        return (F.normalize(p, dim=1) @ F.normalize(q, dim=1).T).clamp(0.0, 1.0)
    if kind == "jaccard":
        pa, pb = (p >= presence) & (p > 0), (q >= presence) & (q > 0)
        inter = pa.float() @ pb.float().T
        union = pa.sum(1, keepdim=True) + pb.sum(1)[None] - inter
        return inter / union.clamp(min=1)
    if kind == "js":
        m = (p[:, None] + q[None]) / 2  # (N, M, C)

        def kl_to_m(x: torch.Tensor) -> torch.Tensor:  # sum_c x log2(x / m), 0 log 0 = 0
            ratio = torch.where(x > 0, x / m.clamp(min=1e-12), torch.ones_like(m))
            return (x * torch.log2(ratio)).sum(-1)

        divergence = 0.5 * kl_to_m(p[:, None].expand_as(m)) + 0.5 * kl_to_m(q[None].expand_as(m))
        similarity = (1.0 - divergence).clamp(0.0, 1.0)
        empty = (p.sum(1) == 0)[:, None] | (q.sum(1) == 0)[None]
        return similarity.masked_fill(empty, 0.0)
    raise ValueError(f"similarity must be one of {SIMILARITIES}, got {kind!r}")


def soft_supcon_loss(
    anchors: torch.Tensor,
    keys: torch.Tensor,
    target: torch.Tensor,
    exclude: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Soft SupCon of (N, D) anchors against (M, D) keys (both L2-normalised) with (N, M)
    target similarities >= 0; ``exclude`` (N, M) bool drops pairs (an anchor with itself, keys
    without a histogram) from numerator and denominator. Mean over anchors with a positive
    target mass; 0 (still connected to the graph) when there is none."""
    logits = (anchors @ keys.T / temperature).masked_fill(exclude, float("-inf"))
    log_prob = torch.log_softmax(logits, dim=1).masked_fill(exclude, 0.0)
    weights = target.masked_fill(exclude, 0.0)
    mass = weights.sum(dim=1)
    has_positive = mass > 0
    if not has_positive.any():
        return anchors.sum() * 0.0
    per_anchor = -(weights * log_prob).sum(dim=1) / mass.clamp(min=1e-12)
    return per_anchor[has_positive].mean()


def domain_ids(names: Sequence[str] | None, count: int, device: torch.device) -> torch.Tensor:
    """(count,) int64 ids of domain names (CRC-32 cut to 24 bits: exact in float32 rows)."""
    if names is None:
        return torch.zeros(count, dtype=torch.long, device=device)
    ids = [zlib.crc32(str(name).encode()) & 0xFFFFFF for name in names]
    return torch.tensor(ids, dtype=torch.long, device=device)


class ImageQueue(nn.Module):
    """FIFO of the last ``size`` images: embeddings (size, D), class shares (size, C) and domain
    ids (size,), as buffers (checkpointed with the method)."""

    def __init__(self, size: int, dim: int, num_classes: int) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("embeddings", torch.zeros(size, dim))
        self.register_buffer("histograms", torch.zeros(size, num_classes))
        self.register_buffer("domains", torch.zeros(size, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, embeddings: torch.Tensor, histograms: torch.Tensor, domains: torch.Tensor):
        """Append rows (the oldest entries make room); more rows than ``size``: the last ones."""
        if self.size == 0 or len(embeddings) == 0:
            return
        embeddings, histograms, domains = (
            x[-self.size :] for x in (embeddings, histograms, domains)
        )
        ptr = int(self.ptr)
        slots = (ptr + torch.arange(len(embeddings), device=self.embeddings.device)) % self.size
        self.embeddings[slots] = embeddings.to(self.embeddings.dtype)
        self.histograms[slots] = histograms.to(self.histograms.dtype)
        self.domains[slots] = domains.to(self.domains.dtype)
        self.ptr.fill_((ptr + len(embeddings)) % self.size)
        self.count.fill_(min(int(self.count) + len(embeddings), self.size))

    def entries(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Copies of the filled part: (n, D) embeddings, (n, C) shares, (n,) domains."""
        n = int(self.count)
        return self.embeddings[:n].clone(), self.histograms[:n].clone(), self.domains[:n].clone()


class ClassDist(nn.Module):
    """The projection head, the queue and the loss (see the module docstring).

    ``forward(views)`` returns ``{"loss": weight x L, "classdist": L, "classdist_cross": share of
    the positive mass on pairs of different domains, "classdist_kept": share of this step's
    images that took part}``.
    """

    def __init__(
        self,
        params: ClassDistParams,
        feat_channels: int,
        num_classes: int,
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        self.params = params
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.head = nn.Sequential(
            nn.Linear(feat_channels, params.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(params.hidden, params.proj_dim),
        )
        self.queue = ImageQueue(params.queue, params.proj_dim, num_classes)

    def embed(self, feat: torch.Tensor) -> torch.Tensor:
        """(B, C_f, h, w) features -> (B, proj_dim) L2-normalised embeddings (float32)."""
        pooled = feat.mean(dim=(2, 3)) if self.params.pool == "mean" else feat.amax(dim=(2, 3))
        return F.normalize(self.head(pooled).float(), dim=1)

    def confident(
        self, label: torch.Tensor, confidence: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pseudo-labels with the unconfident (and invalid) pixels ignored, at ``confidence``."""
        return confident_labels(label, confidence, self.params.confidence, valid, self.ignore_index)

    def forward(self, views: Sequence[FeatureView]) -> dict[str, torch.Tensor]:
        params = self.params
        embeddings = torch.cat([self.embed(v.feat) for v in views])
        device = embeddings.device
        with torch.autocast(device_type=device.type, enabled=False):
            counts = torch.cat([class_histograms(v.label, self.num_classes) for v in views])
            pixels = torch.cat(
                [torch.full((len(v.label),), v.label[0].numel(), device=device) for v in views]
            )
            kept = (counts.sum(1) > 0) & (counts.sum(1) >= params.min_counted * pixels)
            domains = torch.cat([domain_ids(v.domain, len(v.label), device) for v in views])
            shares = normalized(counts)
            loss, cross = self._loss(embeddings, shares, domains, kept)
        return {
            "loss": params.weight * loss,
            "classdist": loss.detach(),
            "classdist_cross": cross,
            "classdist_kept": kept.float().mean(),
        }

    def _loss(
        self,
        embeddings: torch.Tensor,
        shares: torch.Tensor,
        domains: torch.Tensor,
        kept: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss over this process's kept images against every process's kept images and the
        queue; pushes the gathered images to the queue afterwards. Returns (L, cross share)."""
        n, dim = embeddings.shape
        rows = torch.cat(
            [embeddings.detach(), shares, domains[:, None].float(), kept[:, None].float()], dim=1
        )
        everyone, start = gather_rows(rows)
        mine = torch.arange(start, start + n, device=embeddings.device)
        current = torch.cat([everyone[:start, :dim], embeddings, everyone[start + n :, :dim]])
        queued, queued_shares, queued_domains = self.queue.entries()
        keys = torch.cat([current, queued])
        key_shares = torch.cat([everyone[:, dim:-2], queued_shares])
        key_domains = torch.cat([everyone[:, -2].long(), queued_domains])
        key_kept = torch.cat([everyone[:, -1].bool(), torch.ones_like(queued_domains).bool()])

        exclude = ~key_kept[None].expand(n, -1).clone()
        exclude[torch.arange(n), mine] = True  # an anchor is not its own key
        target = histogram_similarity(
            shares, key_shares, self.params.similarity, self.params.presence
        )
        anchors = kept.nonzero()[:, 0]
        loss = soft_supcon_loss(
            embeddings[anchors],
            keys,
            target[anchors],
            exclude[anchors],
            self.params.temperature,
        )
        positive = target[anchors].masked_fill(exclude[anchors], 0.0)
        other = key_domains[None] != domains[anchors][:, None]
        cross = (positive * other).sum() / positive.sum().clamp(min=1e-12)

        gathered_kept = everyone[:, -1].bool()
        self.queue.push(
            everyone[gathered_kept, :dim],
            everyone[gathered_kept, dim:-2],
            everyone[gathered_kept, -2].long(),
        )
        return loss, cross.detach()
