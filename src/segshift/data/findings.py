"""What ``segshift data check`` finds beside read errors (`segshift.data.check` reports them).

- an image smaller than :data:`MIN_IMAGE_SIDE` on a side: a problem (augmentation rescales it
  to nothing, and no network segments a thumbnail);
- raw mask ids outside a built-in label space's documented ids (CamVid masks holding 50, 200 or
  259): a warning per id with its files (they are read as 255, ignored, like void);
- sample names that two parts of one concatenated stream share (KITTI's ``training/000000_10``
  and ``testing/000000_10``): a warning (pseudo-labels name such files by their folders);
- masks resized to their images by ``options.fit_masks``: counted.

Example::

    >>> small_image_message((1, 1), "img/a.png")
    'img/a.png: image 1x1 (HxW) is smaller than 4 pixels on a side: too small to train or ...'
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

# pixels: smaller images are scaled to nothing by random rescaling and carry no scene (a
# thumbnail or a broken export); small test fixtures (8x8) stay valid
MIN_IMAGE_SIDE = 4


def small_image_message(size: tuple[int, int], path: str | Path) -> str | None:
    """The problem of an image of ``size`` (H, W) too small to train or evaluate on, or None."""
    if min(size) >= MIN_IMAGE_SIDE:
        return None
    return (
        f"{path}: image {size[0]}x{size[1]} (HxW) is smaller than {MIN_IMAGE_SIDE} pixels on a "
        "side: too small to train or evaluate on (a thumbnail or a broken export?); remove it"
    )


def unknown_id_message(raw_id: int, mask: str | Path, space: str) -> str:
    """The warning for a raw id outside built-in label space ``space``."""
    return (
        f"{mask}: raw id {raw_id} is not an id of label space '{space}': read as 255 (ignored); "
        "are these masks of another dataset? (options.classes with explicit ids maps them)"
    )


def shared_names(parts: Sequence[tuple[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """{(part, earlier part): sample names the part shares with it}; ``parts``: (where,
    dataset) in the stream's order (None for a part that could not be opened)."""
    seen: dict[str, str] = {}
    found: dict[tuple[str, str], list[str]] = {}
    for where, dataset in parts:
        for sample in dataset.files if dataset is not None else ():
            first = seen.setdefault(sample.name, where)
            if first != where:
                found.setdefault((where, first), []).append(sample.name)
    return found


def shared_name_message(names: Sequence[str], where: str, first: str) -> str:
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return (
        f"{len(names)} sample name(s) of {where} are also in {first} ({shown}): pseudo-label "
        "and the pipeline name these files <folder>_<name> to keep them apart"
    )


def fitted_line(where: str, fitted: int) -> str | None:
    """The line saying how many masks ``options.fit_masks`` resized, or None for none."""
    if not fitted:
        return None
    return (
        f"  {where}: {fitted} mask(s) resized (nearest) to their image's size by options.fit_masks"
    )
