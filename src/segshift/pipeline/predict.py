"""Predict colour masks and overlays for image files with a trained run."""

from __future__ import annotations

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
    """Files as given plus the images inside given directories (sorted); errors name the path."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = list_images(item)
            if not found:
                raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in directory {item}")
            files.extend(found)
        elif item.is_file():
            files.append(item)
        else:
            raise DataError(f"no such image or directory: {item}")
    return files


def predict_images(
    inputs: Sequence[str | Path],
    checkpoint: str | Path,
    out: str | Path,
    overrides: list[str] | None = None,
) -> list[Path]:
    """Write ``<stem>_color.png`` and ``<stem>_overlay.png`` into ``out`` for every image.

    Images are resized to the validation resize of the run's config (if it has one) for the
    forward pass; masks come back at each image's own size. Files already written stay if a later
    image fails.
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
    for path in gather_images(inputs):
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
        written.extend(save_prediction(out / path.stem, image, pred, label_space["palette"]))
    return written
