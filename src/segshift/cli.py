"""The ``segshift`` command line: train, eval, predict, export, data, config, list, demo,
pipeline, pseudo-label, sweep, translate, score.

Examples::

    segshift train configs/demo/source_only.yaml train.iters=2000 model.encoder=resnet18
    segshift train --resume runs/source_only
    segshift eval runs/source_only --flip
    segshift predict photos/ --checkpoint runs/source_only --out preds/
    segshift export runs/source_only --dynamic --quantize dynamic
    segshift data synthcity --out data/sim --style sim --n 200 --size 128x160 --seed 0
    segshift data check my.yaml --workers 4 --json check.json
    segshift pipeline pipeline/synthcity data.streams.source.root=SIM ...
    segshift pseudo-label --checkpoint runs/teacher --data my.yaml --out pseudo/ --rule cbst
    segshift sweep my.yaml --set data.streams.labeled.n_labeled=23,46 --set seed=0,1,2
    segshift sweep my.yaml --set seed=0,1,2 --launcher submitit --partition gpu --time 60
    segshift translate train translate/synthcity data.streams.source.root=SIM ...
    segshift translate apply --checkpoint runs/translate/cyclegan_synthcity --data SIM --out TR
    segshift score runs/dacs --data uda/dacs data.streams.target.root=PHOTO --all-checkpoints
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from segshift.errors import SegshiftError, TrainingInterrupted
from segshift.fileio import check_output_directory
from segshift.pipeline.launch import add_launcher_arguments, options_from_args


def _add_inference_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode", choices=["whole", "slide", "slide_unimatch"], help="inference mode"
    )
    parser.add_argument("--crop", help="sliding-window crop HxW")
    parser.add_argument("--stride", help="sliding-window stride HxW")
    parser.add_argument("--flip", action="store_true", help="horizontal-flip TTA")
    parser.add_argument("--scales", help="multi-scale TTA, e.g. 0.75,1,1.25")


def parse_hw(option: str, text: str, minimum: int = 1) -> tuple[int, int]:
    """``"512x1024"`` -> ``(512, 1024)``, each side in ``minimum..MAX_SIDE``; a SegshiftError
    naming ``option`` otherwise."""
    from segshift.config import MAX_SIDE

    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise SegshiftError(
            f"{option}: expected HxW with whole numbers, e.g. 512x1024; got {text!r}"
        )
    h, w = (int(p) for p in parts)
    if not (minimum <= h <= MAX_SIDE and minimum <= w <= MAX_SIDE):
        raise SegshiftError(
            f"{option}: height and width must be in {minimum}..{MAX_SIDE}; got {text!r}"
        )
    return h, w


def parse_scales(option: str, text: str) -> tuple[float, ...]:
    """``"0.75,1,1.25"`` -> ``(0.75, 1.0, 1.25)``; every scale a number > 0."""
    try:
        scales = tuple(float(s) for s in text.split(","))
    except ValueError:
        scales = ()
    if not scales or not all(0 < s < float("inf") for s in scales):
        raise SegshiftError(
            f"{option}: expected numbers > 0 separated by commas, e.g. 0.75,1,1.25; got {text!r}"
        )
    return scales


def _inference_overrides(args: argparse.Namespace) -> list[str]:
    overrides = []
    if args.mode:
        overrides.append(f"eval.mode={args.mode}")
    if args.crop:
        overrides.append("eval.crop_size=[{},{}]".format(*parse_hw("--crop", args.crop)))
    if args.stride:
        overrides.append("eval.stride=[{},{}]".format(*parse_hw("--stride", args.stride)))
    if args.flip:
        overrides.append("eval.flip=true")
    if args.scales:
        overrides.append(
            f"eval.scales=[{','.join(map(str, parse_scales('--scales', args.scales)))}]"
        )
    return overrides


def _add_train_arguments(train: argparse.ArgumentParser) -> None:
    """CONFIG [overrides] | --resume RUN_DIR, --overwrite (train, translate train)."""
    train.add_argument("config", nargs="?", help="YAML file or packaged config name")
    train.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.iters=100")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="with train.resume=false: replace the run already in the run directory",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segshift", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    _add_train_arguments(sub.add_parser("train", help="train a method from a config"))

    ev = sub.add_parser("eval", help="evaluate a run directory or checkpoint")
    ev.add_argument(
        "target", help="run directory, checkpoint file, model.onnx, or config (with --checkpoint)"
    )
    ev.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.val.root=...")
    ev.add_argument(
        "--checkpoint",
        help="checkpoint when TARGET is a config: a run directory, a segshift checkpoint, an "
        "exported model.onnx (ONNX Runtime) or a released official DeepLab-v2 .pth "
        "(docs/OFFICIAL_CHECKPOINTS.md)",
    )
    ev.add_argument("--out", help="directory for metrics.csv/json (default: RUN_DIR/eval)")
    _add_inference_options(ev)

    pred = sub.add_parser(
        "predict",
        help="write index masks, colour masks, overlays and a colour legend for images",
        description="Write OUT/masks/<name>.png (train ids), OUT/<name>_color.png, "
        "OUT/<name>_overlay.png, OUT/legend.png and OUT/legend.json (id, name, colour); with "
        "--masks also OUT/<name>_panel.png (image | ground truth | prediction).",
    )
    pred.add_argument("images", nargs="+", help="image files or directories")
    pred.add_argument(
        "--checkpoint",
        required=True,
        help="run directory, checkpoint file, export/ directory or its model.safetensors, or an "
        "exported model.onnx (ONNX Runtime)",
    )
    pred.add_argument("--out", required=True, help="output directory")
    pred.add_argument(
        "--masks",
        help="directory of ground-truth masks named like the images, read as the run's data.val "
        "reads its masks (see --masks-as): adds image | truth | prediction panels",
    )
    pred.add_argument(
        "--masks-as",
        choices=["data", "train-ids"],
        default="data",
        help="data: as the run's data.val (label space, remap, mask format) where its root "
        "exists here, else train-ids: train ids (255 = ignore) or legend colours",
    )
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
    check = data_sub.add_parser(
        "check",
        help="read every image and mask once; report all problems, class pixels, image sizes",
        description="Check every data.streams.* and data.val of CONFIG (a YAML file or packaged "
        "config name), or the splits of a folder dataset DIR, as training reads them. Prints "
        "per set its images, sizes and per-class pixel and image counts, then every problem "
        "(unknown ids and colours with their files, size mismatches, unreadable files, missing "
        "masks, empty sets). Exit status 1 when there are problems. Overrides: config keys "
        "for CONFIG (data.val.root=...), dataset keys for DIR (options.mask_format=rgb).",
    )
    check.add_argument("target", metavar="CONFIG_OR_DIR")
    check.add_argument("overrides", nargs="*", help="dotted overrides")
    check.add_argument("--workers", type=int, default=2, help="reading threads (default 2)")
    check.add_argument("--json", metavar="FILE", help="also write the report as JSON")

    show = sub.add_parser("config", help="print the resolved config")
    show.add_argument("config")
    show.add_argument("overrides", nargs="*")

    listing = sub.add_parser(
        "list",
        help="list datasets, models, methods, packaged configs, label spaces, dataset options",
    )
    listing.add_argument("--dataset", metavar="NAME", help="describe this dataset's options")
    init = sub.add_parser(
        "init",
        help="write DIR/config.yaml and an example DIR/classes.yaml for your own data",
        description="Write DIR/config.yaml from a packaged template (configs/own: CPU-sized, "
        "the streams METHOD reads laid out with comments) and an example DIR/classes.yaml; "
        "existing files are not overwritten.",
    )
    init.add_argument("directory", metavar="DIR")
    init.add_argument(
        "--method",
        default="supervised",
        help="supervised (labeled images), a semi-supervised method such as unimatch or "
        "fixmatch (labeled + unlabeled), or an adaptation method such as dacs (source + "
        "target); default: supervised",
    )

    demo = sub.add_parser(
        "demo", help="synthcity sim -> photo: the synthetic-teacher loop vs source-only and oracle"
    )
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--iters", type=int, default=None, help="training iterations per model")
    pipe = sub.add_parser(
        "pipeline",
        help="the synthetic-teacher loop: teacher -> [pseudo-label -> student] x R",
        description="Run a pipeline config in output_dir/name; done stages are skipped, an "
        "unfinished one resumes, a changed one reruns with the stages after it. Overrides of "
        "pipeline keys (pipeline.rounds=3) change the pipeline; others (data.val.root=...) "
        "apply to every training stage.",
    )
    pipe.add_argument("config", help="pipeline YAML file or packaged name (pipeline/synthcity)")
    pipe.add_argument("overrides", nargs="*", help="dotted overrides")
    add_launcher_arguments(pipe)
    _add_sweep_parser(sub)
    _add_pseudo_label_parser(sub)
    _add_translate_parser(sub)
    _add_score_parser(sub)
    _add_export_parser(sub)
    return parser


# --- export -----------------------------------------------------------------------------------
def _add_export_parser(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser(
        "export",
        help="export a trained run to ONNX, checked against PyTorch on its validation images",
        description="Write OUT (default RUN/export/model.onnx: input RGB [0, 1] NCHW float32, "
        "normalisation inside) and OUT's .json (classes, palette, input size, normalisation, "
        "parity). ONNX Runtime runs it on the first batches of the run's data.val; a parity "
        "mismatch fails the command and writes nothing. Example: segshift export runs/fast "
        "--dynamic --quantize dynamic",
    )
    export.add_argument("run", help="run directory, checkpoint, export/ or model.safetensors")
    export.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.val.root=...")
    export.add_argument("--format", default="onnx", choices=["onnx"])
    export.add_argument("--opset", type=int, default=17, help="ONNX opset, 11..20 (default 17)")
    export.add_argument("--dynamic", action="store_true", help="dynamic batch and image size")
    export.add_argument("--size", help="input HxW (default: data.val.resize or a val image's)")
    export.add_argument("--output", default="logits", choices=["logits", "argmax"])
    export.add_argument("--out", help="the .onnx file to write")
    export.add_argument(
        "--quantize", choices=["dynamic"], help="also write OUT's .int8.onnx (dynamic int8)"
    )
    export.add_argument(
        "--verify-batches", type=int, default=4, help="data.val batches to check (0: none)"
    )


def _export(args: argparse.Namespace) -> None:
    from segshift.pipeline.export_onnx import export_onnx

    report = export_onnx(
        args.run,
        args.out,
        opset=args.opset,
        dynamic=args.dynamic,
        output=args.output,
        size=parse_hw("--size", args.size) if args.size else None,
        quantize=args.quantize,
        verify_batches=args.verify_batches,
        overrides=args.overrides,
    )
    parity = report["parity"]
    print(f"parity with PyTorch: {parity.line() if parity else 'not checked (--verify-batches 0)'}")
    print(f"wrote {report['onnx']} and {report['json']}")
    if "int8" in report:
        int8 = report["int8_parity"]
        print(f"int8 parity with PyTorch fp32: {int8.line() if int8 else 'not checked'}")
        print(f"wrote {report['int8']} and {report['int8_json']}")


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
    sweep.add_argument(
        "--select-by",
        metavar="last|miou|score.NAME",
        help="also choose each run's checkpoint (a pipeline's round) and the grid point, e.g. "
        "by a label-free score: score.entropy (README: Adaptation quality without labels)",
    )
    add_launcher_arguments(sweep)


def _sweep(args: argparse.Namespace) -> None:
    from segshift.pipeline.launch_sweep import SubmititSweep
    from segshift.pipeline.sweep import run_sweep

    options = options_from_args(args)
    launcher = SubmititSweep(options) if options else None
    run_sweep(
        args.config,
        args.sets,
        args.overrides,
        out=args.out,
        dry_run=args.dry_run,
        select_by=args.select_by,
        launcher=launcher,
    )


# --- pseudo-label -----------------------------------------------------------------------------
def _add_pseudo_label_parser(sub: argparse._SubParsersAction) -> None:
    pseudo = sub.add_parser(
        "pseudo-label",
        help="pseudo-label images with a trained run; the output is a folder dataset",
        description="Write OUT/masks (255 = not kept), OUT/confidence, OUT/report.md and a "
        "manifest; a rerun resumes, and one with another rule reuses the predictions. Example: "
        "segshift pseudo-label --checkpoint runs/teacher --data uda.yaml --out pl --rule cbst",
    )
    pseudo.add_argument(
        "overrides", nargs="*", help="dotted overrides of the --data config (or dataset node)"
    )
    pseudo.add_argument("--checkpoint", required=True, help="run directory or checkpoint file")
    pseudo.add_argument("--data", required=True, help="dataset directory or config file")
    pseudo.add_argument("--stream", help="stream of a --data config (default: first unlabeled)")
    pseudo.add_argument("--out", required=True, help="output directory")
    pseudo.add_argument(
        "--rule", default="threshold", choices=["threshold", "cbst", "uncertainty", "none"]
    )
    pseudo.add_argument("--threshold", type=float, default=0.5, help="threshold: min confidence")
    pseudo.add_argument("--portion", type=float, default=0.2, help="cbst: share kept per class")
    pseudo.add_argument("--max-kl", type=float, help="uncertainty: max main/aux KL (nats)")
    pseudo.add_argument(
        "--kl-portion", type=float, default=0.8, help="uncertainty: share kept without --max-kl"
    )
    pseudo.add_argument(
        "--head",
        choices=["main", "fused"],
        help="label from the main head or softmax(main + aux-weight x aux) (default: fused for "
        "--rule uncertainty, else main)",
    )
    pseudo.add_argument("--aux-weight", type=float, default=0.5, help="aux weight of --head fused")
    pseudo.add_argument(
        "--labels",
        help="ground truth of the same images for the quality report: a dataset directory or a "
        "config (its --stream if it has one, else data.val)",
    )
    pseudo.add_argument("--flip", action="store_true", help="horizontal-flip TTA")
    pseudo.add_argument("--scales", default="1", help="multi-scale TTA, e.g. 0.75,1,1.25")
    pseudo.add_argument("--batch-size", type=int, default=4)
    pseudo.add_argument("--workers", type=int, default=2, help="image-reading processes")


def _pseudo_label(args: argparse.Namespace) -> None:
    from segshift.pipeline.pseudo_label import Selection, dataset_node, generate_pseudo_labels
    from segshift.pipeline.stage_checks import label_node

    scales = parse_scales("--scales", args.scales)
    if args.batch_size < 1:
        raise SegshiftError(f"--batch-size: must be >= 1; got {args.batch_size}")
    if args.workers < 0:
        raise SegshiftError(f"--workers: must be >= 0; got {args.workers}")
    check_output_directory("--out", args.out)
    selection = Selection(
        rule=args.rule,
        threshold=args.threshold,
        portion=args.portion,
        max_kl=args.max_kl,
        kl_portion=args.kl_portion,
        head=args.head,
    )
    report = generate_pseudo_labels(
        args.checkpoint,
        dataset_node(args.data, args.stream, args.overrides),
        args.out,
        selection,
        flip=args.flip,
        scales=scales,
        batch_size=args.batch_size,
        progress=sys.stderr.isatty(),
        label_data=label_node(args.labels, args.stream, "--labels"),
        num_workers=args.workers,
        aux_weight=args.aux_weight,
    )
    print(f"{report['images']} images, {100 * report['coverage']:.2f}% of pixels kept")
    labels = report["labels"]
    if labels and labels["miou"] is not None:
        print(
            f"against ground truth: pixel accuracy {100 * labels['pixel_accuracy']:.2f}, "
            f"mIoU {100 * labels['miou']:.2f}, {100 * labels['coverage']:.2f}% of valid pixels kept"
        )
    print(f"wrote {args.out}: masks/, confidence/, report.md")


# --- score ------------------------------------------------------------------------------------
def _add_score_parser(sub: argparse._SubParsersAction) -> None:
    from segshift.config import SCORE_NAMES

    score = sub.add_parser(
        "score",
        help="label-free scores of a trained model on unlabeled target images",
        description="Score a run directory, checkpoint or export on unlabeled target images "
        f"without their labels ({', '.join(SCORE_NAMES)}; higher = better expected target "
        "mIoU; README: Adaptation quality without labels). Example: segshift score runs/dacs "
        "--data uda/dacs data.streams.target.root=PHOTO --source SIM --all-checkpoints "
        "--json scores.json",
    )
    score.add_argument("target", metavar="RUN_OR_CHECKPOINT")
    score.add_argument("overrides", nargs="*", help="dotted overrides of the --data config")
    score.add_argument(
        "--data",
        required=True,
        help="target images: dataset directory or config (its first unlabeled stream)",
    )
    score.add_argument("--source", help="labeled source: dataset directory or config")
    score.add_argument("--scores", help="comma-separated names (default: all)")
    score.add_argument(
        "--all-checkpoints", action="store_true", help="every checkpoint of the run directory"
    )
    score.add_argument("--json", metavar="FILE", help="write the scores as JSON")
    score.add_argument("--md", metavar="FILE", help="write the Markdown table")
    score.add_argument("--batch-size", type=int, default=4)
    score.add_argument("--max-images", type=int, help="at most N images, spread evenly")
    score.add_argument("--workers", type=int, default=2, help="image-reading processes")


def _score(args: argparse.Namespace) -> None:
    from segshift.pipeline.scoring import score_command

    score_command(
        args.target,
        args.data,
        args.overrides,
        source=args.source,
        scores=args.scores,
        all_checkpoints=args.all_checkpoints,
        batch_size=args.batch_size,
        max_images=args.max_images,
        num_workers=args.workers,
        json_path=args.json,
        md_path=args.md,
    )


# --- translate --------------------------------------------------------------------------------
def _add_translate_parser(sub: argparse._SubParsersAction) -> None:
    translate = sub.add_parser(
        "translate",
        help="image translation (CycleGAN) between a source and a target image stream",
        description="Train an image-translation method (translate train) on two image streams "
        "(labels not needed); its run directory holds sample grids (samples/) and the "
        "generators (export/), with which translate apply writes the translated copy of a "
        "dataset.",
    )
    commands = translate.add_subparsers(dest="translate_command", required=True)
    _add_train_arguments(
        commands.add_parser(
            "train",
            help="train a translation config (method cyclegan), e.g. translate/synthcity",
            description="`segshift train` for translation methods: checkpoints, exact resume "
            "(--resume RUN_DIR), logs, sample grids every train.eval_every steps and at the "
            "end (RUN_DIR/samples, TensorBoard), generators in RUN_DIR/export. Example: "
            "segshift translate train translate/synthcity data.streams.source.root=SIM "
            "data.streams.target.root=PHOTO",
        )
    )
    _add_translate_apply_parser(commands)


def _add_translate_apply_parser(commands: argparse._SubParsersAction) -> None:
    apply = commands.add_parser(
        "apply",
        help="write the translated copy of a whole dataset with a translation run",
        description="Translate every image of a dataset at its own size into OUT under the "
        "same relative path and name, copy its masks and the root's metadata files "
        "(classes.yaml, train.txt, ...), so the same dataset config with root=OUT reads the "
        "translation; OUT/translation.json names the checkpoint. A rerun skips the images "
        "already written. Example: segshift translate apply --checkpoint "
        "runs/translate/cyclegan_synthcity --data translate/synthcity --out data/sim_as_photo "
        "data.streams.source.root=SIM data.streams.target.root=PHOTO",
    )
    apply.add_argument(
        "overrides", nargs="*", help="dotted overrides of the --data config (or dataset node)"
    )
    apply.add_argument(
        "--checkpoint",
        required=True,
        help="finished translation run directory, its export/ or model.safetensors",
    )
    apply.add_argument(
        "--data",
        required=True,
        help="dataset directory (every split) or config (YAML or packaged name)",
    )
    apply.add_argument("--out", required=True, help="output directory (the translated dataset)")
    apply.add_argument(
        "--direction", default="source_to_target", choices=["source_to_target", "target_to_source"]
    )
    apply.add_argument("--stream", help="stream of a --data config (default: source; or val)")
    apply.add_argument("--batch-size", type=int, default=4, help="images per forward pass")
    apply.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if available")
    apply.add_argument("--workers", type=int, default=2, help="image-reading processes")
    apply.add_argument(
        "--overwrite", action="store_true", help="delete the translation in OUT and start again"
    )


def _translate_apply(args: argparse.Namespace) -> None:
    from segshift.pipeline.translate_apply import apply_translation

    if args.workers < 0:
        raise SegshiftError(f"--workers: must be >= 0; got {args.workers}")
    summary = apply_translation(
        args.checkpoint,
        args.data,
        args.out,
        direction=args.direction,
        stream=args.stream,
        overrides=args.overrides,
        batch_size=args.batch_size,
        device=args.device,
        num_workers=args.workers,
        overwrite=args.overwrite,
        progress=sys.stderr.isatty(),
    )
    for note in summary["notes"]:
        print(note)
    per_image = summary["seconds_per_image"]
    timing = f", {per_image:.4f} s/image" if per_image is not None else ""
    print(
        f"translated {summary['translated']} images, skipped {summary['skipped']} already in "
        f"{args.out}{timing}; {summary['masks']} masks"
    )
    print(f"wrote {args.out} ({summary['images']} images, translation.json)")


def _translate_train(args: argparse.Namespace) -> None:
    from segshift.pipeline.translate import latest_sample_grid, train_translation

    cfg, run_dir = _train_config(args)
    run_dir = train_translation(cfg, run_dir=run_dir, overwrite=args.overwrite)
    grid = latest_sample_grid(run_dir)
    print(f"generators: {run_dir / 'export' / 'model.safetensors'}")
    if grid is not None:
        print(f"sample grid: {grid}")


# `segshift translate <command>`
TRANSLATE_COMMANDS = {"train": _translate_train, "apply": _translate_apply}


def _translate(args: argparse.Namespace) -> None:
    TRANSLATE_COMMANDS[args.translate_command](args)


# ----------------------------------------------------------------------------------------------
def _train_config(args: argparse.Namespace) -> tuple[Any, Path | None]:
    """(config, run directory or None) of `train` / `translate train`: CONFIG with overrides,
    or RUN_DIR's config.yaml with them (--resume)."""
    from segshift.config import load_config

    if args.resume:
        run_dir = Path(args.resume)
        config = run_dir / "config.yaml"
        if not config.is_file():
            raise SegshiftError(f"{run_dir} is not a run directory: no config.yaml in it")
        overrides = ([args.config] if args.config else []) + args.overrides
        return load_config(config, overrides), run_dir
    if args.config:
        return load_config(args.config, args.overrides), None
    raise SegshiftError("train needs a CONFIG or --resume RUN_DIR")


def _train(args: argparse.Namespace) -> None:
    from segshift.engine.scored import final_miou_line
    from segshift.engine.trainer import Trainer

    cfg, run_dir = _train_config(args)
    trainer = Trainer(cfg, run_dir=run_dir, overwrite=args.overwrite)
    metrics = trainer.fit()
    if "miou" in metrics:
        print(final_miou_line(metrics, trainer))


def _eval(args: argparse.Namespace) -> None:
    from segshift.config import load_config
    from segshift.engine.restore import (
        config_from_checkpoint,
        eval_output_dir,
        load_eval_weights,
        read_eval_checkpoint,
    )
    from segshift.engine.scored import scored_checkpoint
    from segshift.engine.trainer import Trainer
    from segshift.evaluation import MetricsTable
    from segshift.models import drop_pretrained_weights

    overrides = args.overrides + _inference_overrides(args)
    if args.out:
        check_output_directory("--out", args.out)
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
    order = load_eval_weights(  # refuses other classes; the same in another order: by name
        trainer.method, state, origin, class_names=trainer.label_space.class_names
    )
    result = trainer.evaluate(
        progress=sys.stderr.isatty(), class_order=order, model=state.get("onnx")
    )
    if trainer.fabric.global_rank != 0:
        return
    scored = scored_checkpoint(state, origin)  # which weights: best.pt is chosen on data.val
    print(scored["line"])
    table = MetricsTable(result, trainer.label_space.class_names)
    print(table.arrow())
    for key in sorted(k for k in result if k.startswith("miou_")):
        print(f"===> mIoU ({key[5:]} classes): {100 * result[key]:.2f}")
    print()
    print(table.grid())
    out = Path(args.out) if args.out else eval_output_dir(state, origin)
    table.to_csv(out / "metrics.csv")
    table.to_json(out / "metrics.json", {k: v for k, v in scored.items() if k != "line"})
    print(f"wrote {out / 'metrics.csv'} and {out / 'metrics.json'}")


def _predict(args: argparse.Namespace) -> None:
    from segshift.pipeline.predict import predict_images

    written = predict_images(
        args.images,
        args.checkpoint,
        args.out,
        overrides=_inference_overrides(args),
        masks=args.masks,
        masks_as_data=args.masks_as == "data",
    )
    images = sum(1 for path in written if path.parent == Path(args.out) / "masks")
    print(f"wrote predictions of {images} images to {args.out} (masks/, legend.png, legend.json)")


def _data(args: argparse.Namespace) -> int:
    if args.data_command == "check":
        return _data_check(args)
    from segshift.data.synthcity import generate

    if args.n < 1:
        raise SegshiftError(f"--n: the number of scenes must be >= 1; got {args.n}")
    if args.workers < 1:
        raise SegshiftError(f"--workers: must be >= 1; got {args.workers}")
    size = parse_hw("--size", args.size, minimum=16)  # the generator's smallest scene
    out_dir = Path(args.out)
    existing = next((p for p in (out_dir, *out_dir.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise SegshiftError(f"--out {args.out}: {existing} exists and is not a directory")
    out = generate(
        args.out,
        style=args.style,
        n=args.n,
        size=size,
        seed=args.seed,
        workers=args.workers,
    )
    print(f"wrote {args.n} {args.style} scenes to {out}")
    return 0


def _data_check(args: argparse.Namespace) -> int:
    import json

    from segshift.config import load_config
    from segshift.data.check import (
        check_sets,
        config_sets,
        directory_sets,
        format_reports,
        reports_json,
    )
    from segshift.fileio import atomic_write_bytes

    if args.workers < 1:
        raise SegshiftError(f"--workers: must be >= 1; got {args.workers}")
    if Path(args.target).expanduser().is_dir():
        sets = directory_sets(args.target, args.overrides)
    else:
        sets = config_sets(load_config(args.target, args.overrides))
    reports = check_sets(sets, workers=args.workers, progress=sys.stderr.isatty())
    print(format_reports(reports))
    result = reports_json(reports)
    if args.json:
        atomic_write_bytes(Path(args.json), json.dumps(result, indent=1).encode())
        print(f"wrote {args.json}")
    return 1 if result["problems"] else 0


def _config(args: argparse.Namespace) -> None:
    from omegaconf import OmegaConf

    from segshift.config import is_pipeline_config, load_config

    if is_pipeline_config(args.config):  # a pipeline's own keys; its stages are run configs
        from segshift.pipeline.loop import load_pipeline_config

        print(OmegaConf.to_yaml(load_pipeline_config(args.config, args.overrides)), end="")
        return
    print(OmegaConf.to_yaml(load_config(args.config, args.overrides)), end="")


def _list(args: argparse.Namespace) -> None:
    from segshift.listing import dataset_lines, overview_lines

    print("\n".join(dataset_lines(args.dataset) if args.dataset else overview_lines()))


def _init(args: argparse.Namespace) -> None:
    from segshift.templates import init_directory

    config, classes = init_directory(args.directory, args.method)
    print(f"wrote {config} (method {args.method}) and an example {classes}")
    print(f"next: put classes.yaml beside your images/ and masks/, set the roots in {config}")
    print(f"(or give them on the command line), check the data: segshift data check {config}")
    print(f"and train: segshift train {config}")


def _pipeline(args: argparse.Namespace) -> None:
    from segshift.pipeline.loop import StageStopped, run_pipeline

    options = options_from_args(args)
    if options is not None:  # one cluster job per stage
        from segshift.pipeline.launch_pipeline import submit_pipeline

        submit_pipeline(args.config, args.overrides, options)
        return
    try:
        run_pipeline(args.config, args.overrides)
    except StageStopped as stop:  # train.stop_at, as `segshift train` does: not an error
        print(f"segshift pipeline: {stop}")


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
    "init": _init,
    "demo": _demo,
    "pipeline": _pipeline,
    "sweep": _sweep,
    "pseudo-label": _pseudo_label,
    "translate": _translate,
    "score": _score,
    "export": _export,
}


def main(argv: list[str] | None = None) -> int:
    from segshift.cli_parse import parse_command_line

    args = parse_command_line(build_parser(), argv)  # options, overrides, inputs in any order
    try:
        status = COMMANDS[args.command](args)
    except TrainingInterrupted as err:
        print(f"segshift {args.command}: {err}", file=sys.stderr)
        return err.exit_code
    except SegshiftError as err:
        print(f"segshift {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside training (which checkpoints first): no traceback
        print(f"segshift {args.command}: interrupted", file=sys.stderr)
        return 130
    return status or 0  # a command may return its own status (data check: 1 on problems)


if __name__ == "__main__":
    sys.exit(main())
