"""The demo: synthcity ``sim -> photo``, source-only against the target oracle.

Generates small synthcity sets (cached in ``OUT/data``), trains the fast model on ``sim``
(source-only) and on ``photo`` (oracle), evaluates both on ``photo`` val and prints the tables and
the gap that domain adaptation has to close.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from segshift.config import load_config
from segshift.data.synthcity import generate
from segshift.engine.trainer import Trainer
from segshift.evaluation import MetricsTable

SIZE = (128, 160)
SETS = {  # name: (style, images, seed)
    "sim_train": ("sim", 240, 0),
    "photo_train": ("photo", 240, 1),
    "photo_val": ("photo", 60, 2),
}


def generate_demo_data(data_dir: Path) -> dict[str, Path]:
    """The demo's synthcity sets under ``data_dir`` (regenerated only when missing or changed)."""
    roots = {}
    for name, (style, n, seed) in SETS.items():
        root = data_dir / name
        manifest = root / "manifest.json"
        wanted = {"style": style, "n": n, "seed": seed, "size": list(SIZE)}
        if manifest.is_file():
            have = json.loads(manifest.read_text())
            if all(have.get(k) == v for k, v in wanted.items()):
                roots[name] = root
                continue
        generate(root, style=style, n=n, size=SIZE, seed=seed)
        roots[name] = root
    return roots


def _train(config: str, train_root: Path, val_root: Path, out: Path, iters: int | None) -> dict:
    overrides = [
        f"data.streams.labeled.root={train_root}",
        f"data.val.root={val_root}",
        f"output_dir={out}",
        "train.resume=false",
    ]
    if iters is not None:
        overrides += [f"train.iters={iters}", f"train.eval_every={iters}"]
    cfg = load_config(f"demo/{config}", overrides)
    return Trainer(cfg).fit()  # evaluated on photo val at the last step


def run_demo(out: str | Path = "runs/demo", iters: int | None = None) -> dict[str, float]:
    """Run the whole demo; return the mIoUs (fractions) and their ratio."""
    out = Path(out)
    start = time.perf_counter()
    roots = generate_demo_data(out / "data")
    print(f"synthcity data ready in {time.perf_counter() - start:.1f}s: {out / 'data'}")
    results = {}
    for name, train_set in (("source_only", "sim_train"), ("oracle", "photo_train")):
        print(f"\n=== training {name} on {train_set}, evaluating on photo_val ===")
        results[name] = _train(name, roots[train_set], roots["photo_val"], out, iters)
    from segshift.data.label_space import get_label_space

    names = get_label_space("camvid").class_names
    for name, result in results.items():
        table = MetricsTable(result, names)
        print(f"\n--- {name} (tested on synthcity photo val) ---")
        print(table.arrow())
        print(table.grid())
    source, oracle = results["source_only"]["miou"], results["oracle"]["miou"]
    ratio = source / oracle if oracle > 0 else float("nan")
    print(
        f"\nsource-only mIoU {100 * source:.2f} | oracle mIoU {100 * oracle:.2f} | "
        f"gap {100 * (oracle - source):.2f} points | source-only / oracle = {ratio:.2f}"
    )
    print(f"demo wall time: {time.perf_counter() - start:.1f}s; runs in {out}")
    return {"source_only": source, "oracle": oracle, "ratio": ratio}
