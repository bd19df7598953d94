"""Colour-coded predictions and overlays, saved as PNG."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from segshift.errors import DataError, WriteError
from segshift.fileio import atomic_write_bytes


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def colorize(
    train_ids: np.ndarray | torch.Tensor,
    palette: Sequence[Sequence[int]] | np.ndarray,
    ignore_index: int = 255,
) -> np.ndarray:
    """Map train ids (H, W) to colours (H, W, 3) uint8; ``ignore_index`` pixels are black.

    Args:
        train_ids: integer ids in [0, C) or ``ignore_index``.
        palette: (C, 3) RGB colours, index = train id.

    Raises:
        ValueError: an id outside [0, C) that is not ``ignore_index``.
    """
    ids = _as_numpy(train_ids).astype(np.int64)
    colours = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    known = ids != ignore_index
    bad = known & ((ids < 0) | (ids >= len(colours)))
    if bad.any():
        raise ValueError(
            f"train id {int(ids[bad][0])} has no colour in a {len(colours)}-class palette"
        )
    rgb = np.zeros((*ids.shape, 3), dtype=np.uint8)
    rgb[known] = colours[ids[known]]
    return rgb


def overlay(image_rgb: np.ndarray, colour_mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend ``(1 - alpha) * image + alpha * mask``, both (H, W, 3) uint8; returns (H, W, 3) uint8."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if image_rgb.shape != colour_mask.shape or image_rgb.shape[-1:] != (3,):
        raise ValueError(
            f"image {image_rgb.shape} and mask {colour_mask.shape} must both be (H, W, 3)"
        )
    blend = (1.0 - alpha) * image_rgb.astype(np.float32) + alpha * colour_mask.astype(np.float32)
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)


def save_prediction(
    path_prefix: str | os.PathLike,
    image_rgb: np.ndarray,
    pred: np.ndarray | torch.Tensor,
    palette: Sequence[Sequence[int]] | np.ndarray,
    alpha: float = 0.5,
) -> tuple[Path, Path]:
    """Write ``<prefix>_color.png`` (colorized ``pred``) and ``<prefix>_overlay.png``.

    Args:
        path_prefix: e.g. ``out/frankfurt_000000_000294``; missing directories are created.
        image_rgb: (H, W, 3) uint8 input image.
        pred: (H, W) train ids.
        palette: (C, 3) RGB colours.

    Returns:
        The two paths written.

    Raises:
        DataError: a file cannot be written (disk full, permissions); it names the path and
            leaves no partial file.
    """
    colour = colorize(pred, palette)
    images = {"color": colour, "overlay": overlay(image_rgb, colour, alpha)}
    prefix = Path(path_prefix)
    written = []
    for kind, array in images.items():
        path = prefix.with_name(f"{prefix.name}_{kind}.png")
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            written.append(atomic_write_bytes(path, buffer.getvalue()))
        except OSError as exc:  # a WriteError names the file already
            message = str(exc) if isinstance(exc, WriteError) else f"cannot write {path}: {exc}"
            raise DataError(message) from exc
    return written[0], written[1]
