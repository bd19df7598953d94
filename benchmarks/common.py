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
CAMVID_ENV = "SEGSHIFT_CAMVID"  # where the real CamVid is, if not beside the checkout


def camvid_root() -> Path:
    """The real CamVid (SegNet's 11-class version, the ``camvid`` dataset's layout):
    ``$SEGSHIFT_CAMVID`` if set, else ``shared/data/camvid`` beside the checkout, i.e.
    ``<checkout>/../shared/data/camvid``. Used by the CamVid benchmarks and tests."""
    given = os.environ.get(CAMVID_ENV)
    if given:
        return Path(given).expanduser()
    return Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid"


def require_camvid() -> Path:
    """:func:`camvid_root`, or exit with a message saying how to point at CamVid."""
    root = camvid_root()
    if not (root / "train").is_dir():
        raise SystemExit(f"CamVid not found at {root}: set {CAMVID_ENV} to its directory")
    return root


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


def train_record(cfg, method: str, seed: int) -> dict:
    """Train ``cfg`` to the end; the run's mIoU, per-class IoU and median seconds per step."""
    import json

    from segshift.engine.trainer import Trainer

    trainer = Trainer(cfg)
    metrics = trainer.fit()
    if "miou" not in metrics:
        metrics = trainer.evaluate()
    log = [json.loads(x) for x in (trainer.run_dir / "log.jsonl").read_text().splitlines()]
    steps = [r["sec_per_step"] for r in log if r["kind"] == "train" and "sec_per_step" in r]
    return {
        "method": method,
        "seed": seed,
        "iters": trainer.step,
        "miou": metrics["miou"],
        "iou": [float(x) for x in metrics["iou"]],
        "sec_per_step": statistics.median(steps) if steps else float("nan"),
        "final_losses": final_losses(log, trainer.step),
        "command": f"python -m benchmarks.{Path(sys.argv[0]).stem} " + " ".join(sys.argv[1:]),
    }


def final_losses(log: list[dict], iters: int) -> dict[str, float]:
    """Each logged loss term averaged over the train log lines of the run's last quarter (steps
    >= 3/4 of ``iters``): how far the run fitted its objective, less noisy than one step."""
    skip = ("kind", "step", "time", "lr", "sec_per_step")
    rows = [r for r in log if r["kind"] == "train" and r["step"] >= 0.75 * iters]
    keys = {k for r in rows for k in r if k not in skip and isinstance(r[k], (int, float))}
    return {k: statistics.mean(r[k] for r in rows if k in r) for k in sorted(keys)}


def method_table(
    runs: list[dict], baseline: str, class_names: list[str], raw: Path, skip: tuple[str, ...] = ()
) -> str:
    """Markdown: mIoU mean / std over seeds per method (best first), the gain over ``baseline``,
    seconds per step and its ratio to the baseline's; per-class IoU of the best method (not in
    ``skip``) and of the baseline; the commands the runs came from."""
    by_method: dict[str, list[dict]] = {}
    for run in runs:
        by_method.setdefault(run["method"], []).append(run)
    base = by_method.get(baseline)
    base_step = statistics.mean(r["sec_per_step"] for r in base) if base else None
    base_miou = statistics.mean(r["miou"] for r in base) if base else None
    lines = [
        f"| method | mIoU (mean) | spread (std) | seeds | vs {baseline} | s/iter | x {baseline} |",
        "|---|---|---|---|---|---|---|",
    ]
    ranked = sorted(by_method.items(), key=lambda kv: -statistics.mean(r["miou"] for r in kv[1]))
    for method, group in ranked:
        mious = [100 * r["miou"] for r in group]
        mean = statistics.mean(mious)
        std = statistics.stdev(mious) if len(mious) > 1 else float("nan")
        step = statistics.mean(r["sec_per_step"] for r in group)
        delta = f"{mean - 100 * base_miou:+.2f}" if base_miou is not None else "-"
        ratio = f"{step / base_step:.2f}" if base_step else "-"
        seeds = ",".join(str(r["seed"]) for r in group)
        spread = "-" if std != std else f"{std:.2f}"
        lines.append(
            f"| {method} | {mean:.2f} | {spread} | {seeds} | {delta} | {step:.3f} | {ratio} |"
        )
    methods = [(m, g) for m, g in ranked if m not in (*skip, baseline)]
    for label, group in [*methods[:1], *[kv for kv in ranked if kv[0] == baseline]]:
        iou = [statistics.mean(r["iou"][c] for r in group) for c in range(len(class_names))]
        lines += ["", f"Per-class IoU of {label} (mean over its seeds):", ""]
        lines += ["| " + " | ".join(class_names) + " |", "|" + "---|" * len(class_names)]
        lines.append("| " + " | ".join(f"{100 * v:.1f}" for v in iou) + " |")
    commands = sorted({r["command"] for r in runs})
    lines += ["", f"Runs accumulate over invocations (results/{raw.name}); they came from:", ""]
    lines += [f"- `.venv/bin/{c}`" for c in commands]
    return "\n".join(lines)
