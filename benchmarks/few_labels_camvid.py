"""Data dependency: mIoU against the number of labeled CamVid images, supervised-only vs the loop.

Runs ``segshift sweep pipeline/few_labels`` over ``data.streams.labeled.n_labeled`` on synthcity
sim -> CamVid: for each count N, N labeled CamVid train images (a fixed random subset), the other
367 - N as unlabeled target images, CamVid val for testing (all at 144x192, 128x160 crops, the
fast model, 400 iterations per stage). Each point is one pipeline: the supervised-only baseline
(the N labeled images alone), the teacher (sim + the N labeled images, one batch) and one student
round (sim + pseudo-labeled + labeled CamVid, half of each batch pseudo-labeled, confidence >=
0.5). All 367 images labeled leave nothing to pseudo-label, so the full-label reference is the
CamVid oracle of ``loop_synthcity --target camvid`` (same model, budget and resolution).

The sweep directory is ``runs/few_labels_bench``; finished points are reused, so the benchmark
can span sessions. Its table, CSV and plot are copied to ``results/few_labels_camvid.*``.

    .venv/bin/python -m benchmarks.few_labels_camvid --counts 23,46,92,184 --seeds 0
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from benchmarks.common import RESULTS, require_camvid, write_result
from benchmarks.uda_synthcity import CAMVID, CAMVID_TARGET
from segshift.pipeline.demo import generate_demo_data
from segshift.pipeline.sweep import run_sweep


def camvid_overrides(sim: Path) -> list[str]:
    """Every stage: sim source, CamVid train as the labeled subset and as the unlabeled rest."""
    labeled = [o.replace("streams.target.", "streams.labeled.") for o in CAMVID_TARGET]
    labeled = [o for o in labeled if o.startswith("data.streams.labeled.")]
    return [
        f"data.streams.source.root={sim}",
        *CAMVID_TARGET,
        *labeled,
        "train.progress=plain",
        f"pipeline.pseudo_label.labels={{name: camvid, root: {CAMVID}, split: train}}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", default="23,46,92,184")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--data", default="runs/uda_bench/data")
    parser.add_argument("--out", default="runs/few_labels_bench")
    args = parser.parse_args()
    require_camvid()
    roots = generate_demo_data(Path(args.data))
    out = Path(args.out)
    sets = [f"data.streams.labeled.n_labeled={args.counts}", f"seed={args.seeds}"]
    run_sweep("pipeline/few_labels", sets, camvid_overrides(roots["sim_train"]), out=out)
    table = (out / "sweep.md").read_text().split("\n", 2)[2]
    body = (
        "`segshift sweep pipeline/few_labels` on synthcity sim -> CamVid (144x192): mIoU on "
        "CamVid val per stage of each point. `baseline_supervised_only` = the N labeled CamVid "
        "images alone; `teacher` = sim + the N labeled images; `student_1` = sim + pseudo-labeled "
        "(the other 367 - N images) + labeled, from the teacher. Every stage: fast model, 400 "
        "iterations. Full-label reference (all 367 labeled, same model and budget): the CamVid "
        "oracle of `loop_synthcity_camvid.md`.\n\n"
        + table
        + "\nPer-run numbers with per-class IoU: `few_labels_camvid.csv`; plot: "
        "`few_labels_camvid.png`; each point's stage table (pseudo-label quality, coverage): "
        f"`{out}/<point>/summary.md`.\n"
    )
    write_result("few_labels_camvid", "mIoU against labeled CamVid images (synthcity sim)", body)
    for suffix in ("csv", "png"):
        shutil.copyfile(out / f"sweep.{suffix}", RESULTS / f"few_labels_camvid.{suffix}")


if __name__ == "__main__":
    main()
