"""Semi-supervised methods on CamVid: 1/8 and 1/4 of the train images labeled, the rest unlabeled.

Each method trains from its packaged config ``semi/<method>`` (``semi/base.yaml``: CamVid at
144x192, 128x160 crops, the fast model from scratch, AdamW 2e-3, 400 iterations, CPU) with
``--labeled`` images labeled (46 = 1/8 or 92 = 1/4 of CamVid's 367 train images, a fixed random
subset) and the other train images as the unlabeled stream; tested on CamVid val.
``labeled_only`` is the baseline (the same labeled images, supervised), ``full`` the reference
with all 367 train images labeled (same model and budget). Runs accumulate in
``results/semi_camvid_<n>[_<iters>it].json`` (a run already there is skipped), so the benchmark
can span sessions; the table is the ``.md`` beside it. ``--set KEY=VALUE ... --tag T`` trains a
variant (recorded as ``method[T]``), e.g. Mean Teacher with a consistency ramp-up.

    .venv/bin/python -m benchmarks.semi_camvid --methods labeled_only,fixmatch --labeled 46
    .venv/bin/python -m benchmarks.semi_camvid --methods mean_teacher --labeled 46 \
        --set method.params.rampup_iters=200 --tag rampup200
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.common import (
    RESULTS,
    final_losses,
    method_table,
    require_camvid,
    train_record,
    write_result,
)
from benchmarks.uda_synthcity import CAMVID
from segshift.config import load_config
from segshift.data.label_space import get_label_space


def run_name(method: str, n_labeled: int, seed: int, iters: int | None, tag: str | None) -> str:
    return (
        f"{method}_n{n_labeled}_s{seed}"
        + (f"_{iters}it" if iters else "")
        + (f"_{tag}" if tag else "")
    )


def config_for(
    method: str,
    n_labeled: int,
    seed: int,
    out: Path,
    iters: int | None,
    extra: list[str] = (),
    tag: str | None = None,
):
    overrides = [
        f"data.streams.labeled.root={CAMVID}",
        f"data.streams.unlabeled.root={CAMVID}",
        f"data.val.root={CAMVID}",
        f"output_dir={out}",
        f"seed={seed}",
        f"name={run_name(method, n_labeled, seed, iters, tag)}",
        "train.resume=false",
        "train.progress=plain",
        *extra,
    ]
    if iters is not None:
        overrides += [f"train.iters={iters}", f"train.eval_every={iters}"]
    if method == "full":
        return load_config("semi/labeled_only", [*overrides, "data.streams.labeled.n_labeled=null"])
    return load_config(
        f"semi/{method}", [*overrides, f"data.streams.labeled.n_labeled={n_labeled}"]
    )


SUPERVISED_KEYS = ("ce", "sup", "sup_l", "sup_r")  # labeled_only / most methods / CPS's two


def fit_table(runs: list[dict]) -> str:
    """How far each run fitted its labeled images: its supervised loss over the last quarter of
    the run (CPS: the mean of its two networks'), mean over the seeds that logged it."""
    by_method: dict[str, list[float]] = {}
    for run in runs:
        terms = [v for k, v in run.get("final_losses", {}).items() if k in SUPERVISED_KEYS]
        if terms:
            by_method.setdefault(run["method"], []).append(sum(terms) / len(terms))
    if not by_method:
        return ""
    rows = sorted(by_method.items(), key=lambda kv: sum(kv[1]) / len(kv[1]))
    lines = [
        "",
        "",
        "Supervised loss on the labeled batches over the last quarter of the run (log lines at",
        "steps 300-400, mean over seeds): how far each method fitted its labeled images.",
        "",
        "| method | supervised loss | runs |",
        "|---|---|---|",
    ]
    lines += [f"| {m} | {sum(v) / len(v):.3f} | {len(v)} |" for m, v in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", required=True, help="comma-separated: labeled_only,full,...")
    parser.add_argument("--labeled", type=int, default=46, help="labeled train images (46 = 1/8)")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--iters", type=int, default=None, help="override the configs' budget")
    parser.add_argument("--out", default="runs/semi_bench")
    parser.add_argument("--set", nargs="*", default=[], help="config overrides for a variant")
    parser.add_argument("--tag", default=None, help="variant name, recorded as method[tag]")
    args = parser.parse_args()
    if args.set and not args.tag:
        raise SystemExit("--set trains a variant: name it with --tag")
    require_camvid()
    name = f"semi_camvid_{args.labeled}" + (f"_{args.iters}it" if args.iters else "")
    raw = RESULTS / f"{name}.json"
    runs = json.loads(raw.read_text()) if raw.is_file() else []
    names = list(get_label_space("camvid").class_names)
    title = f"CamVid semi-supervised, {args.labeled} of 367 train images labeled"
    note = (
        f"`labeled_only`: the {args.labeled} labeled images alone (`supervised`); `full`: all 367 "
        f"labeled (reference). Every run: fast model from scratch, {args.iters or 400} iterations, "
        "CamVid val at 144x192.\n\n"
    )

    def save() -> None:
        raw.write_text(json.dumps(runs, indent=1))
        table = method_table(runs, "labeled_only", names, raw, ("full",)) + fit_table(runs)
        write_result(name, title, note + table)

    for seed in map(int, args.seeds.split(",")):
        for method in args.methods.split(","):
            label = f"{method}[{args.tag}]" if args.tag else method
            if any(r["method"] == label and r["seed"] == seed for r in runs):
                continue
            cfg = config_for(
                method, args.labeled, seed, Path(args.out), args.iters, args.set, args.tag
            )
            runs.append(train_record(cfg, label, seed))
            save()
    if backfill_losses(runs, Path(args.out), args.labeled, args.iters):
        save()


def backfill_losses(runs: list[dict], out: Path, n_labeled: int, iters: int | None) -> bool:
    """Records from before ``final_losses`` was kept: read it from the run's own log, if that
    run directory is still here. True if any record changed."""
    changed = False
    for run in runs:
        if "final_losses" in run:
            continue
        method, _, tag = run["method"].rstrip("]").partition("[")
        log = out / run_name(method, n_labeled, run["seed"], iters, tag or None) / "log.jsonl"
        if not log.is_file():
            continue
        rows = [json.loads(x) for x in log.read_text().splitlines()]
        if not any(r["kind"] == "train" and r["step"] == run["iters"] for r in rows):
            continue  # not the run this record came from
        run["final_losses"] = final_losses(rows, run["iters"])
        changed = True
    return changed


if __name__ == "__main__":
    main()
