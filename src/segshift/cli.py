"""The ``segshift`` command line: train, eval, predict, data, config, list, demo.

Examples::

    segshift train configs/demo/source_only.yaml train.iters=2000 model.encoder=resnet18
    segshift train --resume runs/source_only
    segshift eval runs/source_only --flip
    segshift predict photos/ --checkpoint runs/source_only --out preds/
    segshift data synthcity --out data/sim --style sim --n 200 --size 128x160 --seed 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from segshift.errors import SegshiftError, TrainingInterrupted


def _add_inference_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode", choices=["whole", "slide", "slide_unimatch"], help="inference mode"
    )
    parser.add_argument("--crop", help="sliding-window crop HxW")
    parser.add_argument("--stride", help="sliding-window stride HxW")
    parser.add_argument("--flip", action="store_true", help="horizontal-flip TTA")
    parser.add_argument("--scales", help="multi-scale TTA, e.g. 0.75,1,1.25")


def _inference_overrides(args: argparse.Namespace) -> list[str]:
    overrides = []
    if args.mode:
        overrides.append(f"eval.mode={args.mode}")
    if args.crop:
        overrides.append(f"eval.crop_size=[{args.crop.replace('x', ',')}]")
    if args.stride:
        overrides.append(f"eval.stride=[{args.stride.replace('x', ',')}]")
    if args.flip:
        overrides.append("eval.flip=true")
    if args.scales:
        overrides.append(f"eval.scales=[{args.scales}]")
    return overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segshift", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a method from a config")
    train.add_argument("config", nargs="?", help="YAML file or packaged config name")
    train.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.iters=100")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")

    ev = sub.add_parser("eval", help="evaluate a run directory or checkpoint")
    ev.add_argument("target", help="run directory, checkpoint file, or config (with --checkpoint)")
    ev.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.val.root=...")
    ev.add_argument(
        "--checkpoint",
        help="checkpoint when TARGET is a config: a run directory, a segshift checkpoint, or a "
        "released official DeepLab-v2 .pth (docs/OFFICIAL_CHECKPOINTS.md)",
    )
    ev.add_argument("--out", help="directory for metrics.csv/json (default: RUN_DIR/eval)")
    _add_inference_options(ev)

    pred = sub.add_parser("predict", help="write colour masks and overlays for images")
    pred.add_argument("images", nargs="+", help="image files or directories")
    pred.add_argument("--checkpoint", required=True, help="run directory or checkpoint file")
    pred.add_argument("--out", required=True, help="output directory")
    _add_inference_options(pred)

    data = sub.add_parser("data", help="dataset tools")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    synth = data_sub.add_parser("synthcity", help="generate procedural street scenes")
    synth.add_argument("--out", required=True)
    synth.add_argument("--style", choices=["sim", "photo"], required=True)
    synth.add_argument("--n", type=int, required=True)
    synth.add_argument("--size", default="128x160", help="HxW")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--workers", type=int, default=1)

    show = sub.add_parser("config", help="print the resolved config")
    show.add_argument("config")
    show.add_argument("overrides", nargs="*")

    sub.add_parser("list", help="list registered datasets, models and methods")

    demo = sub.add_parser("demo", help="synthcity sim -> photo: source-only vs oracle")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--iters", type=int, default=None, help="training iterations per model")
    _add_sweep_parser(sub)
    return parser


# --- sweep ------------------------------------------------------------------------------------
def _add_sweep_parser(sub: argparse._SubParsersAction) -> None:
    sweep = sub.add_parser(
        "sweep",
        help="run a grid of configs; write a table (CSV + Markdown) and a plot",
        description="Run the product of the --set axes, one run directory per point (done "
        "points are skipped), and write OUT/sweep.csv, sweep.md (mean +- std over seeds) and "
        "sweep.png. Example: segshift sweep my.yaml --set data.streams.labeled.n_labeled=23,46 "
        "--set seed=0,1,2",
    )
    sweep.add_argument("config", help="training or pipeline YAML file, or packaged config name")
    sweep.add_argument(
        "overrides", nargs="*", help="dotted overrides for every point (before the options)"
    )
    sweep.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a sweep axis (repeat for a grid); seed=0,1,2 is averaged over",
    )
    sweep.add_argument("--out", help="sweep directory (default: <output_dir>/sweep_<name>)")
    sweep.add_argument("--dry-run", action="store_true", help="list the points, run nothing")


def _sweep(args: argparse.Namespace) -> None:
    from segshift.pipeline.sweep import run_sweep

    run_sweep(args.config, args.sets, args.overrides, out=args.out, dry_run=args.dry_run)


# ----------------------------------------------------------------------------------------------
def _train(args: argparse.Namespace) -> None:
    from segshift.config import load_config
    from segshift.engine.trainer import Trainer

    if args.resume:
        config = Path(args.resume) / "config.yaml"
        overrides = ([args.config] if args.config else []) + args.overrides
        cfg = load_config(config, overrides)
    elif args.config:
        cfg = load_config(args.config, args.overrides)
    else:
        raise SegshiftError("train needs a CONFIG or --resume RUN_DIR")
    metrics = Trainer(cfg).fit()
    if "miou" in metrics:
        print(f"final mIoU: {100 * metrics['miou']:.2f}")


def _eval(args: argparse.Namespace) -> None:
    from segshift.config import load_config
    from segshift.engine.restore import (
        config_from_checkpoint,
        eval_output_dir,
        load_eval_weights,
        read_eval_checkpoint,
    )
    from segshift.engine.trainer import Trainer
    from segshift.evaluation import MetricsTable
    from segshift.models import drop_pretrained_weights

    overrides = args.overrides + _inference_overrides(args)
    target = Path(args.target)
    if args.checkpoint or target.suffix in (".yaml", ".yml"):  # a config, file or packaged name
        if not args.checkpoint:
            raise SegshiftError("eval CONFIG needs --checkpoint RUN_DIR_OR_FILE")
        cfg = load_config(target, overrides)
        state, origin = read_eval_checkpoint(args.checkpoint)
    else:
        cfg, state, origin = config_from_checkpoint(target, overrides)
    if cfg.data.val is None:
        raise SegshiftError("nothing to evaluate on: set data.val (e.g. data.val.root=...)")
    drop_pretrained_weights(cfg.model)  # the checkpoint holds the trained weights
    trainer = Trainer(cfg, evaluation_only=True)
    load_eval_weights(trainer.method, state, origin)
    result = trainer.evaluate(progress=sys.stderr.isatty())
    if trainer.fabric.global_rank != 0:
        return
    table = MetricsTable(result, trainer.label_space.class_names)
    print(table.arrow())
    for key in sorted(k for k in result if k.startswith("miou_")):
        print(f"===> mIoU ({key[5:]} classes): {100 * result[key]:.2f}")
    print()
    print(table.grid())
    out = Path(args.out) if args.out else eval_output_dir(state, origin)
    table.to_csv(out / "metrics.csv")
    table.to_json(out / "metrics.json")
    print(f"wrote {out / 'metrics.csv'} and {out / 'metrics.json'}")


def _predict(args: argparse.Namespace) -> None:
    from segshift.pipeline.predict import predict_images

    written = predict_images(
        args.images, args.checkpoint, args.out, overrides=_inference_overrides(args)
    )
    print(f"wrote {len(written)} predictions to {args.out}")


def _data(args: argparse.Namespace) -> None:
    from segshift.data.synthcity import generate, parse_size

    out = generate(
        args.out,
        style=args.style,
        n=args.n,
        size=parse_size(args.size),
        seed=args.seed,
        workers=args.workers,
    )
    print(f"wrote {args.n} {args.style} scenes to {out}")


def _config(args: argparse.Namespace) -> None:
    from omegaconf import OmegaConf

    from segshift.config import load_config

    print(OmegaConf.to_yaml(load_config(args.config, args.overrides)), end="")


def _list(_: argparse.Namespace) -> None:
    import segshift.data  # noqa: F401  (registers datasets)
    import segshift.methods  # noqa: F401  (registers methods)
    import segshift.models  # noqa: F401  (registers models)
    from segshift.registry import DATASETS, METHODS, MODELS

    for registry in (DATASETS, MODELS, METHODS):
        print(f"{registry.kind}s: {', '.join(registry.names())}")


def _demo(args: argparse.Namespace) -> None:
    from segshift.pipeline.demo import run_demo

    run_demo(args.out, iters=args.iters)


COMMANDS = {
    "train": _train,
    "eval": _eval,
    "predict": _predict,
    "data": _data,
    "config": _config,
    "list": _list,
    "demo": _demo,
    "sweep": _sweep,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except TrainingInterrupted as err:
        print(f"segshift {args.command}: {err}", file=sys.stderr)
        return err.exit_code
    except SegshiftError as err:
        print(f"segshift {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
