"""CycleGAN translation of synthcity sim toward the target, then a segmenter on sim, on the
translation, and on both: does input-level adaptation raise target mIoU?

Per target (``photo``: synthcity photo; ``camvid``: CamVid train images as the unlabeled target,
CamVid val for testing, as in `benchmarks.uda_synthcity`):

1. ``segshift translate train translate/synthcity`` between sim train (240 images, 128x160) and
   the target train images (labels unused); its last sample grid is copied to
   ``results/translate_synthcity_<target>_grid.png``.
2. ``segshift translate apply`` on sim train: the translated copy (same names, same masks) and the
   translation time per image.
3. ``uda/source_only`` (the fast model, 400 iterations, batch 8, 128x128 crops: the same budget
   for every variant) on ``sim``, on ``translated`` sim, and on ``sim+translated`` (one stream
   concatenating both roots), each tested on the target's val set.

Runs are recorded in ``results/translate_synthcity_<target>.json`` as they finish and skipped when
already there; a finished translation run or translated copy is reused.

    .venv/bin/python -m benchmarks.translate_synthcity --target photo --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from benchmarks.common import RESULTS, method_table, require_camvid, train_record, write_result
from benchmarks.uda_synthcity import CAMVID, config_for
from segshift.cli import main as segshift
from segshift.config import load_config
from segshift.data.label_space import get_label_space
from segshift.pipeline.demo import generate_demo_data
from segshift.pipeline.translate import latest_sample_grid, train_translation

# the translation's target stream for CamVid: its train images at the benchmark's 144x192
CAMVID_TRANSLATION_TARGET = [
    "data.streams.target.name=camvid",
    f"data.streams.target.root={CAMVID}",
    "data.streams.target.split=train",
    "data.streams.target.resize=[144,192]",
]
VARIANTS = ("sim", "translated", "sim+translated")
# result names: the CycleGAN rows against their baseline, the segmenter trained on sim alone
RESULT_NAMES = {
    "sim": "source_only",
    "translated": "cyclegan",
    "sim+translated": "cyclegan [sim+translated]",
}


def translate(roots: dict[str, Path], out: Path, target: str, iters: int | None) -> Path:
    """Train (or reuse) the CycleGAN run of ``target``; return its run directory."""
    overrides = [
        f"data.streams.source.root={roots['sim_train']}",
        f"data.streams.target.root={roots['photo_train']}",
        f"output_dir={out}",
        f"name=cyclegan_{target}",
        "train.progress=plain",
    ]
    overrides += CAMVID_TRANSLATION_TARGET if target == "camvid" else []
    overrides += [f"train.iters={iters}"] if iters else []
    run = train_translation(load_config("translate/synthcity", overrides))
    grid = latest_sample_grid(run)
    if grid is not None:
        shutil.copyfile(grid, RESULTS / f"translate_synthcity_{target}_grid.png")
    return run


def apply(run: Path, sim_train: Path, out: Path) -> dict:
    """Translate sim train with the run's source -> target generator; a complete translation is
    reused with the manifest (and timing) of the invocation that wrote it."""
    manifest = out / "translation.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("seconds_per_image"):
        return json.loads(manifest.read_text())
    status = segshift(
        [
            "translate",
            "apply",
            "--checkpoint",
            str(run),
            "--data",
            str(sim_train),
            "--out",
            str(out),
        ]
    )
    if status != 0:
        raise SystemExit(f"translate apply failed ({status})")
    return json.loads((out / "translation.json").read_text())


def variant_config(variant: str, roots: dict, translated: Path, args, seed: int):
    sources = dict(roots)
    extra = []
    if variant == "translated":
        sources["sim_train"] = translated
    elif variant == "sim+translated":
        extra = [f"data.streams.source.concat=[{{root: {translated}}}]"]
    label = "" if variant == "sim" else variant
    return config_for("source_only", sources, Path(args.out), seed, None, args.target, extra, label)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", choices=["photo", "camvid"], default="photo")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--translation-iters", type=int, default=None, help="default: config's")
    parser.add_argument("--data", default="runs/uda_bench/data")
    parser.add_argument("--out", default="runs/translate_bench")
    args = parser.parse_args()
    if args.target == "camvid":
        require_camvid()
    roots = generate_demo_data(Path(args.data))
    out = Path(args.out)
    run = translate(roots, out, args.target, args.translation_iters)
    translated = out / f"sim_train_to_{args.target}"
    manifest = apply(run, roots["sim_train"], translated)
    name = f"translate_synthcity_{args.target}"
    raw = RESULTS / f"{name}.json"
    runs = json.loads(raw.read_text()) if raw.is_file() else []
    for seed in map(int, args.seeds.split(",")):
        for variant in args.variants.split(","):
            key = RESULT_NAMES[variant]
            if any(r["method"] == key and r["seed"] == seed for r in runs):
                continue
            runs.append(
                train_record(variant_config(variant, roots, translated, args, seed), key, seed)
            )
            raw.write_text(json.dumps(runs, indent=1))
            write_result(name, title(args.target), body(runs, raw, run, manifest, args.target))
    if runs:  # also when every run was there already (the text may have changed)
        write_result(name, title(args.target), body(runs, raw, run, manifest, args.target))


def title(target: str) -> str:
    return f"CycleGAN synthcity sim -> {target}: segmenters on sim, translated sim, both"


def body(runs: list[dict], raw: Path, run: Path, manifest: dict, target: str) -> str:
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    train = [r for r in log if r.get("kind") == "train" and "sec_per_step" in r]
    steps = sorted(r["sec_per_step"] for r in train)
    iters = max((r["step"] for r in train), default=0)
    per_image = manifest.get("seconds_per_image") or float("nan")
    lines = [
        f"Translation: `translate/synthcity` ({run.name}, {iters} iterations, median of logged "
        f"s/iter {steps[len(steps) // 2]:.3f}); "
        f"`translate apply` of {manifest.get('images')} sim images: {per_image:.4f} s/image. "
        f"Sample grid: `translate_synthcity_{target}_grid.png` (rows: sim | translated | "
        f"reconstructed, then {target} | translated to sim | reconstructed).",
        "",
        "`source_only` = `uda/source_only` (the fast model, 400 iterations) on sim; `cyclegan`: "
        "the same on the CycleGAN-translated copy; `cyclegan [sim+translated]`: on one stream "
        "concatenating both (same iterations and batch: twice the images, half the passes).",
        "",
    ]
    names = list(get_label_space("camvid").class_names)
    return "\n".join(lines) + "\n" + method_table(runs, "source_only", names, raw)


if __name__ == "__main__":
    main()
