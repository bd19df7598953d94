"""Exponential-moving-average teachers (Mean Teacher, DACS, DAFormer, U2PL, ReCo).

The teacher is a frozen copy of the student, updated after each optimizer step as
``theta_T <- a_t * theta_T + (1 - a_t) * theta_S`` with the warm-up ``a_t = min(1 - 1/(t+1), a)``
(t = 0-based step; with a = 0.999: t=1 -> 0.5, t=9 -> 0.9, t>=999 -> 0.999).

segshift's default averages the whole state: parameters *and* floating-point buffers (BatchNorm
running statistics), so an eval-mode teacher has statistics that match its weights; integer
buffers (``num_batches_tracked``) are copied. ``parameters_only=True`` reproduces DACS/DAFormer,
whose buffers are never averaged; ``warmup=False`` gives TorchSemiSeg's constant decay.

Example::

    teacher = make_teacher(student)
    ...optimizer.step()...
    ema_update(teacher, student, alpha=0.999, step=step)
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_teacher(student: nn.Module) -> nn.Module:
    """A deep copy of ``student`` with gradients off (it is trained by ``ema_update`` only)."""
    teacher = copy.deepcopy(student)
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


def ema_alpha(alpha: float, step: int, warmup: bool = True) -> float:
    """The decay used at ``step``: ``min(1 - 1/(step+1), alpha)`` with warm-up, else ``alpha``."""
    return min(1.0 - 1.0 / (step + 1), alpha) if warmup else alpha


@torch.no_grad()
def ema_update(
    teacher: nn.Module,
    student: nn.Module,
    alpha: float,
    step: int,
    *,
    warmup: bool = True,
    parameters_only: bool = False,
) -> float:
    """Move ``teacher`` towards ``student``; returns the decay that was used."""
    decay = ema_alpha(alpha, step, warmup)
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(decay).add_(s.detach(), alpha=1.0 - decay)
    if not parameters_only:
        for t, s in zip(teacher.buffers(), student.buffers(), strict=True):
            if t.is_floating_point():
                t.mul_(decay).add_(s.detach(), alpha=1.0 - decay)
            else:
                t.copy_(s)
    return decay
