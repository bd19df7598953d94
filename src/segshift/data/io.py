"""Reading images and masks; every failure becomes a DataError that names the file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from segshift.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _open(path: Path, mode: str | None) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image.load()
            return np.array(image if mode is None or image.mode == mode else image.convert(mode))
    except FileNotFoundError as error:
        raise DataError(f"{path}: file not found") from error
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise DataError(f"{path}: cannot read image ({error})") from error


def read_image(path: Path) -> np.ndarray:
    """An image file as RGB uint8 (H,W,3)."""
    return _open(path, "RGB")


MASK_FORMATS = ("auto", "index", "palette", "rgb")


def read_mask(path: Path, mask_format: str = "index") -> np.ndarray:
    """A mask file as raw ids (H,W) (uint8, or uint16 for 16-bit PNGs) or colours (H,W,3) uint8.

    ``index``: a single-channel PNG; a palette PNG gives its indices. ``palette``: must be a
    palette ("P") PNG; gives its indices. ``rgb``: colours (H,W,3). ``auto``: colours for RGB(A)
    files, ids otherwise.
    """
    if mask_format == "rgb":
        return _open(path, "RGB")
    mask = _open(path, None)
    if mask_format == "auto":
        return mask[..., :3] if mask.ndim == 3 else mask
    if mask_format == "palette" and not _is_palette(path):
        raise DataError(f"{path}: expected a palette ('P' mode) PNG mask")
    if mask.ndim != 2:
        raise DataError(
            f"{path}: expected a single-channel mask (index or palette PNG), got shape "
            f"{mask.shape}; colour masks need mask_format 'rgb'"
        )
    return mask


def _is_palette(path: Path) -> bool:
    with Image.open(path) as image:
        return image.mode == "P"


def read_channel_unchanged(path: Path, channel: int) -> np.ndarray:
    """One channel (in file order, R=0) of a multi-channel, possibly 16-bit image: (H,W).

    Pillow cannot read 16-bit RGB PNGs such as SYNTHIA's labels, so this goes through OpenCV.
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise DataError(f"{path}: cannot read image (corrupt or truncated)")
    if data.ndim == 2:
        return data
    file_order = (2, 1, 0, 3)  # OpenCV stores BGR(A)
    return data[..., file_order[channel]]


def list_images(directory: Path, pattern: str = "*") -> list[Path]:
    """Image files in ``directory`` matching ``pattern``, sorted by name (non-recursive)."""
    return sorted(
        p for p in directory.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
