"""Evaluation of a validation set with images of several sizes, at any batch size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segshift.engine.loaders import evaluation_loader, size_grouped_batches
from segshift.engine.trainer import Trainer

# (height, width) of the six images: three sizes, interleaved, so no size is contiguous
SIZES = [(32, 40), (24, 48), (32, 40), (40, 32), (24, 48), (32, 40)]


def test_size_grouped_batches_keep_order_within_a_size() -> None:
    assert size_grouped_batches(SIZES, 2) == [[0, 2], [5], [1, 4], [3]]
    assert size_grouped_batches(SIZES, 3) == [[0, 2, 5], [1, 4], [3]]
    assert size_grouped_batches(SIZES, 1) == [[i] for i in (0, 2, 5, 1, 4, 3)]
    assert size_grouped_batches([], 4) == []


@pytest.fixture
def mixed_folder(tiny_folder: Path) -> Path:
    """The tiny folder dataset (6 images) with image i and its mask resized to ``SIZES[i]``."""
    root = tiny_folder
    for i, (h, w) in enumerate(SIZES):
        for sub, resample in (("images", Image.BILINEAR), ("masks", Image.NEAREST)):
            path = root / sub / f"img_{i:03d}.png"
            with Image.open(path) as image:
                image.resize((w, h), resample).save(path)
    return root


def mixed_masks(root: Path) -> list[Path]:
    return sorted((root / "masks").glob("*.png"))


def test_loader_batches_hold_one_size(mixed_folder: Path, tiny_config) -> None:
    trainer = Trainer(tiny_config())
    loader = evaluation_loader(trainer.val_set, [5, 4, 3, 2, 1, 0], batch_size=3)
    batches = [(b["name"], tuple(b["label"].shape)) for b in loader]
    assert batches == [
        (["img_005", "img_002", "img_000"], (3, 32, 40)),
        (["img_004", "img_001"], (2, 24, 48)),
        (["img_003"], (1, 40, 32)),
    ]


# resized: the images share a size, their labels (kept at full resolution) do not
@pytest.mark.parametrize("extra", [[], ["data.val.resize=[64,64]"]], ids=["own", "resized"])
def test_metrics_at_batch_3_equal_batch_1(mixed_folder: Path, tiny_config, extra) -> None:
    results = {}
    for batch_size in (1, 3):
        cfg = tiny_config(
            f"data.val.batch_size={batch_size}",
            "eval.per_image_miou=true",
            *extra,
        )
        results[batch_size] = Trainer(cfg).evaluate()
    one, three = results[1], results[3]
    assert torch.equal(one["confusion_matrix"], three["confusion_matrix"])
    # every labeled pixel is scored exactly once
    labeled = sum(int((np.asarray(Image.open(p)) != 255).sum()) for p in mixed_masks(mixed_folder))
    assert int(three["confusion_matrix"].sum()) == labeled
    np.testing.assert_array_equal(one["iou"], three["iou"])
    assert one["miou"] == three["miou"]
    assert one["miou_per_image"] == three["miou_per_image"]
