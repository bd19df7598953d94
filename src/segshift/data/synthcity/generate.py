"""Write a synthcity dataset to disk as a segshift "folder" dataset.

Layout: OUT/images/<style>_<index>.png (RGB), OUT/masks/<style>_<index>.png (train ids),
OUT/classes.yaml, OUT/manifest.json. Every sample draws from its own generator seeded by
(seed, style, index), so any index can be regenerated alone and the process pool changes nothing.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import yaml

from segshift.errors import DataError
from segshift.fileio import atomic_write_bytes

from .render import render
from .scene import sample_scene
from .styles import STYLES

GENERATOR_VERSION = "1"
NUM_CLASSES = 11
CLASSES: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("sky", (128, 128, 128)),
    ("building", (128, 0, 0)),
    ("pole", (192, 192, 128)),
    ("road", (128, 64, 128)),
    ("sidewalk", (0, 0, 192)),
    ("tree", (128, 128, 0)),
    ("signsymbol", (192, 128, 128)),
    ("fence", (64, 64, 128)),
    ("car", (64, 0, 128)),
    ("pedestrian", (64, 64, 0)),
    ("bicyclist", (0, 128, 192)),
)
_SAMPLE_FILE = re.compile(r"(sim|photo)_\d{6}\.png|\.(sim|photo)_\d{6}\.png\..*\.tmp")
_STYLE_SALT = {"sim": 0, "photo": 1}  # different styles with one seed must not share layouts


def parse_size(text: str) -> tuple[int, int]:
    """'128x160' -> (128, 160), i.e. (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size must look like HxW, e.g. 128x160; got {text!r}") from None
    if h < 16 or w < 16:
        raise ValueError(f"size must be at least 16x16; got {text!r}")
    return h, w


def sample_name(style: str, index: int) -> str:
    return f"{style}_{index:06d}"


def render_sample(
    style: str, size: tuple[int, int], seed: int, index: int
) -> tuple[np.ndarray, np.ndarray]:
    """One sample: ((H, W, 3) RGB uint8 image, (H, W) uint8 mask of train ids)."""
    if style not in STYLES:
        raise ValueError(f"unknown synthcity style {style!r}; expected one of {sorted(STYLES)}")
    rng = np.random.default_rng([seed, _STYLE_SALT[style], index])
    scene = sample_scene(STYLES[style], size, rng)
    return render(scene, STYLES[style], rng)


def _write_atomic(path: Path, data: bytes) -> None:
    # Atomic (an interrupted run never leaves a truncated file) but not fsynced: regenerable.
    atomic_write_bytes(path, data, durable=False)


def _clear_stale(out: Path, style: str, n: int) -> None:
    """Remove earlier synthcity samples in ``out`` that this run will not rewrite.

    Without this, regenerating with a smaller ``n`` or another style would leave old scenes that
    the folder dataset would load. Files synthcity did not write are never deleted: they stop the
    run instead.
    """
    keep = {f"{sample_name(style, i)}.png" for i in range(n)}
    stale = []
    for sub in ("images", "masks"):
        for path in sorted((out / sub).iterdir()):
            if path.name in keep:
                continue
            if not _SAMPLE_FILE.fullmatch(path.name):
                raise DataError(
                    f"{path}: not a synthcity file; refusing to generate into {out} (use an "
                    "empty or synthcity-only directory)"
                )
            stale.append(path)
    (out / "manifest.json").unlink(missing_ok=True)  # marks the set unfinished until the end
    for path in stale:
        path.unlink()


def _encode_png(array: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def _write_sample(job: tuple[Path, str, tuple[int, int], int, int]) -> np.ndarray:
    out, style, size, seed, index = job
    image, mask = render_sample(style, size, seed, index)
    name = sample_name(style, index)
    _write_atomic(out / "images" / f"{name}.png", _encode_png(image[..., ::-1]))
    _write_atomic(out / "masks" / f"{name}.png", _encode_png(mask))
    return np.bincount(mask.ravel(), minlength=256)


def classes_yaml() -> str:
    classes = [{"name": name, "color": list(color)} for name, color in CLASSES]
    return yaml.safe_dump({"label_space": "camvid", "classes": classes}, sort_keys=False)


def generate(
    out: str | Path,
    style: str,
    n: int,
    size: tuple[int, int] = (128, 160),
    seed: int = 0,
    workers: int = 1,
) -> Path:
    """Generate `n` synthcity scenes of `style` ("sim" or "photo") at `size` (H, W) into `out`.

    Same arguments give byte-identical files whatever `workers` is. Returns `out` as a Path.

    Example:
        >>> generate("data/synthcity_sim", "sim", n=200, size=(128, 160), seed=0)  # doctest: +SKIP
    """
    if style not in STYLES:
        raise ValueError(f"unknown synthcity style {style!r}; expected one of {sorted(STYLES)}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    size = (int(size[0]), int(size[1]))
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    _clear_stale(out, style, n)
    jobs = [(out, style, size, seed, i) for i in range(n)]
    counts = np.zeros(256, np.int64)
    if workers > 1 and n > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for c in pool.map(_write_sample, jobs, chunksize=max(1, n // (8 * workers))):
                counts += c
    else:
        for job in jobs:
            counts += _write_sample(job)

    total = max(int(counts.sum()), 1)
    manifest = {
        "generator": "synthcity",
        "generator_version": GENERATOR_VERSION,
        "style": style,
        "n": n,
        "size": list(size),
        "seed": seed,
        "label_space": "camvid",
        "class_frequencies": {name: counts[i] / total for i, (name, _) in enumerate(CLASSES)},
        "void_frequency": counts[255] / total,
    }
    manifest["class_frequencies"] = {
        k: round(float(v), 6) for k, v in manifest["class_frequencies"].items()
    }
    manifest["void_frequency"] = round(float(manifest["void_frequency"]), 6)
    _write_atomic(out / "classes.yaml", classes_yaml().encode())
    # The manifest goes last: its presence marks a finished dataset.
    _write_atomic(out / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
    return out
