"""Seconds per training iteration of each adaptation method relative to source-only.

Every method's packaged ``uda/<method>`` config (fast model, batch 8 + 8 at 128x160) is built on
the demo's synthcity data; all trainers are built first, then timed side by side in rounds
(each round times every method for ``--steps`` steps after one warm-up step, in a rotated order),
so the ratios come from one machine state. Loader time is included, evaluation is not.

    .venv/bin/python -m benchmarks.uda_step_time --steps 10 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import write_result
from benchmarks.uda_synthcity import config_for
from segshift.engine.trainer import Trainer
from segshift.pipeline.demo import generate_demo_data

METHODS = "source_only,adaptsegnet,advent,minent,fda,dacs,selftrain,adv_cutmix"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", default="runs/uda_bench/data")
    args = parser.parse_args()
    roots = generate_demo_data(Path(args.data))
    methods = args.methods.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {}
        for method in methods:
            trainer = Trainer(config_for(method, roots, Path(tmp), 0, None, "photo"))
            trainer.setup_training()
            trainer.module.train()
            trainer.train_step()  # warm-up: loader workers start, first allocations
            trainers[method] = trainer
        times: dict[str, list[float]] = {m: [] for m in methods}
        for round_index in range(args.rounds):
            shift = round_index % len(methods)
            for method in methods[shift:] + methods[:shift]:
                trainer = trainers[method]
                start = time.perf_counter()
                for _ in range(args.steps):
                    trainer.train_step()
                times[method].append((time.perf_counter() - start) / args.steps)
    base = statistics.median(times[methods[0]])
    lines = [
        f"| method | s/iter (median of {args.rounds} rounds) | x {methods[0]} |",
        "|---|---|---|",
    ]
    for method in methods:
        value = statistics.median(times[method])
        lines.append(f"| {method} | {value:.3f} | {value / base:.2f} |")
    write_result("uda_step_time", "Adaptation methods: seconds per iteration", "\n".join(lines))


if __name__ == "__main__":
    main()
