"""The pretrained benchmark tier: step time against `fast`, and the labeled-only data curve.

``timing``: seconds per training step of candidate tier models against today's ``fast`` model
(FPN over ResNet-18 from scratch), all built first and then timed side by side in rotated rounds
in one process on CamVid (``semi/labeled_only``, batch 8), so the ratios come from one machine
state. ``curve``: ``semi/labeled_only`` with 23 / 46 / 92 / 184 / 367 labeled CamVid train images
under one named setting (a list of config overrides, ``SETTINGS``), tested on CamVid val: the
budget of the tier is the setting at which mIoU rises with the number of labels beyond the seed
spread. Runs accumulate in ``results/pretrained_curve_<setting>.json`` (a run already there is
skipped), so a curve can span sessions.

    .venv/bin/python -m benchmarks.pretrained_tier timing --steps 5 --rounds 3
    .venv/bin/python -m benchmarks.pretrained_tier curve --setting lite0_240 --labeled 23,367
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS, train_record, write_result
from benchmarks.uda_synthcity import CAMVID
from segshift.config import load_config
from segshift.data.label_space import get_label_space

LITE0 = ["model.encoder=tu-tf_efficientnet_lite0", "model.encoder_weights=imagenet"]
# Encoder at lr, decoder and head at 10x (the usual fine-tuning split for pretrained backbones).
LOW_ENCODER_LR = ["optim.lr=0.0002", "optim.head_lr_mult=10"]


def _size(height: int, width: int, crop: tuple[int, int] | None = None) -> list[str]:
    crop_h, crop_w = crop or (height, width)
    keys = ("data.streams.labeled", "data.val")
    return [
        *(f"{k}.resize=[{height},{width}]" for k in keys),
        f"data.streams.labeled.crop_size=[{crop_h},{crop_w}]",
    ]


# name -> (description, overrides). The semi/base.yaml defaults: 144x192 images, 128x160 crops,
# AdamW 2e-3, 400 iterations, batch 8.
SETTINGS: dict[str, tuple[str, list[str]]] = {
    "scratch_144": ("fast (ResNet-18 FPN) from scratch, 144x192, 400 it", []),
    "lite0_144": ("lite0 FPN from ImageNet, 144x192, 400 it, AdamW 2e-3", LITE0),
    "lite0_144_lowlr": (
        "lite0 FPN from ImageNet, 144x192, 400 it, encoder 2e-4 / head 2e-3",
        [*LITE0, *LOW_ENCODER_LR],
    ),
    "lite0_240_lowlr": (
        "lite0 FPN from ImageNet, 240x320 (224x288 crops), 1000 it, encoder 2e-4 / head 2e-3",
        [*LITE0, *LOW_ENCODER_LR, *_size(240, 320, (224, 288)), "train.iters=1000"],
    ),
    "lite0_144_2k": (
        "lite0 FPN from ImageNet, 144x192, 2000 it, AdamW 2e-3",
        [*LITE0, "train.iters=2000"],
    ),
    "lite0_192_1500": (
        "lite0 FPN from ImageNet, 192x256 (176x224 crops), 1500 it, AdamW 2e-3",
        [*LITE0, *_size(192, 256, (176, 224)), "train.iters=1500"],
    ),
    "lite0_360_lowlr": (
        "lite0 FPN from ImageNet, 360x480 (full CamVid), 320x416 crops, 600 it, encoder 2e-4",
        [*LITE0, *LOW_ENCODER_LR, *_size(360, 480, (320, 416)), "train.iters=600"],
    ),
}


def config_for(setting: str, n_labeled: int | None, seed: int, out: Path, extra: list[str] = ()):
    overrides = [
        f"data.streams.labeled.root={CAMVID}",
        f"data.streams.unlabeled.root={CAMVID}",  # in semi/base.yaml; unused by labeled_only
        f"data.val.root={CAMVID}",
        f"output_dir={out}",
        f"seed={seed}",
        f"name={setting}_n{n_labeled or 367}_s{seed}",
        "train.resume=false",
        "train.progress=plain",
        f"data.streams.labeled.n_labeled={'null' if n_labeled in (None, 367) else n_labeled}",
        *SETTINGS[setting][1],
        *extra,
    ]
    cfg = load_config("semi/labeled_only", overrides)
    cfg.train.eval_every = cfg.train.iters
    return cfg


def timing(args: argparse.Namespace) -> None:
    settings = args.settings.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        from segshift.engine.trainer import Trainer

        trainers = {}
        for setting in settings:
            trainer = Trainer(config_for(setting, 46, 0, Path(tmp)))
            trainer.setup_training()
            trainer.module.train()
            trainer.train_step()  # warm-up
            trainers[setting] = trainer
        times: dict[str, list[float]] = {s: [] for s in settings}
        for round_index in range(args.rounds):
            shift = round_index % len(settings)
            for setting in settings[shift:] + settings[:shift]:
                start = time.perf_counter()
                for _ in range(args.steps):
                    trainers[setting].train_step()
                times[setting].append((time.perf_counter() - start) / args.steps)
    base = statistics.median(times[settings[0]])
    lines = [
        f"| setting | what | s/iter (median of {args.rounds} rounds of {args.steps}) "
        f"| x {settings[0]} | iters | minutes per run at this speed |",
        "|---|---|---|---|---|---|",
    ]
    for setting in settings:
        value = statistics.median(times[setting])
        iters = trainers[setting].cfg.train.iters
        lines.append(
            f"| {setting} | {SETTINGS[setting][0]} | {value:.3f} | {value / base:.2f} | {iters} "
            f"| {value * iters / 60:.1f} |"
        )
    write_result("pretrained_tier_timing", "Pretrained tier: seconds per step", "\n".join(lines))


def curve_table(runs: list[dict], names: list[str]) -> str:
    thin = [names.index(c) for c in ("pole", "signsymbol", "pedestrian", "bicyclist") if c in names]
    by_n: dict[int, list[dict]] = {}
    for run in runs:
        by_n.setdefault(run["n_labeled"], []).append(run)
    lines = [
        "| labeled images | mIoU (mean) | spread (std) | seeds | s/iter | "
        + " | ".join(names[c] for c in thin)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(thin),
    ]
    for n in sorted(by_n):
        group = by_n[n]
        mious = [100 * r["miou"] for r in group]
        std = f"{statistics.stdev(mious):.2f}" if len(mious) > 1 else "-"
        thin_iou = [statistics.mean(100 * r["iou"][c] for r in group) for c in thin]
        lines.append(
            f"| {n} | {statistics.mean(mious):.2f} | {std} | "
            + ",".join(str(r["seed"]) for r in group)
            + f" | {statistics.mean(r['sec_per_step'] for r in group):.3f} | "
            + " | ".join(f"{v:.1f}" for v in thin_iou)
            + " |"
        )
    commands = sorted({r["command"] for r in runs})
    lines += ["", "Runs came from:", "", *[f"- `.venv/bin/{c}`" for c in commands]]
    return "\n".join(lines)


def curve(args: argparse.Namespace) -> None:
    if not CAMVID.is_dir():
        raise SystemExit(f"CamVid not found at {CAMVID}")
    name = f"pretrained_curve_{args.setting}"
    raw = RESULTS / f"{name}.json"
    runs = json.loads(raw.read_text()) if raw.is_file() else []
    names = list(get_label_space("camvid").class_names)
    title = f"Labeled-only data curve on CamVid: {args.setting}"
    note = (
        f"Setting `{args.setting}`: {SETTINGS[args.setting][0]}. `semi/labeled_only` with the "
        f"first n of a fixed random order of CamVid's 367 train images labeled (no unlabeled "
        f"stream), tested on CamVid val; overrides: `{' '.join(SETTINGS[args.setting][1])}`. "
        "Thin-class columns: IoU of pole, sign symbol, pedestrian, bicyclist (mean over seeds)."
        "\n\n"
    )
    for seed in map(int, args.seeds.split(",")):
        for n in map(int, args.labeled.split(",")):
            if any(r["n_labeled"] == n and r["seed"] == seed for r in runs):
                continue
            cfg = config_for(args.setting, n, seed, Path(args.out))
            record = train_record(cfg, f"labeled_only_n{n}", seed)
            record["n_labeled"] = n
            record["setting"] = args.setting
            runs.append(record)
            raw.write_text(json.dumps(runs, indent=1))
            write_result(name, title, note + curve_table(runs, names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    time_parser = sub.add_parser("timing")
    time_parser.add_argument("--settings", default="scratch_144,lite0_144,lite0_240_lowlr")
    time_parser.add_argument("--steps", type=int, default=5)
    time_parser.add_argument("--rounds", type=int, default=3)
    curve_parser = sub.add_parser("curve")
    curve_parser.add_argument("--setting", required=True, choices=sorted(SETTINGS))
    curve_parser.add_argument("--labeled", default="23,46,92,184,367")
    curve_parser.add_argument("--seeds", default="0")
    curve_parser.add_argument("--out", default="runs/pretrained_tier")
    args = parser.parse_args()
    timing(args) if args.command == "timing" else curve(args)


if __name__ == "__main__":
    main()
