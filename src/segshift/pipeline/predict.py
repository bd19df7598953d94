"""Predict colour masks and overlays for image files with a trained run."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from segshift.data.io import IMAGE_SUFFIXES, list_images, read_image
from segshift.engine.restore import load_trained
from segshift.errors import DataError
from segshift.evaluation import predict, save_prediction
from segshift.transforms import build_transform


def gather_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given plus the images inside given directories (sorted); errors name the path.

    A file reached twice (listed and inside a listed directory) is kept once.
    """
    files: list[Path] = []
    seen: set[Path] = set()
    for item in map(Path, inputs):
        if item.is_dir():
            found = list_images(item)
            if not found:
                raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in directory {item}")
        elif item.is_file():
            found = [item]
        else:
            raise DataError(f"no such image or directory: {item}")
        for path in found:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                files.append(path)
    return files


def output_names(files: Sequence[Path]) -> list[str]:
    """A distinct output name per input file: its stem, unless several inputs share it.

    Files sharing a stem are named by their path below the group's common directory
    (``dup1/a.png``, ``dup2/a.png`` -> ``dup1_a``, ``dup2_a``), with the suffix where that is not
    enough (``a.png``, ``a.jpg`` -> ``a_png``, ``a_jpg``); a name still taken gets ``_2``, ``_3``.
    """
    by_stem: dict[str, list[int]] = {}
    for i, path in enumerate(files):
        by_stem.setdefault(path.stem, []).append(i)
    names = [path.stem for path in files]
    for group in (g for g in by_stem.values() if len(g) > 1):
        parents = [files[i].resolve().parent for i in group]
        common = Path(os.path.commonpath(parents))
        for i, parent in zip(group, parents, strict=True):
            names[i] = "_".join((*parent.relative_to(common).parts, files[i].stem))
        if len({names[i] for i in group}) < len(group):
            for i in group:
                names[i] = f"{names[i]}_{files[i].suffix.lstrip('.').lower()}"
    taken: set[str] = set()
    for i, name in enumerate(names):
        candidate, n = name, 1
        while candidate in taken:
            n += 1
            candidate = f"{name}_{n}"
        taken.add(candidate)
        names[i] = candidate
    return names


def predict_images(
    inputs: Sequence[str | Path],
    checkpoint: str | Path,
    out: str | Path,
    overrides: list[str] | None = None,
) -> list[Path]:
    """Write ``<stem>_color.png`` and ``<stem>_overlay.png`` into ``out`` for every image.

    Images are resized to the validation resize of the run's config (if it has one) for the
    forward pass; masks come back at each image's own size. Files already written stay if a later
    image fails. Inputs sharing a stem get distinct names (:func:`output_names`), so no output
    overwrites another.
    """
    cfg, method, label_space = load_trained(checkpoint, overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = method.eval_model().to(device).eval()
    val = cfg.data.val
    # The evaluation transform of the run: the same resize and interpolation as validation.
    transform = build_transform(
        False,
        resize=list(val.resize) if val is not None and val.resize else None,
        interpolation=val.interpolation if val is not None else "bilinear",
    )
    out = Path(out)
    written: list[Path] = []
    files = gather_images(inputs)
    for path, name in zip(files, output_names(files), strict=True):
        image = read_image(path)
        tensor = transform(image)[0].unsqueeze(0).to(device)
        probs = predict(
            model,
            tensor,
            len(label_space["class_names"]),
            mode=cfg.eval.mode,
            crop_size=tuple(cfg.eval.crop_size) if cfg.eval.crop_size else None,
            stride=tuple(cfg.eval.stride) if cfg.eval.stride else None,
            flip=cfg.eval.flip,
            scales=tuple(cfg.eval.scales),
            output_size=image.shape[:2],
        )
        pred = probs.argmax(dim=1)[0].cpu().numpy().astype(np.uint8)
        written.extend(save_prediction(out / name, image, pred, label_space["palette"]))
    return written
