"""Data streams for iteration-based training, with a position that can be saved and restored.

Each stream walks an endless sequence of epochs; epoch ``e`` is a permutation of the dataset drawn
from ``(seed, e)``. Rank ``r`` of ``W`` takes the global positions ``r, r + W, r + 2W, ...``, and
every sample carries its own augmentation seed derived from its global position, so a resumed run
sees exactly the samples, crops and flips that an uninterrupted one would have seen, whatever the
number of loader workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

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
            f"the images of one batch differ in size ({sizes}); set the dataset's resize or "
            "crop_size, or batch_size: 1"
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

    def __iter__(self) -> Iterator[tuple[int, int]]:
        cached_epoch, order = -1, []
        local = self.start
        while True:
            position = local * self.world_size + self.rank
            epoch, offset = divmod(position, self.length)
            if epoch != cached_epoch:
                cached_epoch, order = epoch, self._order(epoch)
            yield order[offset], (self.seed * _SEED_MIX + position) % (2**31)
            local += 1


class Stream:
    """An endless iterator of batches over one dataset that counts what it has handed out."""

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
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.rank = rank
        self.world_size = world_size
        self.pin_memory = pin_memory
        self.consumed = 0  # samples this rank has taken
        self._iterator: Iterator[Any] | None = None

    def _make_iterator(self) -> Iterator[Any]:
        sampler = StreamSampler(
            len(self.dataset),  # type: ignore[arg-type]
            seed=self.seed,
            rank=self.rank,
            world_size=self.world_size,
            start=self.consumed,
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
