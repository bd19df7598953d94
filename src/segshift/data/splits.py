"""Choosing which samples of a dataset to use: split files and deterministic labeled subsets."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

from segshift.errors import DataError


class _Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=_Named)


def read_split_file(path: Path) -> list[str]:
    """Sample names listed in a split file, one per line.

    A line may hold a bare name (``aachen_000000_000019_leftImg8bit``), a file name or a path;
    only the first whitespace-separated token is used and its stem is the name, so the
    ``image_path label_path`` lists of UniMatch/CPS work unchanged. Blank lines and ``#``
    comments are skipped.
    """
    if not path.is_file():
        raise DataError(f"split file {path} does not exist")
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(Path(line.split()[0]).stem)
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


def keep_listed(names: Sequence[str], listed: Sequence[str], split_file: Path) -> list[int]:
    """Indices of ``names`` that appear in ``listed``; every listed name must exist."""
    position = {name: i for i, name in enumerate(names)}
    missing = [name for name in listed if name not in position]
    if missing:
        raise DataError(
            f"split file {split_file}: {len(missing)} listed samples are not in the dataset, "
            f"e.g. {missing[:3]}"
        )
    return sorted({position[name] for name in listed})


def named_split(files: Sequence[T], root: Path, split: str) -> list[T]:
    """All ``files`` for split ``all``/``train``; otherwise those listed in ``root/<split>.txt``.

    For datasets without split directories (GTA5, SYNTHIA), whose training split is everything.
    """
    if split in ("all", "train"):
        return list(files)
    path = root / f"{split}.txt"
    keep = keep_listed([f.name for f in files], read_split_file(path), path)
    return [files[i] for i in keep]
