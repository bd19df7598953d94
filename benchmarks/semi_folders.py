"""The folder-only semi-supervised case: 20 labeled + 200 unlabeled synthcity photo images.

A user's data as plain folders (``configs/semi/folders.yaml``): ``labeled/`` (images, masks,
classes.yaml), ``unlabeled/`` (just images), ``val/`` (100 labeled images, another seed). Images
are 128x160 synthcity ``photo`` scenes; the config resizes them to 144x192 (its default) and
crops 128x160, fast model from scratch, 400 iterations. ``labeled_only`` trains on the 20
labeled images, ``full`` on all 220 with their labels (the reference: what the unlabeled images
would give if they were labeled), each other method on 20 labeled + 200 unlabeled.

    .venv/bin/python -m benchmarks.semi_folders --methods labeled_only,full,fixmatch
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from omegaconf import OmegaConf
from PIL import Image

from benchmarks.common import RESULTS, method_table, train_record, write_result
from segshift.config import load_config
from segshift.data.synthcity import CLASSES, generate, render_sample

SIZE = (128, 160)


def make_data(root: Path) -> dict[str, Path]:
    """labeled/ (20), unlabeled/ (200 plain images), all/ (the 220 with masks), val/ (100)."""
    # labeled/ = the first 20 scenes of all/, so that `full` = labeled + the unlabeled images
    labeled = generate(root / "labeled", "photo", n=20, size=SIZE, seed=13)
    val = generate(root / "val", "photo", n=100, size=SIZE, seed=12)
    everything = generate(root / "all", "photo", n=220, size=SIZE, seed=13)
    unlabeled = root / "unlabeled"
    unlabeled.mkdir(exist_ok=True)
    for i in range(200):  # the same scenes as all/ 20..219, without their masks
        image, _ = render_sample("photo", SIZE, seed=13, index=20 + i)
        Image.fromarray(image).save(unlabeled / f"frame_{i:04d}.png")
    return {"labeled": labeled, "unlabeled": unlabeled, "all": everything, "val": val}


def config_for(method: str, data: dict[str, Path], seed: int, out: Path):
    overrides = [
        f"data.streams.labeled.root={data['all' if method == 'full' else 'labeled']}",
        f"data.streams.unlabeled.root={data['unlabeled']}",
        f"data.val.root={data['val']}",
        f"output_dir={out}",
        f"seed={seed}",
        f"name={method}_s{seed}",
        "train.resume=false",
        "train.progress=plain",
    ]
    if method not in ("labeled_only", "full"):
        return load_config("semi/folders", [*overrides, f"method.name={method}"])
    cfg = load_config("semi/folders", [*overrides, "method.name=supervised"])
    OmegaConf.update(cfg, "method.params", {"stream": "labeled"}, merge=False)  # not unimatch's
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", required=True, help="comma-separated: labeled_only,full,...")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--out", default="runs/semi_folders")
    args = parser.parse_args()
    out = Path(args.out)
    data = make_data(out / "data")
    raw = RESULTS / "semi_folders.json"
    runs = json.loads(raw.read_text()) if raw.is_file() else []
    title = "Folder-only semi-supervised: 20 labeled + 200 unlabeled synthcity photo images"
    note = (
        "Plain folders, `configs/semi/folders.yaml` (fast model from scratch, 400 iterations, "
        "CPU); `labeled_only`: the 20 labeled images; `full`: all 220 labeled (reference); val: "
        "100 other photo scenes.\n\n"
    )
    for seed in map(int, args.seeds.split(",")):
        for method in args.methods.split(","):
            if any(r["method"] == method and r["seed"] == seed for r in runs):
                continue
            shutil.rmtree(out / f"{method}_s{seed}", ignore_errors=True)
            runs.append(train_record(config_for(method, data, seed, out), method, seed))
            raw.write_text(json.dumps(runs, indent=1))
            names = [name for name, _ in CLASSES]
            table = method_table(runs, "labeled_only", names, raw, ("full",))
            write_result("semi_folders", title, note + table)


if __name__ == "__main__":
    main()
