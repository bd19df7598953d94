"""Learning-rate schedules, as multiplicative factors of the base learning rate per iteration.

``poly`` (DeepLab, mmseg), ``constant`` and ``linear_decay`` (CycleGAN: constant, then linear
decay to zero), each after an optional linear warmup.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR

SCHEDULES = ("poly", "constant", "linear_decay")


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
        return poly * warmup_factor(step, self.warmup_iters, self.warmup_ratio)


def warmup_factor(step: int, warmup_iters: int, warmup_ratio: float) -> float:
    """Rises linearly from ``warmup_ratio`` at step 0 to 1 at ``warmup_iters`` (1 after it)."""
    if step >= warmup_iters:
        return 1.0
    return warmup_ratio + (1.0 - warmup_ratio) * step / warmup_iters


@dataclass
class LinearDecay:
    """CycleGAN's ``linear`` policy per iteration: the base rate, then linear decay to zero.

    ``factor(t) = 1 - max(0, t + 1 - C) / (T - C + 1)`` with ``C = constant_iters`` (default
    ``T // 2``: the paper's 100 + 100 epochs) and ``T = total_iters``; it is the official
    ``lambda_rule`` (``models/networks.py``, epoch_count 1) with iterations for epochs: 1 up to
    step C - 1, 1 - 1/(T - C + 1) at step C, 1/(T - C + 1) at the last step, 0 from T on.
    ``min_ratio`` and the warmup apply as in :class:`PolyWithWarmup`.
    """

    total_iters: int
    constant_iters: int | None = None
    warmup_iters: int = 0
    warmup_ratio: float = 1e-6
    min_ratio: float = 0.0

    def __call__(self, step: int) -> float:
        constant = self.total_iters // 2 if self.constant_iters is None else self.constant_iters
        decay_iters = max(self.total_iters - constant, 0)
        linear = max(0.0, 1.0 - max(0, step + 1 - constant) / (decay_iters + 1))
        factor = (1.0 - self.min_ratio) * linear + self.min_ratio
        return factor * warmup_factor(step, self.warmup_iters, self.warmup_ratio)


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
    constant_iters: int | None = None,
) -> LambdaLR:
    """A per-iteration scheduler; ``constant`` keeps the base rate (after the warmup);
    ``linear_decay`` is :class:`LinearDecay` with ``constant_iters``."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule '{name}' (known: {', '.join(SCHEDULES)})")
    min_ratio = min_lr / base_lr if base_lr > 0 else 0.0
    if name == "linear_decay":
        decay = LinearDecay(total_iters, constant_iters, warmup_iters, warmup_ratio, min_ratio)
        return LambdaLR(optimizer, lr_lambda=decay)
    factor = PolyWithWarmup(
        total_iters=total_iters,
        power=power if name == "poly" else 0.0,
        warmup_iters=warmup_iters,
        warmup_ratio=warmup_ratio,
        min_ratio=min_ratio,
    )
    return LambdaLR(optimizer, lr_lambda=factor)
