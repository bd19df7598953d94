"""Predict index masks, colour masks, overlays and a legend for image files with a trained run."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segshift.data.io import IMAGE_SUFFIXES, list_images, read_image
from segshift.engine.restore import load_segmenter
from segshift.errors import DataError
from segshift.evaluation import (
    colorize,
    panel,
    predict,
    save_prediction,
    write_legend,
    write_png,
)
from segshift.pipeline.truth import TruthReader
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


def sample_names(files: Sequence[Any]) -> list[str]:
    """A distinct name per dataset sample (``SampleFiles``): its own name, or where parts of a
    concatenation share one (KITTI's ``training/000000_10`` and ``testing/000000_10``), the
    :func:`output_names` of all the images (``training_000000_10``, ...)."""
    names = [sample.name for sample in files]
    if len(set(names)) == len(names):
        return names
    return output_names([sample.image for sample in files])


def find_mask(directory: Path, stem: str) -> Path:
    """``directory/<stem>.png`` (or another image suffix); a DataError naming it if missing."""
    for suffix in IMAGE_SUFFIXES:
        path = directory / f"{stem}{suffix}"
        if path.is_file():
            return path
    raise DataError(f"--masks: no mask for {stem} in {directory} (expected {stem}.png)")


def predict_images(
    inputs: Sequence[str | Path],
    checkpoint: str | Path,
    out: str | Path,
    overrides: list[str] | None = None,
    masks: str | Path | None = None,
    masks_as_data: bool = True,
) -> list[Path]:
    """Write per image ``<name>_color.png``, ``<name>_overlay.png`` and ``masks/<name>.png``,
    and ``legend.json`` + ``legend.png``, into ``out``; return the paths written.

    ``masks/<name>.png`` holds the predicted train ids (uint8, one channel): a folder dataset's
    mask directory, for the next tool or a training run. The legend lists each id's class name
    and colour. With ``masks`` (a directory of ground-truth masks named like the images, see
    `segshift.pipeline.truth.TruthReader`: as the run's data.val reads its masks, or with
    ``masks_as_data=False`` train ids / legend colours) also ``<name>_panel.png``: image |
    ground truth | prediction. Every mask is found and read before anything is written.

    ``checkpoint``: a run directory, a checkpoint file, an ``export/`` directory or its
    ``model.safetensors``, or an exported ``model.onnx`` (run by ONNX Runtime). Images are resized to the validation resize of the run's config (if
    it has one) for the forward pass; masks come back at each image's own size. Files already
    written stay if a later image fails. Inputs sharing a stem get distinct names
    (:func:`output_names`), so no output overwrites another.
    """
    cfg, model, label_space = load_segmenter(checkpoint, overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    val = cfg.data.val
    # The evaluation transform of the run: the same resize and interpolation as validation.
    transform = build_transform(
        False,
        resize=list(val.resize) if val is not None and val.resize else None,
        interpolation=val.interpolation if val is not None else "bilinear",
    )
    out = Path(out)
    files = gather_images(inputs)
    truths: dict[Path, Path] = {}
    if masks is not None:
        if not Path(masks).is_dir():
            raise DataError(f"--masks: no such directory: {masks}")
        reader = TruthReader(cfg, label_space, as_data=masks_as_data)
        print(f"--masks: reading {masks} {reader.how}")
        for path in files:  # every mask checked before the first output is written
            truths[path] = find_mask(Path(masks), path.stem)
            reader.read(truths[path], path)
    palette = label_space["palette"]
    written = list(write_legend(out, label_space["class_names"], palette))
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
        written.extend(save_prediction(out / name, image, pred, palette))
        written.append(write_png(out / "masks" / f"{name}.png", pred))
        if masks is not None:
            truth = reader.read(truths[path], path)
            sides = [image, colorize(truth, palette), colorize(pred, palette)]
            written.append(write_png(out / f"{name}_panel.png", panel(sides)))
    return written
