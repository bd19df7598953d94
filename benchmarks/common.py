"""Shared helpers for the benchmark scripts: machine description and result files."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {device}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}"
    )


def timed(fn: Callable[[], object], repeats: int, warmup: int = 2) -> list[float]:
    """Seconds per call of ``fn`` for ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def write_result(name: str, title: str, body: str) -> Path:
    """Write ``results/<name>.md`` with the command that produced it and the machine."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = " ".join([f".venv/bin/python -m benchmarks.{Path(sys.argv[0]).stem}", *sys.argv[1:]])
    text = f"# {title}\n\nCommand: `{command}`\n\nMachine: {machine()}\n\n{body.strip()}\n"
    path = RESULTS / f"{name}.md"
    path.write_text(text)
    print(text)
    return path


def synthcity_demo_config(tmp: str, n: int, workers: int, *overrides: str):
    """The demo's source-only config on ``n`` fresh synthcity sim images under ``tmp``."""
    from segshift.config import load_config
    from segshift.data.synthcity import generate

    root = generate(Path(tmp) / "sim", style="sim", n=n, size=(128, 160), seed=0)
    return load_config(
        "demo/source_only",
        [
            f"data.streams.labeled.root={root}",
            f"data.val.root={root}",
            f"output_dir={tmp}/runs",
            f"data.num_workers={workers}",
            *overrides,
        ],
    )
