"""Rare-class sampling (RCS) of DAFormer (Hoyer et al., "DAFormer: Improving Network Architectures
and Training Strategies for Domain-Adaptive Semantic Segmentation", CVPR 2022, Sec. 3.3).

Synthetic source sets are dominated by a few classes (road, building, sky), so rare classes are
seen late and learned badly. RCS samples the images that contain rare classes more often:

1. count the pixels of every train id in every full-resolution label, without augmentation,
   once per dataset (:func:`cached_class_pixel_counts` keeps them as JSON in the run directory);
2. ``f_c = n_c / sum_c' n_c'`` over the classes present, ``P(c) = softmax((1 - f_c) / T)``;
3. a sample is drawn as a class ``c ~ P``, then an image uniformly among those with more than
   ``min_pixels`` pixels of ``c`` (:meth:`RareClassSampling.draw`);
4. the dataset redraws the random crop until it holds more than ``min_pixels * min_crop_ratio``
   pixels of ``c`` (``SegDataset`` with a class in its key). As in DAFormer, that count is taken
   on the crop as it is, after resizing: ``min_pixels`` is in full-resolution pixels, the crop
   threshold in crop pixels (3000 and 1500 for GTA5 at 1914x1052 resized to 1280x720).

Example::

    >>> counts = cached_class_pixel_counts(dataset, run_dir / "rcs")
    >>> rcs = RareClassSampling.from_counts(counts, temperature=0.01, min_pixels=3000)
    >>> index, cls = rcs.draw(np.random.default_rng(0))
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from segshift.data.base import SegDataset
from segshift.errors import ConfigError
from segshift.fileio import atomic_write_bytes

CACHE_VERSION = 1
PixelCounts = dict[int, int]  # train id -> pixels of that class in one label


def rcs_class_probabilities(
    totals: Mapping[int, int], temperature: float, classes: Iterable[int] | None = None
) -> dict[int, float]:
    """``P(c) = softmax_c((1 - f_c) / T)`` with ``f_c = n_c / sum n`` (DAFormer), ascending by n_c.

    ``totals``: pixels per class over the dataset. ``classes``: restrict the softmax to these
    (the classes that have an eligible image); the frequencies still count every class, so this
    equals renormalising ``P`` over them, computed without underflow for small ``T``.
    """
    if temperature <= 0:
        raise ValueError(f"the RCS temperature must be > 0, got {temperature}")
    kept = sorted(totals if classes is None else classes, key=lambda c: (totals[c], c))
    total = sum(totals.values())
    logits = np.array([(1.0 - totals[c] / total) / temperature for c in kept], dtype=np.float64)
    weights = np.exp(logits - logits.max())
    return dict(zip(kept, (weights / weights.sum()).tolist()))


class RareClassSampling:
    """Draws ``(dataset index, class)``: a class by its RCS probability, then an eligible image.

    Args:
        classes: the classes that can be drawn, ascending by pixel count.
        probabilities: ``P(c)`` of each class (sums to 1).
        samples: per class, the dataset indices with more than ``min_pixels`` pixels of it.
    """

    def __init__(
        self,
        classes: Sequence[int],
        probabilities: Sequence[float],
        samples: Sequence[Sequence[int]],
    ) -> None:
        self.classes = tuple(int(c) for c in classes)
        self.probabilities = tuple(float(p) for p in probabilities)
        self.samples = tuple(tuple(int(i) for i in s) for s in samples)
        self._cumulative = np.cumsum(self.probabilities)

    @classmethod
    def from_counts(
        cls, counts: Sequence[Mapping[int, int]], temperature: float, min_pixels: int
    ) -> RareClassSampling:
        """Build from per-image pixel counts; classes without an eligible image are dropped."""
        totals: Counter[int] = Counter()
        for image_counts in counts:
            totals.update(image_counts)
        eligible = {
            c: [i for i, image_counts in enumerate(counts) if image_counts.get(c, 0) > min_pixels]
            for c in totals
        }
        kept = [c for c in totals if eligible[c]]
        if not kept:
            raise ConfigError(
                f"rare-class sampling: no image has more than rcs_min_pixels={min_pixels} pixels "
                "of any class; lower rcs_min_pixels (it counts full-resolution label pixels)"
            )
        probabilities = rcs_class_probabilities(totals, temperature, kept)
        return cls(
            list(probabilities), list(probabilities.values()), [eligible[c] for c in probabilities]
        )

    def draw(self, rng: np.random.Generator) -> tuple[int, int]:
        """``(dataset index, class)`` from two draws of ``rng``: the class, then the image."""
        k = min(
            int(np.searchsorted(self._cumulative, rng.random(), side="right")),
            len(self.classes) - 1,  # a uniform draw above a cumulative sum rounded below 1
        )
        candidates = self.samples[k]
        return candidates[int(rng.integers(len(candidates)))], self.classes[k]

    def summary(self, class_names: Sequence[str], top: int = 5) -> str:
        """One line: the most likely classes with their probability and eligible image count."""
        order = sorted(range(len(self.classes)), key=lambda k: -self.probabilities[k])
        shown = ", ".join(
            f"{class_names[self.classes[k]]} {self.probabilities[k]:.3f} ({len(self.samples[k])})"
            for k in order[:top]
        )
        return f"P(class) (eligible images), top {min(top, len(order))} of {len(order)}: {shown}"


def count_class_pixels(dataset: SegDataset, num_workers: int = 0) -> list[PixelCounts]:
    """Pixels of each train id in each full-resolution label of ``dataset`` (no augmentation).

    Shows a progress bar; ``num_workers`` threads read the labels (decoding releases the GIL).
    """
    num_classes = dataset.label_space.num_classes

    def count(index: int) -> PixelCounts:
        pixels = np.bincount(dataset.load_label(index).ravel(), minlength=256)[:num_classes]
        return {int(c): int(pixels[c]) for c in np.flatnonzero(pixels)}

    progress = tqdm(
        total=len(dataset), desc=f"RCS class statistics of {dataset.dataset_name}", leave=False
    )
    with progress, ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
        counts = []
        for image_counts in pool.map(count, range(len(dataset))):
            counts.append(image_counts)
            progress.update()
    return counts


def class_stats_path(dataset: SegDataset, cache_dir: str | Path) -> Path:
    """``<cache_dir>/<dataset name>-<hash>.json``; the hash identifies what is counted: the
    dataset type, root, split, label space and the selected samples (subset, split file)."""
    space = dataset.label_space
    identity = [
        type(dataset).__name__,
        str(dataset.root.resolve()),
        dataset.split,
        space.name,
        list(space.class_names),
        sorted(space.raw_to_train.items()),
        [sample.name for sample in dataset.files],
    ]
    digest = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{dataset.dataset_name}-{digest}.json"


def _fingerprint(dataset: SegDataset) -> str:
    """Mask paths, sizes and modification times: regenerated masks make a cache stale."""
    digest = hashlib.sha256()
    for sample in dataset.files:
        assert sample.mask is not None
        stat = sample.mask.stat()
        digest.update(f"{sample.mask}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _read_cache(path: Path, dataset: SegDataset, fingerprint: str) -> list[PixelCounts]:
    """The counts stored at ``path``; ValueError (or OSError) if unreadable or not this data's."""
    data = json.loads(path.read_text())
    if data.get("version") != CACHE_VERSION or data.get("fingerprint") != fingerprint:
        raise ValueError("written for another version of the data or of this file")
    samples = data["samples"]
    if [s["name"] for s in samples] != [f.name for f in dataset.files]:
        raise ValueError("its samples are not the dataset's")
    num_classes = dataset.label_space.num_classes
    counts = [{int(c): int(n) for c, n in s["pixels"].items()} for s in samples]
    if any(not 0 <= c < num_classes or n < 0 for image in counts for c, n in image.items()):
        raise ValueError("class ids or pixel counts out of range")
    return counts


def cached_class_pixel_counts(
    dataset: SegDataset, cache_dir: str | Path, num_workers: int = 0
) -> list[PixelCounts]:
    """:func:`count_class_pixels`, computed once and kept in ``cache_dir`` (see
    :func:`class_stats_path`); a stale or corrupt file is recomputed with a warning. A
    concatenation (``ConcatSegDataset``) keeps one file per part, in the order of its samples."""
    parts = getattr(dataset, "parts", None)
    if parts is not None:
        return [
            c for part in parts for c in cached_class_pixel_counts(part, cache_dir, num_workers)
        ]
    path = class_stats_path(dataset, cache_dir)
    fingerprint = _fingerprint(dataset)
    if path.is_file():
        try:
            return _read_cache(path, dataset, fingerprint)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            warnings.warn(
                f"rare-class statistics {path} are unusable ({type(err).__name__}: {err}); "
                "recomputing them",
                RuntimeWarning,
                stacklevel=2,
            )
    counts = count_class_pixels(dataset, num_workers)
    record: dict[str, Any] = {
        "version": CACHE_VERSION,
        "dataset": f"{dataset.dataset_name} at {dataset.root} (split {dataset.split})",
        "label_space": dataset.label_space.name,
        "fingerprint": fingerprint,
        "samples": [
            {"name": f.name, "pixels": {str(c): n for c, n in image.items()}}
            for f, image in zip(dataset.files, counts)
        ],
    }
    atomic_write_bytes(path, json.dumps(record, indent=1).encode())
    return counts


def build_rare_class_sampling(
    dataset: SegDataset, cfg: Any, cache_dir: str | Path, num_workers: int = 0
) -> RareClassSampling:
    """RCS for a training dataset from its DatasetConfig ``cfg`` (``rcs_temperature`` set),
    with the class statistics cached in ``cache_dir``."""
    counts = cached_class_pixel_counts(dataset, cache_dir, num_workers)
    return RareClassSampling.from_counts(
        counts, float(cfg.rcs_temperature), int(cfg.rcs_min_pixels)
    )
