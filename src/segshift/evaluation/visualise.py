"""Colour-coded predictions and overlays, saved as PNG."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from segshift.errors import DataError, WriteError
from segshift.fileio import atomic_write_bytes

# What legend.json says of the value 255 in masks (never predicted; ground truth's ignore).
IGNORE = {"id": 255, "name": "ignore", "color": [0, 0, 0]}


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


def write_png(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` (H, W) or (H, W, 3) uint8 as a PNG (see :func:`write_file`)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return write_file(path, buffer.getvalue())


def write_file(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` atomically; missing directories are created.

    Raises:
        DataError: the file cannot be written (disk full, permissions); it names the path and
            leaves no partial file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_bytes(path, data)
    except OSError as exc:  # a WriteError names the file already
        message = str(exc) if isinstance(exc, WriteError) else f"cannot write {path}: {exc}"
        raise DataError(message) from exc


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
        DataError: a file cannot be written (see :func:`write_file`).
    """
    colour = colorize(pred, palette)
    prefix = Path(path_prefix)
    return (
        write_png(prefix.with_name(f"{prefix.name}_color.png"), colour),
        write_png(
            prefix.with_name(f"{prefix.name}_overlay.png"), overlay(image_rgb, colour, alpha)
        ),
    )


def panel(parts: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Side-by-side (H, W_i, 3) uint8 images of one height, ``gap`` white columns between them.

    Example::

        >>> panel([image, colorize(truth, palette), colorize(pred, palette)]).shape
        (H, 3 * W + 8, 3)
    """
    heights = {part.shape[0] for part in parts}
    if len(heights) != 1:
        raise ValueError(f"panel parts must share a height, got {sorted(heights)}")
    spacer = np.full((heights.pop(), gap, 3), 255, np.uint8)
    row: list[np.ndarray] = []
    for part in parts:
        row.extend([spacer, part] if row else [part])
    return np.concatenate(row, axis=1)


def legend_entries(
    class_names: Sequence[str], palette: Sequence[Sequence[int]]
) -> list[dict[str, object]]:
    """``[{"id": k, "name": class_names[k], "color": [r, g, b]}, ...]``, one per train id."""
    return [
        {"id": k, "name": str(name), "color": [int(c) for c in colour]}
        for k, (name, colour) in enumerate(zip(class_names, palette, strict=True))
    ]


def legend_image(
    class_names: Sequence[str], palette: Sequence[Sequence[int]], row_height: int = 20
) -> np.ndarray:
    """A (rows, W, 3) uint8 legend: per class a colour swatch and ``"<id> <name>"``, black on
    white."""
    width = 60 + 7 * max((len(str(name)) for name in class_names), default=0)
    image = Image.new("RGB", (width, row_height * len(class_names)), "white")
    draw = ImageDraw.Draw(image)
    for k, (name, colour) in enumerate(zip(class_names, palette, strict=True)):
        top = k * row_height
        draw.rectangle([2, top + 2, 2 + 2 * row_height, top + row_height - 3], fill=tuple(colour))
        draw.text((8 + 2 * row_height, top + 4), f"{k} {name}", fill="black")
    return np.asarray(image)


def write_legend(
    directory: str | os.PathLike, class_names: Sequence[str], palette: Sequence[Sequence[int]]
) -> tuple[Path, Path]:
    """Write ``legend.json`` (:func:`legend_entries`) and ``legend.png`` into ``directory``."""
    directory = Path(directory)
    text = json.dumps({"classes": legend_entries(class_names, palette), "ignore": IGNORE}, indent=2)
    return (
        write_file(directory / "legend.json", (text + "\n").encode()),
        write_png(directory / "legend.png", legend_image(class_names, palette)),
    )
