"""Choosing which samples of a dataset to use: split files and deterministic labeled subsets.

Split files are read in the layouts the semi-supervised literature publishes, so its lists work
as they are:

- UniMatch (Cityscapes): ``leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png
  gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png``;
- CPS / TorchSemiSeg (Cityscapes): ``/images/train/aachen_000000_000019.png<TAB>...``;
- UniMatch (VOC): ``JPEGImages/2007_000032.jpg SegmentationClass/2007_000032.png``;
- CPS / U2PL (VOC) and ``ImageSets/Segmentation/*.txt``: ``2007_000032``.

Only a line's first token (the image) is read; its stem is matched against the dataset's
sample names through the dataset's ``split_key`` (Cityscapes drops ``_leftImg8bit``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Protocol, TypeVar

import numpy as np

from segshift.data.io import IMAGE_SUFFIXES
from segshift.errors import DataError


class _Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=_Named)


def split_entry_name(entry: str) -> str:
    """The sample name of a split-file token: its last path component without an image suffix.

    ``JPEGImages/2007_000032.jpg`` -> ``2007_000032``; ``2007_000032`` and names holding dots
    (``scene.v2``) are kept as they are, because only known image suffixes are removed.
    """
    name = PurePosixPath(entry.replace("\\", "/")).name
    stem, dot, suffix = name.rpartition(".")
    return stem if dot and f".{suffix.lower()}" in IMAGE_SUFFIXES else name


def read_split_file(path: Path) -> list[str]:
    """Sample names listed in a split file, one per line.

    A line may hold a bare name (``aachen_000000_000019_leftImg8bit``), a file name or a path,
    optionally followed by the label's path (``image_path label_path``, space or tab): only the
    first token is used, see :func:`split_entry_name`. Blank lines and ``#`` comments are
    skipped.
    """
    if not path.is_file():
        raise DataError(f"split file {path} does not exist")
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(split_entry_name(line.split()[0]))
    if not names:
        raise DataError(f"split file {path} lists no samples")
    return names


def subset_indices(count: int, n: int, seed: int) -> list[int]:
    """The first ``n`` of a seeded permutation of ``range(count)``, returned sorted.

    Subsets drawn with the same seed are nested: the 23 chosen images are among the 46.
    """
    if not 0 < n <= count:
        raise ValueError(f"n_labeled={n} must be between 1 and the {count} available samples")
    order = np.random.default_rng(seed).permutation(count)
    return sorted(int(i) for i in order[:n])


def keep_listed(
    names: Sequence[str],
    listed: Sequence[str],
    split_file: Path,
    key: Callable[[str], str] | None = None,
) -> list[int]:
    """Indices of ``names`` that appear in ``listed``; every listed name must exist.

    ``key`` maps both the dataset's names and the listed ones to what is compared (a dataset's
    ``split_key``: Cityscapes compares ``aachen_000000_000019`` whatever the suffix).
    """
    key = key or (lambda name: name)
    position: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        position.setdefault(key(name), []).append(i)
    missing = [name for name in listed if key(name) not in position]
    if missing:
        raise DataError(
            f"split file {split_file}: {len(missing)} listed samples are not in the dataset, "
            f"e.g. {missing[:3]}"
        )
    ambiguous = next((position[key(n)] for n in listed if len(position[key(n)]) > 1), None)
    if ambiguous is not None:
        raise DataError(
            f"split file {split_file}: samples {[names[i] for i in ambiguous]} share the name "
            f"'{key(names[ambiguous[0]])}', so the list cannot tell them apart"
        )
    return sorted({position[key(name)][0] for name in listed})


# Names of the split files a dataset root may hold; one of them present means the root is split.
SPLIT_FILE_NAMES = ("train", "val", "test", "trainval")


def split_file_of(root: Path, split: str, required: bool) -> Path | None:
    """``root/<split>.txt`` that lists split ``split``, or None when the split is every sample.

    ``all`` is every sample. A root holding split files (``train.txt``, ``val.txt``, ...) but
    not ``<split>.txt`` is a DataError naming the missing file; a root with none gives None,
    unless ``required`` (then the missing file is the error).
    """
    if split == "all":
        return None
    path = root / f"{split}.txt"
    if path.is_file():
        return path
    present = [f"{name}.txt" for name in SPLIT_FILE_NAMES if (root / f"{name}.txt").is_file()]
    if present:
        raise DataError(
            f"split '{split}': {path} does not exist, but {root} has split files "
            f"{', '.join(present)}; name one of them as the split, or use split: all for "
            "every sample"
        )
    if required:
        raise DataError(f"split '{split}': split file {path} does not exist")
    return None


def named_split(files: Sequence[T], root: Path, split: str) -> list[T]:
    """The ``files`` listed in ``root/<split>.txt``; every file for split ``all``, and for
    ``train`` when the root holds no split files (GTA5, SYNTHIA: the training split is every
    frame). See :func:`split_file_of`."""
    path = split_file_of(root, split, required=split != "train")
    if path is None:
        return list(files)
    keep = keep_listed([f.name for f in files], read_split_file(path), path)
    return [files[i] for i in keep]
