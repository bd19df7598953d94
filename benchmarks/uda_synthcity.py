"""Adaptation methods on synthcity sim -> photo: mIoU on photo val and seconds per iteration.

Every method trains from its packaged config ``uda/<method>`` (the fast model, 400 iterations,
240 labeled sim + 240 unlabeled photo images at 128x160, as the demo); ``source_only`` and the
photo ``oracle`` use the same budget. Runs are recorded one by one in
``results/uda_synthcity.json`` as they finish and skipped when already there, so the benchmark
can be stopped and continued (in another session too); the Markdown table is rewritten after
every run. Timings are ratios to source-only measured in the same invocation's machine state,
from the logged seconds per step (evaluation excluded).

    .venv/bin/python -m benchmarks.uda_synthcity --methods source_only,oracle,dacs --seeds 0
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from benchmarks.common import RESULTS, write_result
from segshift.config import load_config
from segshift.data.label_space import get_label_space
from segshift.engine.trainer import Trainer
from segshift.pipeline.demo import generate_demo_data

CAMVID = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid"
# synthcity -> CamVid in miniature: CamVid's 360x480 train images (labels unused) and val images
# resized to 144x192 (its aspect ratio; val labels stay full size), target crops of 128x160.
CAMVID_TARGET = [
    "data.streams.target.name=camvid",
    f"data.streams.target.root={CAMVID}",
    "data.streams.target.split=train",
    "data.streams.target.resize=[144,192]",
    "data.val.name=camvid",
    f"data.val.root={CAMVID}",
    "data.val.split=val",
    "data.val.resize=[144,192]",
    "data.val.batch_size=8",
]


def config_for(
    method: str,
    roots: dict[str, Path],
    out: Path,
    seed: int,
    iters: int | None,
    target: str,
    extra: list[str] = (),
    label: str = "",
):
    tag = f"{method}_{label}" if label else method
    name = f"{tag}_s{seed}" if target == "photo" else f"{tag}_{target}_s{seed}"
    common = [*extra, f"output_dir={out}", f"seed={seed}", f"name={name}", "train.resume=false"]
    common += ["train.progress=plain", f"data.val.root={roots['photo_val']}"]
    if iters is not None:
        common += [f"train.iters={iters}", f"train.eval_every={iters}"]
    if method == "oracle":
        if target != "photo":
            raise SystemExit("the oracle is only defined for synthcity photo")
        labeled = f"data.streams.labeled.root={roots['photo_train']}"
        return load_config("demo/oracle", [labeled, *common])
    streams = [
        f"data.streams.source.root={roots['sim_train']}",
        f"data.streams.target.root={roots['photo_train']}",
    ]
    overrides = streams + common + (CAMVID_TARGET if target == "camvid" else [])
    return load_config(f"uda/{method}", overrides)


def run_one(
    method: str,
    roots: dict[str, Path],
    out: Path,
    seed: int,
    iters: int | None,
    target: str,
    extra: list[str] = (),
    label: str = "",
) -> dict:
    trainer = Trainer(config_for(method, roots, out, seed, iters, target, extra, label))
    metrics = trainer.fit()
    log = [json.loads(x) for x in (trainer.run_dir / "log.jsonl").read_text().splitlines()]
    steps = [r["sec_per_step"] for r in log if r["kind"] == "train" and "sec_per_step" in r]
    return {
        "method": f"{method} [{label}]" if label else method,
        "seed": seed,
        "iters": trainer.step,
        "miou": metrics["miou"],
        "iou": [float(x) for x in metrics["iou"]],
        "sec_per_step": statistics.median(steps),
        "command": "python -m benchmarks.uda_synthcity " + " ".join(sys.argv[1:]),
    }


def table(runs: list[dict], raw: Path) -> str:
    names = get_label_space("camvid").class_names
    by_method: dict[str, list[dict]] = {}
    for run in runs:
        by_method.setdefault(run["method"], []).append(run)
    base = by_method.get("source_only")
    base_step = statistics.mean(r["sec_per_step"] for r in base) if base else None
    base_miou = statistics.mean(r["miou"] for r in base) if base else None
    lines = [
        "`source_only` and `oracle` are the `supervised` method (on sim, on labeled photo).",
        "",
        "| method | mIoU (mean) | spread (std) | seeds | vs source-only | s/iter | x source-only |",
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
    methods = [(m, g) for m, g in ranked if m not in ("oracle", "source_only")]
    for label, group in [*methods[:1], *[kv for kv in ranked if kv[0] == "source_only"]]:
        iou = [statistics.mean(r["iou"][c] for r in group) for c in range(len(names))]
        lines += ["", f"Per-class IoU of {label} (mean over its seeds):", ""]
        lines += ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
        lines.append("| " + " | ".join(f"{100 * v:.1f}" for v in iou) + " |")
    commands = sorted({r["command"] for r in runs})
    lines += [
        "",
        f"Runs accumulate over invocations (results/{raw.name}); they came from:",
        "",
    ]
    lines += [f"- `.venv/bin/{c}`" for c in commands]
    return "\n".join(lines)


def reference(args: argparse.Namespace, raw: Path, runs: list[dict]) -> list[dict]:
    """For an ablation table: the main table's runs of the ablated methods and source-only."""
    main_raw = raw.with_name(raw.name.replace("_ablations", ""))
    if not args.label or not main_raw.is_file():
        return []
    wanted = {"source_only", *args.methods.split(",")}
    have = {r["method"] for r in runs}
    return [r for r in json.loads(main_raw.read_text()) if r["method"] in wanted - have]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", required=True, help="comma-separated: source_only,oracle,...")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--iters", type=int, default=None, help="override the configs' budget")
    parser.add_argument("--target", choices=["photo", "camvid"], default="photo")
    parser.add_argument("--data", default="runs/uda_bench/data")
    parser.add_argument("--out", default="runs/uda_bench")
    parser.add_argument(
        "--set", action="append", default=[], help="ablation: a config override (repeatable)"
    )
    parser.add_argument("--label", default="", help="ablation name, required with --set")
    args = parser.parse_args()
    if args.set and not args.label:
        parser.error("--set needs --label (the ablation's name in the table)")
    roots = generate_demo_data(Path(args.data))
    name = "uda_synthcity" if args.target == "photo" else "uda_synthcity_camvid"
    if args.label:  # ablations go to their own table, beside source_only for reference
        name += "_ablations"
    raw = RESULTS / f"{name}.json"
    title = (
        f"synthcity sim -> {'photo' if args.target == 'photo' else 'CamVid'}: adaptation methods"
    )
    runs = json.loads(raw.read_text()) if raw.is_file() else []
    for seed in map(int, args.seeds.split(",")):
        for method in args.methods.split(","):
            key = f"{method} [{args.label}]" if args.label else method
            if any(r["method"] == key and r["seed"] == seed for r in runs):
                continue
            runs.append(
                run_one(
                    method,
                    roots,
                    Path(args.out),
                    seed,
                    args.iters,
                    args.target,
                    args.set,
                    args.label,
                )
            )
            raw.write_text(json.dumps(runs, indent=1))
            write_result(name, title, table(runs + reference(args, raw, runs), raw))


if __name__ == "__main__":
    main()
