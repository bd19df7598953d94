"""Data streams for iteration-based training, with a position that can be saved and restored.

Each stream walks an endless sequence of epochs; epoch ``e`` is a permutation of the dataset drawn
from ``(seed, e)``. Rank ``r`` of ``W`` takes the global positions ``r, r + W, r + 2W, ...``, and
every sample carries its own augmentation seed derived from its global position, so a resumed run
sees exactly the samples, crops and flips that an uninterrupted one would have seen, whatever the
number of loader workers. With rare-class sampling (``segshift.data.samplers``) position ``p``
draws its class and image from a generator seeded by ``(seed, p)`` alone instead, with the same
guarantees.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler, Subset, default_collate

from segshift.data.samplers import RareClassSampling
from segshift.engine.threads import limit_worker_threads
from segshift.errors import DataError, SegshiftError

_SEED_MIX = 0x9E3779B1


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """``default_collate``, with a clear error when the samples of a batch differ in size."""
    try:
        return default_collate(samples)
    except RuntimeError as err:
        if "equal size" not in str(err):
            raise
        sizes = ", ".join(f"{s['name']}: {tuple(s['image'].shape[-2:])}" for s in samples)
        raise DataError(
            f"the images of one batch differ in size ({sizes}); set the dataset's resize "
            "(validation does not crop; training streams may also use crop_size), or batch_size: 1"
        ) from None


class StreamSampler(Sampler[tuple[int, int]]):
    """Endless ``(index, augmentation seed)`` pairs for one rank, starting at ``start``."""

    def __init__(
        self,
        length: int,
        *,
        seed: int,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
    ) -> None:
        if length <= 0:
            raise ValueError("a stream needs a non-empty dataset")
        self.length = length
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.start = start

    def _order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.length))
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.length, generator=generator).tolist()

    def _positions(self) -> Iterator[int]:
        """The global positions of this rank from ``start`` on."""
        return (local * self.world_size + self.rank for local in itertools.count(self.start))

    def augmentation_seed(self, position: int) -> int:
        """The seed of the augmentation of the sample at global ``position``."""
        return (self.seed * _SEED_MIX + position) % (2**31)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        cached_epoch, order = -1, []
        for position in self._positions():
            epoch, offset = divmod(position, self.length)
            if epoch != cached_epoch:
                cached_epoch, order = epoch, self._order(epoch)
            yield order[offset], self.augmentation_seed(position)


class RareClassSampler(StreamSampler):
    """Endless ``(index, augmentation seed, class)`` triples drawn by rare-class sampling.

    The class and image of global position ``p`` come from a generator seeded by ``(seed, p)``,
    the augmentation seed as in :class:`StreamSampler`; the dataset re-crops towards the class.
    """

    def __init__(
        self,
        rare_classes: RareClassSampling,
        length: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
    ) -> None:
        super().__init__(length, seed=seed, rank=rank, world_size=world_size, start=start)
        self.rare_classes = rare_classes

    def __iter__(self) -> Iterator[tuple[int, int, int]]:  # type: ignore[override]
        for position in self._positions():
            rng = np.random.default_rng((self.seed % 2**64, position))
            index, cls = self.rare_classes.draw(rng)
            yield index, self.augmentation_seed(position), cls


class Stream:
    """An endless iterator of batches over one dataset that counts what it has handed out.

    ``rare_classes``: draw samples by rare-class sampling instead of epoch permutations.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        seed: int,
        num_workers: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pin_memory: bool = False,
        rare_classes: RareClassSampling | None = None,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.rank = rank
        self.world_size = world_size
        self.pin_memory = pin_memory
        self.rare_classes = rare_classes
        self.consumed = 0  # samples this rank has taken
        self._iterator: Iterator[Any] | None = None

    def _make_iterator(self) -> Iterator[Any]:
        where = dict(
            seed=self.seed, rank=self.rank, world_size=self.world_size, start=self.consumed
        )
        length = len(self.dataset)  # type: ignore[arg-type]
        sampler: StreamSampler = (
            StreamSampler(length, **where)
            if self.rare_classes is None
            else RareClassSampler(self.rare_classes, length, **where)
        )
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            drop_last=True,
            collate_fn=collate,
            persistent_workers=False,
            prefetch_factor=4 if self.num_workers > 0 else None,
            worker_init_fn=limit_worker_threads,
            # its own generator: creating an iterator must not draw from the global RNG, or a
            # resumed run (which creates it later) would diverge from an uninterrupted one
            generator=torch.Generator().manual_seed(self.seed),
        )
        return iter(loader)

    def __next__(self) -> dict[str, Any]:
        if self._iterator is None:
            self._iterator = self._make_iterator()
        try:
            batch = next(self._iterator)
        except SegshiftError as err:
            raise type(err)(worker_message(str(err))) from None
        self.consumed += self.batch_size
        return batch

    def __iter__(self) -> Stream:
        return self

    def state_dict(self) -> dict[str, int]:
        return {"consumed": self.consumed, "seed": self.seed, "world_size": self.world_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.consumed = int(state["consumed"])
        self._iterator = None


def worker_message(text: str) -> str:
    """The original message of an error re-raised from a loader worker, without the traceback.

    PyTorch re-raises a worker's exception as "Caught X in DataLoader worker ... Original
    Traceback ... module.X: message"; users need the message (it names the file), not the frames.
    """
    if not text.startswith("Caught "):
        return text
    last = text.rstrip().splitlines()[-1]
    return last.split(": ", 1)[1] if ": " in last else last


def shard_indices(length: int, rank: int, world_size: int) -> list[int]:
    """Indices of an evaluation set for one rank, without padding, so per-rank sums add up."""
    return list(range(rank, length, world_size))


def stored_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file, from its header; a DataError naming it otherwise."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise DataError(f"{path}: cannot read image ({error})") from error


def size_grouped_batches(sizes: Sequence[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Batches of positions ``0..len(sizes)-1`` whose samples share a size.

    Positions keep their order within a size; sizes come in the order they first appear. A
    network sees each image exactly as with ``batch_size`` 1 (padding to a common size would
    change what a whole-image forward pass sees near the border), so a mixed-size evaluation
    set scores the same at any batch size.

    Example::

        >>> size_grouped_batches([(2, 3), (4, 4), (2, 3), (2, 3)], 2)
        [[0, 2], [3], [1]]
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for position, size in enumerate(sizes):
        groups.setdefault(tuple(size), []).append(position)
    return [
        group[start : start + batch_size]
        for group in groups.values()
        for start in range(0, len(group), batch_size)
    ]


def evaluation_loader(
    dataset: Any, indices: Sequence[int], batch_size: int, num_workers: int = 0
) -> DataLoader:
    """A loader over ``dataset[indices]`` (a :class:`SegDataset`) in batches of one image size.

    Evaluation keeps labels at full resolution, so images of different stored sizes cannot share
    a batch even when the data resizes them; with ``batch_size`` > 1 the samples are grouped by
    the size in their image file's header (:func:`size_grouped_batches`).
    """
    subset = Subset(dataset, list(indices))
    if batch_size > 1:
        sizes = [stored_size(dataset.files[i].image) for i in indices]
        batches = size_grouped_batches(sizes, batch_size)
    else:
        batches = [[position] for position in range(len(indices))]
    return DataLoader(
        subset,
        batch_sampler=batches,
        num_workers=num_workers,
        worker_init_fn=limit_worker_threads,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(0),  # leaves the global RNG alone (resume)
    )
