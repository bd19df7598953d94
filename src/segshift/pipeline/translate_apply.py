"""``segshift translate apply``: the translated copy of a whole dataset with the generators of a
translation run (`segshift.pipeline.translate`).

``apply_translation`` mirrors the dataset's layout under OUT (images translated at their own
size under the same names, masks and the root's metadata files copied), so the same dataset
config with ``root: OUT`` reads the translated copy; ``OUT/translation.json`` names the
checkpoint and direction. Every file is written atomically and a rerun skips the images
already written.

Example::

    apply_translation(run_dir, "translate/synthcity", "data/sim_as_photo",
                      overrides=["data.streams.source.root=SIM", "data.streams.target.root=PHOTO"])
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

import segshift.methods  # noqa: F401  (registers the methods)
from segshift.config import merge_into_schema
from segshift.data import build_dataset
from segshift.data.base import SegDataset
from segshift.data.check import directory_sets
from segshift.data.io import IMAGE_SUFFIXES, read_image
from segshift.engine.loaders import size_grouped_batches, stored_size
from segshift.engine.threads import limit_worker_threads
from segshift.errors import ConfigError, DataError
from segshift.fileio import (
    DirectoryLock,
    atomic_write,
    atomic_write_bytes,
    remove_stale_temp_files,
)
from segshift.methods.cyclegan import CycleGANParams
from segshift.models import trained_weights_file
from segshift.models.cyclegan import ResnetGenerator, from_gan_range, to_gan_range
from segshift.pipeline.pseudo_label import dataset_node
from segshift.registry import METHODS

DIRECTIONS = ("source_to_target", "target_to_source")
MANIFEST = "translation.json"
IDENTITY = ("checkpoint_sha256", "direction", "roots")  # what a rerun into OUT must share
METADATA_MAX_BYTES = 1 << 20  # root-level files up to this size are copied (classes.yaml, ...)
DATA_KEYS = (
    "name", "root", "split", "labeled", "split_file", "n_labeled", "subset_seed", "complement",
    "options",
)  # fmt: skip
SAVE_OPTIONS = {"JPEG": {"quality": 95}, "PNG": {"compress_level": 1}, "WEBP": {"lossless": True}}
# threads encoding and writing images while the next batch runs (1052x1914 PNGs, ngf 64, 9
# blocks, H100 bf16: forward 25 ms/image; with 4 writer threads 79 ms/image, with 8 39 ms/image)
WRITERS = min(8, os.cpu_count() or 1)


def load_generator(checkpoint: str | Path, direction: str) -> tuple[nn.Module, Path]:
    """(generator of ``direction`` in eval mode, its ``model.safetensors``) of a finished
    translation run, its ``export/`` or that file; a ConfigError naming the path otherwise."""
    if direction not in DIRECTIONS:
        raise ConfigError(f"--direction: expected one of {', '.join(DIRECTIONS)}, not {direction}")
    try:
        weights = trained_weights_file(checkpoint)
    except ConfigError:
        raise ConfigError(
            f"--checkpoint {checkpoint}: no exported generators (give a finished `segshift "
            "translate train` run directory, its export/ or its model.safetensors)"
        ) from None
    meta_path = weights.parent / "config.json"
    try:
        method = json.loads(meta_path.read_text())["config"]["method"]
        name, params = method["name"], method.get("params") or {}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{meta_path}: not the config of a segshift export ({err})") from None
    if METHODS.get(name).segments:
        raise ConfigError(
            f"{weights}: not an image-translation run (method '{name}' trains a segmenter); "
            "give a run of `segshift translate train`"
        )
    try:
        prefix, state = f"{direction}.", load_file(str(weights))
    except SafetensorError as err:
        raise ConfigError(f"{weights}: unreadable weights ({err})") from None
    own = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
    defaults = CycleGANParams()
    generator = ResnetGenerator(
        ngf=params.get("ngf", defaults.ngf), n_blocks=params.get("n_blocks", defaults.n_blocks)
    )
    try:
        generator.load_state_dict(own)
    except RuntimeError as err:
        summary = " ".join(str(err).split())[:300]
        raise ConfigError(f"{weights}: no {direction} generator that fits ({summary})") from None
    return generator.requires_grad_(False).eval(), weights


def translation_sets(
    data: DictConfig | Mapping[str, Any] | str | Path,
    stream: str | None = None,
    overrides: Sequence[str] = (),
) -> list[tuple[str, DictConfig]]:
    """(name, dataset node) of what to translate: every split of a dataset directory (as
    ``data check``), one stream of a config (default ``source``; ``val`` for data.val), or
    a dataset node given as it is."""
    if isinstance(data, (str, Path)) and Path(data).expanduser().is_dir():
        if stream is not None:
            raise ConfigError(f"--stream picks a stream of a config; {data} is a dataset directory")
        return directory_sets(data, overrides)
    if not isinstance(data, (str, Path)):  # a dataset node
        return [("data", dataset_node(data, overrides=overrides))]
    stream = stream or "source"
    where = f"{data}: data." + ("val" if stream == "val" else f"streams.{stream}")
    return [(where, dataset_node(data, stream, overrides))]


def _describe(where: str, node: DictConfig) -> dict[str, Any]:
    """What the manifest says of a translated set: its name and the node's ``DATA_KEYS``."""
    values = OmegaConf.to_container(node, resolve=True)
    return {"set": where} | {key: values[key] for key in DATA_KEYS}


def _relative(path: Path, root: Path) -> Path:
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
    except ValueError:
        raise DataError(
            f"{path}: outside the dataset root {root}; translate apply mirrors the layout under "
            "the root, so every image and mask must lie in it"
        ) from None


def _dataset(where: str, node: DictConfig) -> tuple[SegDataset, str | None]:
    """The dataset of ``node`` with its masks where it has them, and why not where it has none
    (a node with ``labeled: false`` may still have them: a translation config's source)."""
    if node.get("concat"):
        raise ConfigError(f"{where}: concatenates several datasets; translate each on its own")
    try:
        return build_dataset(merge_into_schema(node, {"labeled": True}), train=False), None
    except (ConfigError, DataError) as err:
        if node.labeled:
            raise
        return build_dataset(node, train=False), str(err)


def _metadata(node: DictConfig, dataset: SegDataset) -> dict[Path, Path]:
    """Small non-image files at the root (and the split root) and the node's split file when
    it lies in the root, by path relative to the root: what a config of the root reads."""
    root, found = Path(node.root).expanduser(), {}
    for folder in dict.fromkeys([root, dataset.root]):
        for path in sorted(folder.iterdir()):
            if (
                path.is_file()
                and not path.name.startswith(".")
                and path.name != MANIFEST
                and path.suffix.lower() not in IMAGE_SUFFIXES
                and path.stat().st_size <= METADATA_MAX_BYTES
            ):
                found[_relative(path, root)] = path
    if node.split_file:
        given = Path(node.split_file).expanduser()
        path = given if given.is_absolute() or given.exists() else dataset.root / given
        if path.is_file() and os.path.abspath(path).startswith(os.path.abspath(root) + os.sep):
            found[_relative(path, root)] = path
    return found


def _plan(sets: Sequence[tuple[str, DictConfig]]) -> dict[str, Any]:
    """Every file to write, by path relative to OUT -> source: ``images``, ``masks``,
    ``metadata``; ``roots`` (absolute) and ``notes`` (sets without masks, and why)."""
    plan: dict[str, Any] = {"images": {}, "masks": {}, "metadata": {}, "roots": [], "notes": []}
    for where, node in sets:
        dataset, no_masks = _dataset(where, node)
        root = Path(node.root).expanduser()
        plan["roots"].append(os.path.abspath(root))
        if no_masks:
            plan["notes"].append(f"{where}: images only, no masks ({no_masks})")
        for sample in dataset.files:
            plan["images"][_relative(sample.image, root)] = sample.image
            if sample.mask is not None:
                plan["masks"][_relative(sample.mask, root)] = sample.mask
        plan["metadata"].update(_metadata(node, dataset))
    plan["roots"] = sorted(set(plan["roots"]))
    return plan


def encode_image(pixels: np.ndarray, suffix: str) -> bytes:
    """RGB uint8 (H,W,3) as the bytes of an image file of ``suffix``: PNG (fast compression),
    WebP, BMP and TIFF lossless, JPEG at quality 95.

    Pillow, not OpenCV: no OpenCV thread pool in this process (see engine/threads.py)."""
    image_format = Image.registered_extensions().get(suffix.lower())
    if image_format is None:
        raise DataError(f"cannot write an image as {suffix}")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format, **SAVE_OPTIONS.get(image_format, {}))
    return buffer.getvalue()


def _write_image(path: Path, pixels: np.ndarray) -> None:
    atomic_write(path, lambda handle: handle.write(encode_image(pixels, path.suffix)))


def _copy(source: Path, target: Path) -> None:
    atomic_write(target, lambda handle: handle.write(source.read_bytes()))


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 16 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _Images(Dataset):
    """Image files as uint8 (3,H,W) tensors at their own size."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(read_image(self.paths[index])).permute(2, 0, 1)


def _translate(generator: nn.Module, jobs: list[tuple[Path, Path]], options: dict) -> None:
    """Write each (source, target) image's translation to ``target``; ``options``:
    ``batch_size``, ``num_workers``, ``device``, ``bf16``, ``progress``. Batches hold images
    of one size; threads encode and write while the next batch runs. On an error or Ctrl-C
    the writes under way finish (each file is whole or absent) and the queued ones are dropped."""
    sources, device = [source for source, _ in jobs], options["device"]
    batches = size_grouped_batches([stored_size(path) for path in sources], options["batch_size"])
    loader = DataLoader(
        _Images(sources),
        batch_sampler=batches,
        num_workers=options["num_workers"],
        worker_init_fn=limit_worker_threads,
        pin_memory=device.type == "cuda",
    )
    writers, pending = ThreadPoolExecutor(WRITERS), deque[Future]()
    bar = tqdm(total=len(jobs), desc="translate", disable=not options["progress"])
    try:
        for images, ids in zip(loader, batches, strict=True):
            x = to_gan_range(images.to(device, non_blocking=True).float() / 255)
            with (
                torch.inference_mode(),
                torch.autocast(device.type, torch.bfloat16, enabled=options["bf16"]),
            ):
                y = from_gan_range(generator(x).float())
            pixels = (y.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
            for index, array in zip(ids, pixels, strict=True):
                pending.append(writers.submit(_write_image, jobs[index][1], array))
            while len(pending) > 2 * WRITERS:
                pending.popleft().result()
                bar.update()
        while pending:
            pending.popleft().result()
            bar.update()
    finally:
        writers.shutdown(wait=True, cancel_futures=True)
        bar.close()


def _device(name: str | None) -> tuple[torch.device, bool]:
    """(device, bf16 autocast): CUDA where there is one (bf16 where it supports it), else CPU."""
    if name not in (None, "cpu", "cuda"):
        raise ConfigError(f"--device: expected cpu or cuda, not {name}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available")
    device = torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))
    return device, device.type == "cuda" and torch.cuda.is_bf16_supported()


def _check_out(out: Path, manifest: dict[str, Any], overwrite: bool) -> bool:
    """Whether ``out`` holds a translation to replace (``overwrite``); a ConfigError where it
    holds one of another checkpoint, direction or dataset root, or files of anything else."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")
    if out.resolve() in {Path(root).resolve() for root in manifest["roots"]}:
        raise ConfigError(f"--out {out}: is the dataset root itself; choose another directory")
    path = out / MANIFEST
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(
                f"{path}: unreadable ({err}); delete it or choose another --out"
            ) from None
        changed = [key for key in IDENTITY if stored.get(key) != manifest[key]]
        if changed and not overwrite:
            raise ConfigError(
                f"--out {out} holds a translation of another {', '.join(changed)} (checkpoint "
                f"{stored.get('checkpoint')}, direction {stored.get('direction')}); add "
                "--overwrite to replace it or choose another directory"
            )
        return overwrite
    if out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir()):
        raise ConfigError(
            f"--out {out}: holds files but no {MANIFEST} (not a translation); choose an empty "
            "or new directory"
        )
    return False


def _clear(out: Path) -> None:
    """Delete a previous translation in ``out`` (all but the lock held on it)."""
    for entry in out.iterdir():
        if entry.name == ".lock":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def apply_translation(
    checkpoint: str | Path,
    data: DictConfig | Mapping[str, Any] | str | Path,
    out: str | Path,
    *,
    direction: str = "source_to_target",
    stream: str | None = None,
    overrides: Sequence[str] = (),
    batch_size: int = 4,
    device: str | None = None,
    num_workers: int = 2,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Write the translation of a whole dataset to ``out`` in the dataset's own layout.

    Every image is written at its path relative to the dataset root, translated at its own
    size (same name and format: PNG lossless, JPEG quality 95), every mask and the root's small
    metadata files (``classes.yaml``, ``train.txt``, ...) copied unchanged, so the dataset's
    config with ``root: out`` reads the translated copy. Files are written atomically; a rerun
    skips the images already in ``out``. ``out/translation.json`` names the checkpoint
    (absolute path, sha256), direction, dataset roots and nodes, counts and timings;
    ``complete`` is false until the end.

    Args:
        checkpoint: a finished translation run directory, its ``export/`` or model.safetensors.
        data: a dataset directory (every split), a config file or packaged name, or a node.
        out: the output directory; one holding a translation of another checkpoint, direction
            or dataset root is refused unless ``overwrite`` (which deletes it first).
        direction: ``source_to_target`` (G_st) or ``target_to_source`` (G_ts).
        stream: the config's stream to translate (default ``source``; ``val``: data.val).
        overrides: dotted keys of the config, or of the node for a directory.
        batch_size: images per forward; batches hold images of one size.
        device: ``cpu`` | ``cuda``; default CUDA where available (bf16 autocast), else CPU.
        num_workers: image-reading processes.
        progress: a tqdm bar on stderr.

    Returns:
        The manifest: ``images``, ``translated``, ``skipped`` (already in ``out``),
        ``masks``, ``seconds``, ``seconds_per_image`` (translated images only), ``out``, ...
    """
    started = time.perf_counter()
    if batch_size < 1:
        raise ConfigError(f"--batch-size: must be >= 1, got {batch_size}")
    generator, weights = load_generator(checkpoint, direction)
    sets = translation_sets(data, stream, overrides)
    plan, out = _plan(sets), Path(out).expanduser()
    target, bf16 = _device(device)
    manifest: dict[str, Any] = {
        "checkpoint": str(weights.resolve()),
        "checkpoint_sha256": file_sha256(weights),
        "direction": direction,
        "roots": plan["roots"],
        "data": [_describe(where, node) for where, node in sets],
        "device": target.type,
        "precision": "bf16" if bf16 else "fp32",
        "images": len(plan["images"]),
        "masks": len(plan["masks"]),
        "metadata": sorted(map(str, plan["metadata"])),
        "notes": plan["notes"],
        "complete": False,
    }
    replace = _check_out(out, manifest, overwrite)
    lock = DirectoryLock(out)
    lock.acquire()
    try:
        if replace:
            _clear(out)
        atomic_write_bytes(out / MANIFEST, json.dumps(manifest, indent=2).encode())
        remove_stale_temp_files(out, *(p for p in out.rglob("*") if p.is_dir()))
        for relative, source in plan["metadata"].items():
            _copy(source, out / relative)
        for relative, source in plan["masks"].items():
            if not (out / relative).exists():
                _copy(source, out / relative)
        jobs = [(src, out / rel) for rel, src in plan["images"].items() if not (out / rel).exists()]
        translating = time.perf_counter()
        options = {"batch_size": batch_size, "num_workers": num_workers, "device": target}
        _translate(generator.to(target), jobs, options | {"bf16": bf16, "progress": progress})
        seconds = time.perf_counter() - translating
        manifest |= {
            "translated": len(jobs),
            "skipped": len(plan["images"]) - len(jobs),
            "seconds": round(time.perf_counter() - started, 3),
            "seconds_per_image": round(seconds / len(jobs), 5) if jobs else None,
            "complete": True,
        }
        atomic_write_bytes(out / MANIFEST, json.dumps(manifest, indent=2).encode())
    finally:
        lock.release()
    return manifest | {"out": str(out)}
