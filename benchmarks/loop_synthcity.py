"""The synthetic-teacher loop on synthcity: teacher, pseudo-label quality and student mIoU per round.

Runs ``configs/pipeline/synthcity.yaml`` (source-only and oracle baselines, an FDA teacher, two
rounds of confidence-0.5 pseudo-labels and a student on sim + pseudo-labeled target starting from
the previous model; every stage a 400-iteration uda/ CPU run) on synthcity sim -> photo, or with
``--target camvid`` on synthcity sim -> CamVid (CamVid train images as the unlabeled target at
144x192, CamVid val for testing; the oracle trains on CamVid train's labels). The pipeline
directory is ``runs/loop_bench/<target>``; a rerun resumes where it stopped (stages are cached),
so the benchmark can span sessions. The stage table, CSV and plot are copied to
``results/loop_synthcity[_camvid].{md,csv,png}`` after the run.

    .venv/bin/python -m benchmarks.loop_synthcity --target photo
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from benchmarks.common import RESULTS, require_camvid, write_result
from benchmarks.uda_synthcity import CAMVID, CAMVID_TARGET
from segshift.pipeline.demo import generate_demo_data
from segshift.pipeline.loop import run_pipeline


def overrides_for(target: str, roots: dict[str, Path], out: Path) -> list[str]:
    common = [f"output_dir={out}", f"name={target}", "train.progress=plain"]
    common.append(f"data.streams.source.root={roots['sim_train']}")
    if target == "photo":
        return common + [
            f"data.streams.target.root={roots['photo_train']}",
            f"data.val.root={roots['photo_val']}",
            f"pipeline.pseudo_label.labels={{name: folder, root: {roots['photo_train']}}}",
        ]
    return common + [
        *CAMVID_TARGET,
        f"pipeline.pseudo_label.labels={{name: camvid, root: {CAMVID}, split: train}}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", choices=["photo", "camvid"], default="photo")
    parser.add_argument("--data", default="runs/uda_bench/data")
    parser.add_argument("--out", default="runs/loop_bench")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    if args.target == "camvid":
        require_camvid()
    roots = generate_demo_data(Path(args.data))
    overrides = overrides_for(args.target, roots, Path(args.out))
    if args.rounds is not None:
        overrides.append(f"pipeline.rounds={args.rounds}")
    run_pipeline("pipeline/synthcity", overrides)
    run_dir = Path(args.out) / args.target
    name = "loop_synthcity" if args.target == "photo" else "loop_synthcity_camvid"
    summary = (run_dir / "summary.md").read_text().split("\n", 2)[2]
    body = (
        "Pipeline `pipeline/synthcity`: every stage 400 iterations of the fast model; the stage "
        "configs are in the run's `*/config.yaml`.\n\n"
        + summary
        + f"\nPlot: `{name}.png` (mIoU per round, 0 = teacher; baselines as lines).\n"
    )
    write_result(name, f"Synthetic-teacher loop, synthcity sim -> {args.target}", body)
    for suffix in ("csv", "png"):
        shutil.copyfile(run_dir / f"summary.{suffix}", RESULTS / f"{name}.{suffix}")
    shutil.copyfile(run_dir / "pseudo_1" / "examples.png", RESULTS / f"{name}_pseudo_1.png")


if __name__ == "__main__":
    main()
