"""Trainer step time over a bare PyTorch loop with the same model, batch, optimizer and data.

Both loops draw batches from the same synthcity folder dataset through a DataLoader with the same
workers, run the ``fast`` model forward/backward with cross-entropy, step AdamW and a poly
schedule. The trainer adds its Fabric wrapping, the method call, the finite-loss check, the
scheduler and the step bookkeeping. Target: ratio <= 1.05.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, RandomSampler

from benchmarks.common import median, synthcity_demo_config, write_result
from segshift.data import build_dataset
from segshift.engine.schedules import PolyWithWarmup
from segshift.engine.trainer import Trainer
from segshift.methods.common.optim import build_optimizer, param_groups
from segshift.models import build_model


def bare_loop_times(cfg, steps: int, warmup: int) -> list[float]:
    torch.manual_seed(0)
    dataset = build_dataset(cfg.data.streams.labeled, train=True)
    loader = DataLoader(
        dataset,
        batch_size=cfg.data.streams.labeled.batch_size,
        sampler=RandomSampler(dataset, replacement=True, num_samples=10**9),
        num_workers=cfg.data.num_workers,
        drop_last=True,
    )
    model = build_model(cfg.model, 11)
    model.train()
    optimizer = build_optimizer(cfg.optim, param_groups(model, cfg.optim.lr, 1.0))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, PolyWithWarmup(cfg.train.iters))
    times = []
    iterator = iter(loader)
    for _ in range(warmup + steps):
        start = time.perf_counter()
        batch = next(iterator)
        logits = model(batch["image"])["out"]
        loss = F.cross_entropy(logits, batch["label"], ignore_index=255)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        times.append(time.perf_counter() - start)
    return times[warmup:]


def trainer_times(cfg, steps: int, warmup: int) -> list[float]:
    trainer = Trainer(cfg)
    trainer.setup_training()
    trainer.module.train()
    times = []
    for _ in range(warmup + steps):
        start = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - start)
    return times[warmup:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = synthcity_demo_config(tmp, 64, args.workers, "train.iters=100000")
        bare, ours = [], []
        for _ in range(args.rounds):  # alternate to spread machine noise over both
            bare += bare_loop_times(cfg, args.steps, args.warmup)
            ours += trainer_times(cfg, args.steps, args.warmup)
    b, t = median(bare), median(ours)
    body = f"""
fast model (FPN, resnet18), batch 8 x 3 x 128 x 160 from synthcity sim, AdamW, poly schedule,
{args.workers} loader worker(s); {args.rounds} alternating rounds of {args.steps} timed steps
after {args.warmup} warm-up steps; median seconds per step.

| loop | s / step |
|---|---|
| bare PyTorch | {b:.4f} |
| segshift Trainer.train_step | {t:.4f} |

Ratio trainer / bare: **{t / b:.3f}** (target <= 1.05)
"""
    write_result("trainer_overhead", "Trainer step time vs a bare PyTorch loop", body)


if __name__ == "__main__":
    main()
