"""Label-free scores against the truth: do they rank model states like the target mIoU does?

Every model state (each run's kept step checkpoints of ``train.keep_checkpoints_every`` and its
latest / best checkpoints, one per step) is scored with every score of
`segshift.evaluation.scores` on the run's unlabeled target images (its unlabeled stream: the
target *train* images, at most ``--max-images``, spread evenly; labels never read) and
evaluated on the target val set (its ``data.val``: the true mIoU). Then, per split:

- Spearman and Kendall (tau-b) rank correlation of each score with the true mIoU **across
  runs** (each run's last state: which method / seed is best), over **all states**, and
  **along training** (within each run with >= 3 states, averaged over runs);
- **selection regret** in mIoU points: the true mIoU of the state a score picks minus the best
  state's, per run (checkpoint choice; against picking the last checkpoint) and across runs of
  a seed (method choice by the last states' scores).

Splits (design protocol): ``tune`` = synthcity sim -> photo (scores designed and tuned here),
``holdout`` = synthcity -> CamVid (reported without changing the scores: every state records
the SHA-256 of ``scores.py`` so the table can show the code was the same), ``semi`` = CamVid
semi-supervised runs. Runs come from ``--methods`` (trained here with kept checkpoints, by the
configs of ``benchmarks.uda_synthcity`` / ``benchmarks.semi_camvid``) and/or ``--runs`` (existing
run directories). States accumulate in ``results/score_correlation.json`` (a state already
there is skipped; scores and mIoUs are also cached in each run's ``label_free_scores.json``), so
it can run in the background, be stopped and resumed; ``results/score_correlation.md`` is
rewritten after every state.

    .venv/bin/python -m benchmarks.score_correlation --split tune \
        --methods source_only,oracle,fda,adaptsegnet,advent,minent,dacs --seeds 0,1,2 \
        --keep-every 50
    .venv/bin/python -m benchmarks.score_correlation --split holdout \
        --methods source_only,fda,adaptsegnet,advent,minent,dacs --seeds 0,1,2 --keep-every 50
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
from itertools import combinations
from pathlib import Path

from omegaconf import OmegaConf

import segshift.evaluation.scores as scores_module
from benchmarks.common import RESULTS, write_result
from segshift.config import SCORE_NAMES, Config, merge_into_schema
from segshift.engine.checkpoint import load_checkpoint
from segshift.engine.trainer import Trainer
from segshift.pipeline.scoring import run_checkpoints, score_states
from segshift.pipeline.selection import checkpoint_miou, labeled_node, unlabeled_node

RAW = RESULTS / "score_correlation.json"
SPLITS = {
    "tune": "synthcity sim -> photo",
    "holdout": "synthcity sim -> CamVid",
    "semi": "CamVid semi-supervised",
}


def scores_digest() -> str:
    return hashlib.sha256(Path(scores_module.__file__).read_bytes()).hexdigest()[:16]


# ------------------------------------------------------------------------------ statistics
def ranks(values: list[float]) -> list[float]:
    """Average ranks (1-based; ties share the mean of their ranks)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    result = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            result[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return result


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rho: the Pearson correlation of the average ranks (NaN if one is constant)."""
    rx, ry = ranks(x), ranks(y)
    mx, my = statistics.mean(rx), statistics.mean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    var = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return cov / var if var else math.nan


def kendall(x: list[float], y: list[float]) -> float:
    """Kendall's tau-b (ties in either list corrected; NaN if one is constant)."""
    concordant = discordant = ties_x = ties_y = 0
    for i, j in combinations(range(len(x)), 2):
        dx, dy = x[i] - x[j], y[i] - y[j]
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            ties_x += 1
        elif dy == 0:
            ties_y += 1
        elif (dx > 0) == (dy > 0):
            concordant += 1
        else:
            discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denominator if denominator else math.nan


# ------------------------------------------------------------------------------ states
def run_config(run_dir: Path, overrides: list[str] = ()):
    """A run's config (from its checkpoint) with dotted ``overrides`` (e.g. moved data roots)."""
    stored = load_checkpoint(run_checkpoints(run_dir)[-1])[0]["config"]
    return merge_into_schema(Config(), stored, OmegaConf.from_dotlist(list(overrides)))


def measure_run(cfg, run_dir: Path, meta: dict, states: list[dict], max_images: int, save) -> None:
    """Score and evaluate every state (one per step) of ``run_dir`` (config ``cfg``) not yet
    in ``states``."""
    data, source = unlabeled_node(cfg), labeled_node(cfg)
    done = {(s["run"], s["step"]) for s in states}
    seen = set()
    for checkpoint in run_checkpoints(run_dir):
        step = load_checkpoint(checkpoint)[0].get("step")
        if step in seen or (str(run_dir), step) in done:
            seen.add(step)
            continue
        seen.add(step)
        report = score_states([checkpoint], data, source=source, max_images=max_images)
        record = {
            **meta,
            "run": str(run_dir),
            "step": step,
            "last_step": cfg.train.iters,
            "checkpoint": checkpoint.name,
            "scores": report["states"][0]["scores"],
            "miou": checkpoint_miou(cfg, checkpoint),
            "images": report["data"]["images"],
            "scores_sha256": scores_digest(),
        }
        states.append(record)
        print(f"{run_dir.name} step {step}: mIoU {100 * record['miou']:.2f} {record['scores']}")
        save()


def train_run(split: str, method: str, seed: int, args: argparse.Namespace) -> Path:
    """Train (or resume, or find finished) one benchmark run with kept checkpoints."""
    extra = [f"train.keep_checkpoints_every={args.keep_every}", *args.set]
    if split == "semi":
        from benchmarks.semi_camvid import config_for

        cfg = config_for(method, args.labeled, seed, Path(args.out), args.iters, extra)
    else:
        from benchmarks.uda_synthcity import config_for
        from segshift.pipeline.demo import generate_demo_data

        roots = generate_demo_data(Path(args.data))
        target = "photo" if split == "tune" else "camvid"
        cfg = config_for(method, roots, Path(args.out), seed, args.iters, target, extra)
    cfg.train.resume = True  # a benchmark run goes on where it stopped
    run_dir = Path(cfg.output_dir) / cfg.name
    if not (run_dir / "export" / "model.safetensors").is_file():
        Trainer(cfg).fit()
    return run_dir


# ------------------------------------------------------------------------------ analysis
def _correlations(states: list[dict], name: str) -> tuple[float, float, int]:
    xs, ys = [s["scores"][name] for s in states], [s["miou"] for s in states]
    if len(states) < 3:
        return math.nan, math.nan, len(states)
    return spearman(xs, ys), kendall(xs, ys), len(states)


def analyse(states: list[dict]) -> dict:
    """Per score: correlations across runs (last states), over all states, along training,
    and the selection regrets (mIoU points)."""
    runs: dict[str, list[dict]] = {}
    for state in states:
        runs.setdefault(state["run"], []).append(state)
    for group in runs.values():
        group.sort(key=lambda s: s["step"])
    last = [group[-1] for group in runs.values()]
    seeds: dict[int, list[dict]] = {}
    for state in last:
        seeds.setdefault(state["seed"], []).append(state)
    out = {}
    for name in SCORE_NAMES:
        if not all(name in s["scores"] for s in states):
            continue
        along = [
            spearman(*zip(*[(s["scores"][name], s["miou"]) for s in g]))
            for g in runs.values()
            if len(g) >= 3
        ]
        along = [v for v in along if not math.isnan(v)]
        picked = [
            max(g, key=lambda s: s["scores"][name])["miou"] - max(s["miou"] for s in g)
            for g in runs.values()
        ]
        method_pick = [
            max(g, key=lambda s: s["scores"][name])["miou"] - max(s["miou"] for s in g)
            for g in seeds.values()
            if len(g) > 1
        ]
        out[name] = {
            "runs": _correlations(last, name),
            "states": _correlations(states, name),
            "along": (statistics.mean(along) if along else math.nan, len(along)),
            "regret_checkpoint": 100 * statistics.mean(picked),
            "regret_method": 100 * statistics.mean(method_pick) if method_pick else math.nan,
        }
    last_regret = [g[-1]["miou"] - max(s["miou"] for s in g) for g in runs.values()]
    return {
        "scores": out,
        "runs": len(runs),
        "states": len(states),
        "last_regret": 100 * statistics.mean(last_regret),
    }


def _f(value: float, digits: int = 2) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def report(states: list[dict]) -> str:
    lines = [
        "Scores are oriented higher = better expected mIoU; correlations are with the true "
        "target-val mIoU. Regret: true mIoU of the state a score picks minus the best state's "
        "(mIoU points, 0 = perfect). `checkpoint`: per run, among its states; `method`: per "
        "seed, among the runs' last states. Targets (issue 22): Spearman >= 0.8 across runs "
        "on the hold-out and checkpoint regret <= 1 mIoU.",
    ]
    for split, title in SPLITS.items():
        group = [s for s in states if s["split"] == split]
        if not group:
            continue
        result = analyse(group)
        digests = sorted({s["scores_sha256"] for s in group})
        lines += [
            "",
            f"## {split}: {title}",
            "",
            f"{result['runs']} runs, {result['states']} model states, methods "
            f"{', '.join(sorted({s['method'] for s in group}))}; scores.py SHA-256 "
            f"{', '.join(digests)}"
            + (
                " (tune split: the scores were designed here)"
                if split == "tune"
                else " (the scores were not changed for this split)"
                if split == "holdout"
                else ""
            )
            + f". Picking the last checkpoint: regret {_f(result['last_regret'])}.",
            "",
            "| score | Spearman runs | Kendall runs | Spearman states | Kendall states | "
            "Spearman along training (runs) | regret checkpoint | regret method |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, row in result["scores"].items():
            rho, tau, n = row["runs"]
            rho_s, tau_s, n_s = row["states"]
            along, n_along = row["along"]
            lines.append(
                f"| {name} | {_f(rho)} (n={n}) | {_f(tau)} | {_f(rho_s)} (n={n_s}) | {_f(tau_s)} "
                f"| {_f(along)} ({n_along}) | {_f(row['regret_checkpoint'])} | "
                f"{_f(row['regret_method'])} |"
            )
    commands = sorted({s["command"] for s in states})
    lines += ["", "States accumulate (results/score_correlation.json); they came from:", ""]
    lines += [f"- `{c}`" for c in commands]
    return "\n".join(lines)


def main() -> None:
    import sys

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", choices=list(SPLITS), required=True)
    parser.add_argument("--methods", default="", help="train these (comma-separated)")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--runs", nargs="*", default=[], help="existing run directories")
    parser.add_argument("--iters", type=int, default=None, help="override the configs' budget")
    parser.add_argument("--keep-every", type=int, default=50, help="kept checkpoint spacing")
    parser.add_argument("--labeled", type=int, default=46, help="semi: labeled CamVid images")
    parser.add_argument("--max-images", type=int, default=64, help="target images scored")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        help="config override (training; --runs: e.g. moved roots)",
    )
    parser.add_argument("--data", default="runs/uda_bench/data", help="synthcity data")
    parser.add_argument("--out", default="runs/score_bench")
    parser.add_argument(
        "--raw", default=str(RAW), help="results JSON (accumulates; its .md is written beside)"
    )
    args = parser.parse_args()
    raw = Path(args.raw)
    states = json.loads(raw.read_text()) if raw.is_file() else []
    command = " ".join(["python -m benchmarks.score_correlation", *sys.argv[1:]])

    def save() -> None:
        raw.write_text(json.dumps(states, indent=1))
        title = "Label-free scores against the true target mIoU"
        if raw.resolve().parent == RESULTS.resolve():
            write_result(raw.stem, title, report(states))
        else:  # a trial elsewhere: its table beside its JSON
            raw.with_suffix(".md").write_text(f"# {title}\n\n{report(states)}\n")

    runs = [(Path(r), {"method": Path(r).name, "seed": 0}) for r in args.runs]
    for seed in map(int, args.seeds.split(",")):
        for method in filter(None, args.methods.split(",")):
            runs.append(
                (train_run(args.split, method, seed, args), {"method": method, "seed": seed})
            )
    for run_dir, meta in runs:
        cfg = run_config(run_dir, args.set)
        meta = {**meta, "seed": int(cfg.seed), "split": args.split, "command": command}
        measure_run(cfg, run_dir, meta, states, args.max_images, save)
    if states:
        save()


if __name__ == "__main__":
    main()
