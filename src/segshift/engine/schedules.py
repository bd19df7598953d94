"""Learning-rate schedules, as multiplicative factors of the base learning rate per iteration."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR


@dataclass
class PolyWithWarmup:
    """``lr_t = (base - min) * (1 - t/T)^power + min``, after a linear warmup.

    During the first ``warmup_iters`` steps the factor rises linearly from ``warmup_ratio`` to the
    poly value (mmseg's convention). ``T = total_iters``; the factor is relative to ``base_lr``.
    """

    total_iters: int
    power: float = 0.9
    warmup_iters: int = 0
    warmup_ratio: float = 1e-6
    min_ratio: float = 0.0

    def __call__(self, step: int) -> float:
        progress = min(step, self.total_iters) / max(self.total_iters, 1)
        poly = (1.0 - self.min_ratio) * (1.0 - progress) ** self.power + self.min_ratio
        if step < self.warmup_iters:
            alpha = step / self.warmup_iters
            return poly * (self.warmup_ratio + (1.0 - self.warmup_ratio) * alpha)
        return poly


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    name: str,
    total_iters: int,
    power: float,
    warmup_iters: int,
    warmup_ratio: float,
    min_lr: float,
    base_lr: float,
) -> LambdaLR:
    """A per-iteration scheduler; ``constant`` keeps the base rate (after the warmup)."""
    if name not in ("poly", "constant"):
        raise ValueError(f"unknown schedule '{name}' (known: poly, constant)")
    factor = PolyWithWarmup(
        total_iters=total_iters,
        power=power if name == "poly" else 0.0,
        warmup_iters=warmup_iters,
        warmup_ratio=warmup_ratio,
        min_ratio=min_lr / base_lr if base_lr > 0 else 0.0,
    )
    return LambdaLR(optimizer, lr_lambda=factor)
