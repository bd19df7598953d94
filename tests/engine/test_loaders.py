import itertools

import torch
from torch.utils.data import Dataset

from segshift.engine.loaders import Stream, StreamSampler, shard_indices


class Echo(Dataset):
    """Returns the key it was given, so tests see exactly what the sampler produced."""

    def __len__(self) -> int:
        return 7

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, seed = key
        return {"index": index, "seed": seed}


def take(sampler: StreamSampler, n: int) -> list[tuple[int, int]]:
    return list(itertools.islice(iter(sampler), n))


def test_each_epoch_is_a_permutation() -> None:
    items = take(StreamSampler(7, seed=3), 21)
    for epoch in range(3):
        assert sorted(i for i, _ in items[7 * epoch : 7 * epoch + 7]) == list(range(7))
    assert [i for i, _ in items[:7]] != [i for i, _ in items[7:14]]  # reshuffled per epoch
    assert len({s for _, s in items}) == 21  # every sample gets its own augmentation seed


def test_start_continues_the_same_sequence() -> None:
    full = take(StreamSampler(7, seed=1), 30)
    assert take(StreamSampler(7, seed=1, start=12), 18) == full[12:]


def test_ranks_interleave_the_global_sequence() -> None:
    full = take(StreamSampler(7, seed=5), 20)
    r0 = take(StreamSampler(7, seed=5, rank=0, world_size=2), 10)
    r1 = take(StreamSampler(7, seed=5, rank=1, world_size=2), 10)
    assert r0 == full[0::2] and r1 == full[1::2]


def test_stream_resume_gives_identical_batches() -> None:
    a = Stream(Echo(), batch_size=3, seed=0)
    batches = [next(a) for _ in range(5)]
    b = Stream(Echo(), batch_size=3, seed=0)
    for _ in range(2):
        next(b)
    state = b.state_dict()
    c = Stream(Echo(), batch_size=3, seed=0)
    c.load_state_dict(state)
    for expected in batches[2:]:
        got = next(c)
        assert torch.equal(got["index"], expected["index"])
        assert torch.equal(got["seed"], expected["seed"])


def test_stream_with_workers_matches_main_process() -> None:
    a = Stream(Echo(), batch_size=2, seed=0)
    b = Stream(Echo(), batch_size=2, seed=0, num_workers=2)
    for _ in range(4):
        assert torch.equal(next(a)["index"], next(b)["index"])


def test_shards_cover_the_set_once() -> None:
    shards = [shard_indices(10, r, 3) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(10))
