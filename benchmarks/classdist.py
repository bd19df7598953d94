"""Class-distribution contrast (segshift's own loss) measured: each method with and without it.

Pairs, each trained from its packaged configs (``<config>`` vs ``<config>_classdist``, the same
data, model, optimiser and budget; ``methods/common/classdist.py``):

- ``uda``: synthcity sim -> CamVid (``uda/base.yaml``: 240 sim images at 128x160, CamVid train
  as the unlabeled target at 144x192, CamVid val): ``source_only`` and ``dacs``;
- ``semi``: CamVid with ``--labeled`` (46 = 1/8) train images labeled, the rest unlabeled
  (``semi/base.yaml``): ``labeled_only`` and ``unimatch``.

Every run is recorded in ``results/classdist.json`` as soon as it finishes (``_<iters>it`` in the
name with ``--iters``) and skipped when already there, so the benchmark can be stopped and
continued in another session; ``results/classdist.md`` is rewritten after every run: per tier and
experiment the mIoU table, and per pair the mean and spread over seeds of the per-seed mIoU
difference. ``--set`` trains every run with extra overrides, recorded under ``--tier`` (e.g. the
pretrained tier below); tiers never mix in one table.

Image embeddings (uda runs): the mean-pooled decoder features ("feat", the features the loss
shapes; the projection head is left out, so both runs of a pair are read the same way) of 100
sim train images and 100 CamVid val images, from the final model. Recorded per run: ``cross_knn``
(the share of the 10 nearest neighbours, by cosine, of each CamVid image that are sim images:
0.5 when the domains are mixed, 0 when apart) and ``nn_hist_sim`` (the cosine between the class
histograms, from the ground truth, of each CamVid image and its nearest sim image: do the
cross-domain neighbours show the same classes?), and their 2-D PCA coordinates, from which
``results/classdist_embeddings_<tier>.png`` is drawn (seed 0, without / with the loss).

    .venv/bin/python -m benchmarks.classdist --seeds 0,1,2
    .venv/bin/python -m benchmarks.classdist --seeds 0,1,2 --tier pretrained \\
        --set model.encoder=tu-tf_efficientnet_lite0 model.encoder_weights=imagenet
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from benchmarks.common import RESULTS, method_table, train_record, write_result
from benchmarks.uda_synthcity import CAMVID, CAMVID_TARGET
from segshift.config import load_config
from segshift.data import build_dataset
from segshift.data.label_space import get_label_space
from segshift.methods.common.classdist import class_histograms, histogram_similarity
from segshift.models import build_model, load_trained_weights
from segshift.pipeline.demo import generate_demo_data

PAIRS = {"uda": ("source_only", "dacs"), "semi": ("labeled_only", "unimatch")}
EMBEDDED = 100  # images per domain in the embedding analysis
NEIGHBOURS = 10
SUFFIX = "_classdist"


def run_name(experiment: str, method: str, seed: int, tier: str, iters: int | None) -> str:
    return f"{experiment}_{method}_{tier}_s{seed}" + (f"_{iters}it" if iters else "")


def config_for(args: argparse.Namespace, roots: dict, experiment: str, method: str, seed: int):
    """The run config of ``method`` (a packaged config name under uda/ or semi/)."""
    common = [
        f"output_dir={args.out}",
        f"seed={seed}",
        f"name={run_name(experiment, method, seed, args.tier, args.iters)}",
        "train.resume=false",
        "train.progress=plain",
    ]
    if args.iters is not None:
        common += [f"train.iters={args.iters}", f"train.eval_every={args.iters}"]
    camvid = str(args.camvid)
    if experiment == "uda":
        data = [f"data.streams.source.root={roots['sim_train']}"]
        data += [o.replace(str(CAMVID), camvid) for o in CAMVID_TARGET]
    else:
        data = [f"data.streams.{s}.root={camvid}" for s in ("labeled", "unlabeled")]
        data += [f"data.val.root={camvid}", f"data.streams.labeled.n_labeled={args.labeled}"]
    return load_config(f"{experiment}/{method}", [*data, *common, *args.set])


@torch.no_grad()
def pooled_features(
    model: torch.nn.Module, dataset, count: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """(count, C_f) mean-pooled decoder features and (count, num_classes) label histograms of the
    first ``count`` images of ``dataset`` (evaluation view)."""
    feats, hists = [], []
    for index in range(min(count, len(dataset))):
        sample = dataset[index]
        feat = model(sample["image"][None], return_feat=True)["feat"]
        feats.append(feat.mean(dim=(2, 3))[0])
        hists.append(class_histograms(sample["label"][None].long(), num_classes)[0])
    return torch.stack(feats).numpy(), torch.stack(hists).numpy()


def embedding_stats(cfg: DictConfig, run_dir: Path, num_classes: int) -> dict:
    """cross_knn, nn_hist_sim and the PCA coordinates of the sim and CamVid images (see the
    module docstring), from the final model of ``run_dir``."""
    model = build_model(cfg.model, num_classes)
    load_trained_weights(model, run_dir)
    model.eval()
    source_node = copy.deepcopy(cfg.data.streams.source)
    source_node.crop_size = None
    source = build_dataset(source_node, False)
    source_feat, source_hist = pooled_features(model, source, EMBEDDED, num_classes)
    target = build_dataset(cfg.data.val, False)
    target_feat, target_hist = pooled_features(model, target, EMBEDDED, num_classes)
    feats = np.concatenate([source_feat, target_feat])
    unit = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    cosine = unit @ unit.T
    n_source = len(source_feat)
    np.fill_diagonal(cosine, -np.inf)
    targets = np.arange(n_source, len(feats))
    nearest = np.argsort(-cosine[targets], axis=1)[:, :NEIGHBOURS]
    cross_knn = float((nearest < n_source).mean())
    best_source = np.argmax(cosine[targets, :n_source], axis=1)
    sim = histogram_similarity(torch.from_numpy(target_hist), torch.from_numpy(source_hist))
    nn_hist_sim = float(sim[np.arange(len(targets)), best_source].mean())
    centred = feats - feats.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    pca = centred @ axes[:2].T
    return {
        "cross_knn": cross_knn,
        "nn_hist_sim": nn_hist_sim,
        "pca": np.round(pca, 4).tolist(),
        "domains": ["sim"] * n_source + ["camvid"] * len(target_feat),
    }


def pair_table(runs: list[dict], experiment: str) -> str:
    """Per pair: both means, and the mean and std over seeds of (with - without) per seed."""
    lines = [
        "| pair | without | with classdist | difference (mean) | spread (std) | seeds |",
        "|---|---|---|---|---|---|",
    ]
    by = {(r["method"], r["seed"]): r for r in runs}
    for base in PAIRS[experiment]:
        seeds = sorted(s for m, s in by if m == base and (base + SUFFIX, s) in by)
        if not seeds:
            continue
        without = [100 * by[base, s]["miou"] for s in seeds]
        with_ = [100 * by[base + SUFFIX, s]["miou"] for s in seeds]
        diffs = [b - a for a, b in zip(without, with_, strict=True)]
        spread = f"{statistics.stdev(diffs):.2f}" if len(diffs) > 1 else "-"
        lines.append(
            f"| {base} | {statistics.mean(without):.2f} | {statistics.mean(with_):.2f} | "
            f"{statistics.mean(diffs):+.2f} | {spread} | {','.join(map(str, seeds))} |"
        )
    embedded = [r for r in runs if "embedding" in r]
    if embedded:
        lines += ["", "Image embeddings (mean over seeds; see the script's docstring):", ""]
        lines += ["| method | cross_knn | nn_hist_sim | seeds |", "|---|---|---|---|"]
        for method in sorted({r["method"] for r in embedded}):
            group = [r["embedding"] for r in embedded if r["method"] == method]
            knn = statistics.mean(e["cross_knn"] for e in group)
            hist = statistics.mean(e["nn_hist_sim"] for e in group)
            lines.append(f"| {method} | {knn:.3f} | {hist:.3f} | {len(group)} |")
    return "\n".join(lines)


def draw_embeddings(runs: list[dict], path: Path) -> bool:
    """PCA of sim and CamVid embeddings, seed 0 (the lowest seed run), without / with the loss,
    one row per uda pair; False when no pair has both runs embedded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for base in PAIRS["uda"]:
        pair = [
            min((r for r in runs if r["method"] == m and "embedding" in r),
                key=lambda r: r["seed"], default=None)
            for m in (base, base + SUFFIX)
        ]  # fmt: skip
        if all(pair):
            rows.append(pair)
    if not rows:
        return False
    fig, axes = plt.subplots(len(rows), 2, figsize=(9, 4.2 * len(rows)), squeeze=False)
    for row, pair in zip(axes, rows, strict=True):
        for ax, run in zip(row, pair, strict=True):
            points = np.array(run["embedding"]["pca"])
            domains = np.array(run["embedding"]["domains"])
            for domain, colour in (("sim", "tab:blue"), ("camvid", "tab:orange")):
                chosen = points[domains == domain]
                ax.scatter(chosen[:, 0], chosen[:, 1], s=10, c=colour, label=domain, alpha=0.7)
            e = run["embedding"]
            ax.set_title(
                f"{run['method']} (seed {run['seed']}): mIoU {100 * run['miou']:.1f}\n"
                f"cross_knn {e['cross_knn']:.2f}, nn_hist_sim {e['nn_hist_sim']:.2f}",
                fontsize=9,
            )
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].legend(fontsize=8)
    fig.suptitle("Pooled decoder features, PCA: sim train vs CamVid val images", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def report(runs: list[dict], name: str, raw: Path, labeled: int) -> None:
    names = list(get_label_space("camvid").class_names)
    sections = []
    for tier in sorted({r["tier"] for r in runs}):
        for experiment in PAIRS:
            group = [r for r in runs if r["tier"] == tier and r["experiment"] == experiment]
            if not group:
                continue
            baseline = PAIRS[experiment][0]
            where = (
                "synthcity sim -> CamVid"
                if experiment == "uda"
                else f"CamVid, {labeled} of 367 train images labeled"
            )
            sections += [f"## {where}, tier `{tier}`", "", pair_table(group, experiment), ""]
            sections += [method_table(group, baseline, names, raw), ""]
        picture = RESULTS / f"{name}_embeddings_{tier}.png"
        if draw_embeddings([r for r in runs if r["tier"] == tier], picture):
            sections += [f"Embeddings: ![{tier}]({picture.name})", ""]
    note = (
        "Each method with and without `method.params.classdist` (its packaged `_classdist` "
        "config: weight 0.1, temperature 0.1, cosine similarity, queue 256, confidence 0.9).\n\n"
    )
    write_result(name, "Class-distribution contrast: with and without", note + "\n".join(sections))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiments", default="uda,semi", help="comma-separated: uda,semi")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--iters", type=int, default=None, help="override the configs' budget")
    parser.add_argument("--labeled", type=int, default=46, help="semi: labeled images (1/8)")
    parser.add_argument("--camvid", type=Path, default=CAMVID)
    parser.add_argument("--data", default="runs/uda_bench/data", help="synthcity sets (cached)")
    parser.add_argument("--out", default="runs/classdist_bench")
    parser.add_argument("--set", nargs="*", default=[], help="config overrides for every run")
    parser.add_argument("--tier", default="scratch", help="name of the --set variant")
    args = parser.parse_args()
    if args.set and args.tier == "scratch":
        parser.error("--set trains a variant: name it with --tier")
    if not args.camvid.is_dir():
        raise SystemExit(f"CamVid not found at {args.camvid} (give --camvid)")
    experiments = args.experiments.split(",")
    unknown = sorted(set(experiments) - set(PAIRS))
    if unknown:
        parser.error(f"--experiments: unknown {unknown}; known: {', '.join(PAIRS)}")
    roots = generate_demo_data(Path(args.data)) if "uda" in experiments else {}
    name = "classdist" + (f"_{args.iters}it" if args.iters else "")
    raw = RESULTS / f"{name}.json"
    runs = json.loads(raw.read_text()) if raw.is_file() else []
    num_classes = get_label_space("camvid").num_classes
    for seed in map(int, args.seeds.split(",")):
        for experiment in experiments:
            for base in PAIRS[experiment]:
                for method in (base, base + SUFFIX):
                    key = (experiment, method, seed, args.tier)
                    if any((r["experiment"], r["method"], r["seed"], r["tier"]) == key
                           for r in runs):  # fmt: skip
                        continue
                    cfg = config_for(args, roots, experiment, method, seed)
                    record = train_record(cfg, method, seed)
                    record.update(experiment=experiment, tier=args.tier, overrides=args.set)
                    if experiment == "uda":
                        run_dir = Path(cfg.output_dir) / cfg.name
                        record["embedding"] = embedding_stats(cfg, run_dir, num_classes)
                    runs.append(record)
                    raw.write_text(json.dumps(runs, indent=1))
                    report(runs, name, raw, args.labeled)


if __name__ == "__main__":
    main()
