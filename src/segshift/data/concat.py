"""Concatenated datasets: one stream read from several datasets with one label space.

Training on GTA5 together with its CycleGAN translation ("cyclegta", written by ``segshift
translate apply`` in GTA5's own layout) means reading two roots as one dataset. A dataset
node's ``concat`` lists the further parts; each entry's keys replace the node's own (an
entry's ``options`` replaces the node's ``options`` whole), and the node's augmentation,
batching and rare-class sampling keys apply to every part. Example::

    data:
      streams:
        source:
          name: gta5
          root: /data/gta5
          crop_size: [512, 512]
          concat:
            - {root: /data/cyclegta}            # the same dataset type and split, translated
            - {name: folder, root: /data/sim, options: {remap: {classes: cityscapes}}}

    >>> dataset = build_dataset(cfg.data.streams.source, train=True)   # a ConcatSegDataset
    >>> dataset.parts_summary()
    'gta5 240 + gta5 at /data/cyclegta 240 + folder 50'

Sample ``(i, seed)`` of the concatenation is part ``k``'s sample ``(i - start_k, seed)``: the
augmentation of a position and seed, and so exact resume, is that of the part read alone.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Sequence
from itertools import accumulate
from typing import Any

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

from segshift.config import DatasetConfig, merge_into_schema
from segshift.data.base import Key, SegDataset
from segshift.errors import ConfigError


def _plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def part_configs(cfg: Any) -> list[Any]:
    """The dataset nodes that ``cfg`` reads: ``[cfg]`` without ``concat``; else ``cfg`` itself
    (``concat`` cleared), then ``cfg`` with each entry's keys replacing its own, validated as
    DatasetConfigs (an entry that sets augmentation keys is a ConfigError)."""
    entries = _plain(getattr(cfg, "concat", None))
    if not entries:
        return [cfg]
    if isinstance(cfg, DictConfig):
        own = _plain(cfg)
    else:
        names = [f.name for f in dataclasses.fields(DatasetConfig) if hasattr(cfg, f.name)]
        own = {name: _plain(getattr(cfg, name)) for name in names}
    origin = f"dataset '{own.get('name')}' ({own.get('root')})"
    merge_into_schema(DatasetConfig(), own, origin=origin)  # checks the entries' keys
    base = {**own, "concat": None}
    return [merge_into_schema(DatasetConfig(), base, origin=origin)] + [
        # key by key: an entry's options replace the node's whole (another dataset type
        # understands other options)
        merge_into_schema(DatasetConfig(), {**base, **entry}, origin=f"{origin} concat[{i}]")
        for i, entry in enumerate(entries)
    ]


def _describe(part: SegDataset) -> str:
    return f"{part.dataset_name} at {part.root} (split {part.split})"


def check_parts(parts: Sequence[SegDataset]) -> None:
    """ConfigError unless every part has the first's class names and ``labeled``; an
    image-only part (unlabeled, without classes) goes with any classes."""
    first = parts[0]
    for part in parts[1:]:
        image_only = not first.label_space.num_classes or not part.label_space.num_classes
        if not first.labeled and not part.labeled and image_only:
            continue  # images only: classes are not read
        if part.labeled != first.labeled:
            raise ConfigError(
                f"concatenated datasets must all be labeled or all unlabeled: "
                f"{_describe(first)} is {'un' * (not first.labeled)}labeled, "
                f"{_describe(part)} is {'un' * (not part.labeled)}labeled"
            )
        a, b = first.label_space, part.label_space
        if list(a.class_names) != list(b.class_names):
            raise ConfigError(
                f"concatenated datasets need one label space: {_describe(first)} has "
                f"'{a.name}' ({a.num_classes} classes: {', '.join(a.class_names)}) but "
                f"{_describe(part)} has '{b.name}' ({b.num_classes} classes: "
                f"{', '.join(b.class_names)}); "
                + (
                    "map a part onto the first's classes with options.remap (docs/DATA.md)"
                    if first.labeled
                    else "unlabeled parts need no classes: leave them out of a part, or give it "
                    "the first's with options.classes_from"
                )
            )


class ConcatSegDataset(SegDataset):
    """Several datasets read as one: sample ``i`` is sample ``i - start`` of the part holding it.

    ``files`` are the parts' files in order; ``label_space``, ``labeled``, ``root``, ``split``,
    ``domain`` and ``transform`` are the first part's (each sample keeps its own part's
    ``domain``); the ``index`` of a sample is its position in the concatenation. The base
    class's constructor is not run: each part has already found and checked its own files.

    Args:
        parts: two or more datasets with the same class names, all labeled or all unlabeled.
    """

    def __init__(self, parts: Sequence[SegDataset]) -> None:
        if len(parts) < 2:
            raise ValueError("a concatenation needs at least two datasets")
        check_parts(parts)
        first = parts[0]
        self.parts = list(parts)
        self.dataset_name = " + ".join(part.dataset_name for part in parts)
        self.root, self.split, self.domain = first.root, first.split, first.domain
        # an image-only first part has no classes: the first part that has some names them
        spaces = [part.label_space for part in parts if part.label_space.num_classes]
        self.labeled, self.label_space = first.labeled, (spaces or [first.label_space])[0]
        self.transform, self.recrop_min_pixels = first.transform, first.recrop_min_pixels
        self.files = [sample for part in parts for sample in part.files]
        self.starts = [0, *accumulate(len(part) for part in parts[:-1])]

    def locate(self, index: int) -> tuple[SegDataset, int]:
        """The part holding sample ``index`` and the sample's index in it."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index %= len(self)
        k = bisect.bisect_right(self.starts, index) - 1
        return self.parts[k], index - self.starts[k]

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        part, local = self.locate(index)
        return part.load(local)

    def load_label(self, index: int) -> np.ndarray:
        part, local = self.locate(index)
        return part.load_label(local)

    def __getitem__(self, key: Key) -> dict[str, Any]:
        index, rest = (int(key[0]), key[1:]) if isinstance(key, tuple) else (int(key), ())
        part, local = self.locate(index)
        sample = part[(local, *rest)] if rest else part[local]
        sample["index"] = index % len(self)
        return sample

    def parts_summary(self) -> str:
        """``"gta5 240 + gta5 at /data/cyclegta 240"``: each part's dataset and sample count,
        with its root where an earlier part has the same dataset name."""
        shown = []
        for k, part in enumerate(self.parts):
            repeated = any(p.dataset_name == part.dataset_name for p in self.parts[:k])
            where = f" at {part.root}" if repeated else ""
            shown.append(f"{part.dataset_name}{where} {len(part)}")
        return " + ".join(shown)

    def __repr__(self) -> str:
        kind = "labeled" if self.labeled else "unlabeled"
        return (
            f"ConcatSegDataset({self.parts_summary()}: {len(self)} {kind} samples, "
            f"{self.label_space.num_classes} classes)"
        )
