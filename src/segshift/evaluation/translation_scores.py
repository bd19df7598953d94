"""Translation quality without labels: how target-like are translated source images?

- ``patch_fd``: the Fréchet distance (as in FID, Heusel et al., NeurIPS 2017, but without an
  ImageNet network) between Gaussians fitted to *patch statistics* of the translated source
  images and of the target images. Each 8x8 patch gives 8 numbers: its mean and standard
  deviation of R, G, B and the mean absolute horizontal and vertical difference of luminance
  (colour, contrast and texture). Lower = closer to the target style; ``patch_fd_source`` is
  the same distance for the untranslated source images, the number a translation should beat.
- With a frozen segmenter (CyCADA's ``semantic.checkpoint``): ``segmenter_fd``, the Fréchet
  distance of the segmenter's decoder features (``return_feat``, one vector per feature-map
  location) of translated source vs target images, and ``semantic_agreement``, the share of
  pixels whose predicted class is the same on a source image and on its translation (did the
  translation keep the content? higher = better).

Example::

    >>> translation_scores(source, generator(source), target)
    {'patch_fd': 0.012, 'patch_fd_source': 0.034}
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PATCH = 8
LUMA = (0.299, 0.587, 0.114)


def patch_features(images: torch.Tensor, patch: int = PATCH) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B * H/patch * W/patch, 8) patch statistics: mean and
    standard deviation of R, G, B, mean |horizontal| and |vertical| luminance difference."""
    x = images.float().clamp(0, 1)
    mean = F.avg_pool2d(x, patch)
    std = (F.avg_pool2d(x * x, patch) - mean * mean).clamp_min(0).sqrt()
    luma = sum(w * x[:, c : c + 1] for c, w in enumerate(LUMA))
    dx = F.pad((luma[..., :, 1:] - luma[..., :, :-1]).abs(), (0, 1))
    dy = F.pad((luma[..., 1:, :] - luma[..., :-1, :]).abs(), (0, 0, 0, 1))
    grads = F.avg_pool2d(torch.cat([dx, dy], 1), patch)
    features = torch.cat([mean, std, grads], 1)
    return features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2) of Gaussians fitted to
    the rows of ``a`` (N, D) and ``b`` (M, D) (float64, eigen-decompositions: exact for the
    positive semi-definite covariances of few samples too). 0 for identical rows."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    middle = root_a @ cov_b @ root_a
    cross = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    distance = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return float(distance.clamp_min(0))


def _segmenter_outputs(segmenter: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(feature vectors (N, D), predicted classes at image size (B, H, W))."""
    out = segmenter(images, return_feat=True)
    feat = out["feat"].float()
    logits = F.interpolate(
        out["out"].float(),
        images.shape[-2:],
        mode="bilinear",
        align_corners=bool(getattr(segmenter, "align_corners", False)),
    )
    return feat.permute(0, 2, 3, 1).reshape(-1, feat.shape[1]), logits.argmax(1)


def translation_scores(
    source: torch.Tensor,
    translated: torch.Tensor,
    target: torch.Tensor,
    segmenter: nn.Module | None = None,
) -> dict[str, float]:
    """The scores of the module docstring for source images, their translations and target
    images (each (B, 3, H, W) RGB in [0, 1]; the target's size may differ)."""
    target_patches = patch_features(target)
    values = {
        "patch_fd": frechet_distance(patch_features(translated), target_patches),
        "patch_fd_source": frechet_distance(patch_features(source), target_patches),
    }
    if segmenter is not None:
        source_feat, source_pred = _segmenter_outputs(segmenter, source)
        translated_feat, translated_pred = _segmenter_outputs(segmenter, translated)
        target_feat, _ = _segmenter_outputs(segmenter, target)
        values["segmenter_fd"] = frechet_distance(translated_feat, target_feat)
        values["semantic_agreement"] = float((source_pred == translated_pred).float().mean())
    return values
