"""Collectives that methods need inside a training step (DDP through Lightning Fabric).

``gather_rows`` concatenates the rows of every process in rank order; batches may differ in size
between processes (an odd dataset, images skipped by a mask), so rows are padded to the longest
before ``all_gather`` and cut back after. Gathered rows carry no gradient. U2PL gathers the new
keys of its memory banks with it, the class-distribution contrast its image embeddings.

Example::

    rows, start = gather_rows(torch.cat([keys, classes[:, None].float()], dim=1))
    mine = rows[start : start + len(keys)]        # this process's rows
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    """The number of processes of the default group (1 outside DDP)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def gather_rows(rows: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The (N_total, K) rows of every process in rank order (detached), and the index of this
    process's first row in them. One process: ``rows`` themselves and 0."""
    if world_size() == 1:
        return rows, 0
    world, rank = dist.get_world_size(), dist.get_rank()
    count = torch.tensor([len(rows)], device=rows.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    padded = rows.detach().new_zeros(max(sizes), *rows.shape[1:])
    padded[: len(rows)] = rows.detach()
    gathered = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    joined = torch.cat([part[:size] for part, size in zip(gathered, sizes, strict=True)])
    return joined, sum(sizes[:rank])
