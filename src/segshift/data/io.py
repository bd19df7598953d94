"""Reading images and masks; every failure becomes a DataError that names the file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from segshift.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _open(path: Path, mode: str | None, keep: tuple[str, ...] = ()) -> np.ndarray:
    """Pixels of ``path``, converted to ``mode`` unless the file's mode is in ``keep``."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode == "F" and mode is not None:
                raise DataError(
                    f"{path}: floating-point image (mode F) has no defined range; convert it "
                    "to 8- or 16-bit"
                )
            if mode is None or image.mode == mode or image.mode in keep:
                return np.array(image)
            return np.array(image.convert(mode))
    except FileNotFoundError as error:
        raise DataError(f"{path}: file not found") from error
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise DataError(f"{path}: cannot read image ({error})") from error


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file from its header, without decoding the pixels; a DataError
    naming the file when it is missing or not an image."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except FileNotFoundError as error:
        raise DataError(f"{path}: file not found") from error
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise DataError(f"{path}: cannot read image ({error})") from error


# Pillow's modes for 16-bit grayscale ("I;16*") and 32-bit integer ("I", which older Pillow
# versions give for 16-bit PNGs). Converting these to RGB clips at 255, i.e. makes them white.
_WIDE_GRAY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def read_image(path: Path) -> np.ndarray:
    """An image file as RGB uint8 (H,W,3).

    16-bit grayscale images are scaled to 8 bits (``round(v * 255 / 65535)``) and repeated over
    the three channels; 16-bit RGB PNGs keep their high byte (Pillow). Floating-point images
    have no agreed range and are refused with a DataError naming the file.
    """
    data = _open(path, "RGB", keep=_WIDE_GRAY_MODES)
    if data.ndim == 2:  # 16-bit (or 32-bit integer) grayscale
        if data.size and (data.min() < 0 or data.max() > 65535):
            raise DataError(
                f"{path}: integer image with values outside 0..65535; convert it to 8- or 16-bit"
            )
        gray = (data.astype(np.uint32) * 255 + 32767) // 65535
        return np.repeat(gray.astype(np.uint8)[..., None], 3, axis=2)
    return data


MASK_FORMATS = ("auto", "index", "palette", "rgb", "channel")


def read_mask(path: Path, mask_format: str = "index", channel: int = 0) -> np.ndarray:
    """A mask file as raw ids (H,W) (uint8, or uint16/int32 for 16-bit PNGs, never wrapped to
    8 bits) or colours (H,W,3) uint8.

    ``index``: a single-channel PNG; a palette PNG gives its indices. ``palette``: must be a
    palette ("P") PNG; gives its indices. ``rgb``: colours (H,W,3). ``auto``: colours for RGB(A)
    files, ids otherwise. ``channel``: the ids are channel ``channel`` (R=0, G=1, B=2, A=3) of
    a colour file, e.g. CARLA's class id in R (a single-channel file is used as it is).
    """
    if mask_format == "rgb":
        return _open(path, "RGB")
    if mask_format == "channel":
        return read_channel_unchanged(path, channel)
    mask = _open(path, None)
    if mask.dtype.kind not in "iub":
        raise DataError(f"{path}: a mask must hold integer ids, got {mask.dtype} pixels")
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
    if not 0 <= channel < data.shape[2]:
        raise DataError(f"{path}: has {data.shape[2]} channels, so no channel {channel}")
    file_order = (2, 1, 0, 3)  # OpenCV stores BGR(A)
    return data[..., file_order[channel]]


def list_images(directory: Path, pattern: str = "*") -> list[Path]:
    """Image files in ``directory`` matching ``pattern``, sorted by name (non-recursive)."""
    return sorted(
        p for p in directory.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
