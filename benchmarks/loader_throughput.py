"""Data-loader throughput against what training consumes, at the demo size.

Loader: samples/s that the training stream (folder dataset, albumentations augmentation, the
demo's workers) delivers when nothing else runs. Consumption: samples/s that a training step of
the demo (fast model, batch 8, 128 x 160 crops) uses. Target: loader >= 2 x consumption.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from benchmarks.common import synthcity_demo_config, write_result
from segshift.engine.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = synthcity_demo_config(tmp, 240, args.workers)
        trainer = Trainer(cfg)
        trainer.setup_training()
        stream = trainer.streams["labeled"]
        batch_size = stream.batch_size
        next(stream)  # start the workers
        start = time.perf_counter()
        for _ in range(args.batches):
            next(stream)
        load_rate = args.batches * batch_size / (time.perf_counter() - start)

        trainer.module.train()
        for _ in range(3):
            trainer.train_step()
        start = time.perf_counter()
        for _ in range(args.batches // 2):
            trainer.train_step()
        step_rate = (args.batches // 2) * batch_size / (time.perf_counter() - start)
    body = f"""
synthcity sim 128 x 160, batch {batch_size}, {args.workers} loader worker(s), demo augmentation
(scale 0.75-1.25, crop 128 x 160, flip).

| measure | samples / s |
|---|---|
| loader alone | {load_rate:.1f} |
| training consumption (train_step, loader included) | {step_rate:.1f} |

Ratio loader / consumption: **{load_rate / step_rate:.1f}x** (target >= 2x)
"""
    write_result("loader_throughput", "Data-loader throughput vs training consumption", body)


if __name__ == "__main__":
    main()
