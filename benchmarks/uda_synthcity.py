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
from pathlib import Path

from benchmarks.common import (
    RESULTS,
    camvid_root,
    method_table,
    require_camvid,
    train_record,
    write_result,
)
from segshift.config import load_config
from segshift.data.label_space import get_label_space
from segshift.pipeline.demo import generate_demo_data

CAMVID = camvid_root()
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
    cfg = config_for(method, roots, out, seed, iters, target, extra, label)
    return train_record(cfg, f"{method} [{label}]" if label else method, seed)


def table(runs: list[dict], raw: Path) -> str:
    names = list(get_label_space("camvid").class_names)
    note = "`source_only` and `oracle` are the `supervised` method (on sim, on labeled photo).\n\n"
    return note + method_table(runs, "source_only", names, raw, skip=("oracle",))


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
    if args.target == "camvid":
        require_camvid()
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
