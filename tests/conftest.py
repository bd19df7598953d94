"""Fixtures shared by all tests.

- ``folder_factory`` / ``tiny_folder`` / ``tiny_config``: a tiny learnable folder dataset and a
  run config that trains the fast model on it for a few steps.
- ``make_cityscapes``, ``make_gta5``, ``make_synthia``, ``make_camvid``, ``make_folder``: tiny
  datasets laid out exactly like the real ones, written into tmp_path. Every label mask holds the
  same pattern of raw ids in horizontal bands (see ``band_mask``), so tests can assert on the
  exact train ids after mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from segshift.config import load_config

CAMVID_CLASSES_YAML = "label_space: camvid\n"


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny inputs gain nothing from threads, and spinning threads stall a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_folder_dataset(root: Path, n: int = 6, size: tuple[int, int] = (32, 40), seed: int = 0):
    """``root/images/*.png`` + ``root/masks/*.png`` (index) whose colours predict the class."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    colours = rng.integers(0, 256, size=(11, 3))
    for i in range(n):
        mask = np.zeros(size, np.uint8)
        h, w = size
        mask[: h // 3] = 0  # sky
        mask[h // 3 : 2 * h // 3] = rng.integers(1, 11)
        mask[2 * h // 3 :] = 3  # road
        mask[rng.integers(0, h), :] = 255
        image = colours[np.minimum(mask, 10)] + rng.integers(-20, 20, size=(*size, 3))
        image = np.clip(image, 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"img_{i:03d}.png")
        Image.fromarray(mask).save(root / "masks" / f"img_{i:03d}.png")
    (root / "classes.yaml").write_text(CAMVID_CLASSES_YAML)
    return root


@pytest.fixture(scope="session")
def folder_factory():
    """The :func:`make_folder_dataset` function, for tests that need several datasets."""
    return make_folder_dataset


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    return make_folder_dataset(tmp_path / "tiny")


def tiny_run_config(data_root: Path, out: Path, *extra: str):
    """A config that trains the fast model for a few steps on ``data_root`` (CPU, no workers)."""
    overrides = [
        f"data.streams.labeled.root={data_root}",
        f"data.val.root={data_root}",
        f"output_dir={out}",
        "name=tiny",
        "data.num_workers=0",
        "data.streams.labeled.batch_size=2",
        "data.streams.labeled.crop_size=[32,32]",
        "data.val.batch_size=2",
        "train.iters=4",
        "train.eval_every=2",
        "train.ckpt_every=2",
        "train.log_every=1",
        "train.progress=plain",
        "schedule.warmup_iters=0",
        *extra,
    ]
    return load_config("demo/source_only", overrides)


@pytest.fixture
def tiny_config(tiny_folder: Path, tmp_path: Path):
    return lambda *extra: tiny_run_config(tiny_folder, tmp_path / "runs", *extra)


# --- dataset layouts -------------------------------------------------------------------

H, W = 32, 64


def band_mask(raw_ids: Sequence[int], dtype: type = np.uint8) -> np.ndarray:
    """(H,W) mask whose rows are split into equal bands, band ``k`` filled with ``raw_ids[k]``."""
    rows = np.array_split(np.arange(H), len(raw_ids))
    mask = np.zeros((H, W), dtype=dtype)
    for raw, band in zip(raw_ids, rows):
        mask[band] = raw
    return mask


def band_values(train_ids: np.ndarray, bands: int) -> list[int]:
    """The value at the first row of each band of a (H,W) array made like ``band_mask``."""
    return [int(train_ids[band[0], 0]) for band in np.array_split(np.arange(H), bands)]


def random_image(seed: int, size: tuple[int, int] = (H, W)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def save(path: Path, array: np.ndarray, palette: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if palette:  # indices = the values of ``array`` (H,W), with an arbitrary colour table
        image = Image.frombytes("P", (array.shape[1], array.shape[0]), array.tobytes())
        image.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    else:
        image = Image.fromarray(array)
    image.save(path)
    return path


CITYSCAPES_RAW = (7, 0, 26, 33, 8)  # road, unlabeled, car, bicycle, sidewalk
CITYSCAPES_TRAIN = [0, 255, 13, 18, 1]


@pytest.fixture
def make_cityscapes(tmp_path: Path) -> Callable[..., Path]:
    """Cityscapes tree: train has 2 cities x 2 frames, val 1 city x 1 frame, 32x64 images."""

    def make(train_ids: bool = False) -> Path:
        root = tmp_path / "cityscapes"
        cities = {"train": ["aachen", "bochum"], "val": ["frankfurt"]}
        for split, names in cities.items():
            for c, city in enumerate(names):
                for frame in range(2 if split == "train" else 1):
                    base = f"{city}_000000_{frame:06d}"
                    save(
                        root / "leftImg8bit" / split / city / f"{base}_leftImg8bit.png",
                        random_image(c * 10 + frame),
                    )
                    gt = root / "gtFine" / split / city
                    save(gt / f"{base}_gtFine_labelIds.png", band_mask(CITYSCAPES_RAW))
                    if train_ids:
                        save(gt / f"{base}_gtFine_labelTrainIds.png", band_mask([5, 255, 6, 7, 8]))
        return root

    return make


@pytest.fixture
def make_gta5(tmp_path: Path) -> Callable[..., Path]:
    """GTA5: images/0000k.png and palette-PNG labels/0000k.png in Cityscapes labelIds."""

    def make(count: int = 3) -> Path:
        root = tmp_path / "gta5"
        for k in range(1, count + 1):
            save(root / "images" / f"{k:05d}.png", random_image(k))
            save(root / "labels" / f"{k:05d}.png", band_mask(CITYSCAPES_RAW), palette=True)
        return root

    return make


SYNTHIA_RAW = (3, 21, 0, 11, 16)  # road, wall, void, bicycle, terrain (not in the 16 classes)
SYNTHIA_TRAIN = [0, 3, 255, 15, 255]


@pytest.fixture
def make_synthia(tmp_path: Path) -> Callable[..., Path]:
    """SYNTHIA RAND-CITYSCAPES: RGB/*.png and 16-bit 3-channel GT/LABELS/*.png."""

    def make(count: int = 2) -> Path:
        root = tmp_path / "synthia"
        for k in range(count):
            save(root / "RGB" / f"{k:07d}.png", random_image(k))
            label = np.zeros((H, W, 3), dtype=np.uint16)
            label[..., 0] = band_mask(SYNTHIA_RAW, np.uint16)  # class id, first channel (R)
            label[..., 1] = 1000 + k  # instance id: must not be read as the class
            label_path = root / "GT" / "LABELS" / f"{k:07d}.png"
            label_path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(label_path), label[..., ::-1])  # OpenCV writes BGR
        return root

    return make


CAMVID_RAW = (0, 3, 11, 8, 10)  # sky, road, void, car, bicyclist
CAMVID_TRAIN = [0, 3, 255, 8, 10]


@pytest.fixture
def make_camvid(tmp_path: Path) -> Callable[..., Path]:
    """CamVid in the shared layout (``images/*.jpg``, ``labels``) or SegNet's (``trainannot``)."""

    def make(layout: str = "shared", counts: dict[str, int] | None = None) -> Path:
        root = tmp_path / f"camvid_{layout}"
        for split, count in (counts or {"train": 4, "val": 2}).items():
            for k in range(count):
                name = f"0001TP_{k:06d}"
                if layout == "shared":
                    save(root / split / "images" / f"{name}.jpg", random_image(k))
                    save(root / split / "labels" / f"{name}.png", band_mask(CAMVID_RAW))
                else:
                    save(root / split / f"{name}.png", random_image(k))
                    save(root / f"{split}annot" / f"{name}.png", band_mask(CAMVID_RAW))
        return root

    return make


FOLDER_CLASSES = [
    {"name": "water", "color": [0, 0, 255]},
    {"name": "pier", "color": [255, 255, 0]},
    {"name": "boat", "color": [255, 0, 0]},
]
FOLDER_IDS = (0, 1, 255, 2)


@pytest.fixture
def make_folder(tmp_path: Path) -> Callable[..., Path]:
    """A folder dataset: images/*.jpg + masks/*.png as index, palette or RGB masks."""

    def make(
        mask_format: str = "index",
        count: int = 3,
        split: str | None = None,
        classes_yaml: str | None = None,
    ) -> Path:
        root = tmp_path / f"folder_{mask_format}"
        base = root / split if split else root
        ids = band_mask(FOLDER_IDS)
        for k in range(count):
            save(base / "images" / f"img{k}.jpg", random_image(k))
            if mask_format == "rgb":
                colors = np.zeros((256, 3), dtype=np.uint8)
                colors[:3] = [c["color"] for c in FOLDER_CLASSES]
                save(base / "masks" / f"img{k}.png", colors[ids])
            else:
                save(base / "masks" / f"img{k}.png", ids, palette=mask_format == "palette")
        if classes_yaml is not None:
            (root / "classes.yaml").write_text(classes_yaml)
        return root

    return make


@pytest.fixture
def tiny() -> SimpleNamespace:
    """The helpers and expected values of these fixtures (tests cannot import conftest)."""
    return SimpleNamespace(
        H=H,
        W=W,
        band_mask=band_mask,
        band_values=band_values,
        random_image=random_image,
        save=save,
        CITYSCAPES_TRAIN=CITYSCAPES_TRAIN,
        SYNTHIA_TRAIN=SYNTHIA_TRAIN,
        CAMVID_TRAIN=CAMVID_TRAIN,
        FOLDER_CLASSES=FOLDER_CLASSES,
        FOLDER_IDS=list(FOLDER_IDS),
    )


# --- Pascal VOC 2012 (+ SBD) ----------------------------------------------------------------

VOC_IDS = (0, 15, 255, 7, 20)  # background, person, boundary (ignored), car, tvmonitor
VOC_TRAIN = ["2007_000032", "2007_000039"]
VOC_VAL = ["2007_000033"]
VOC_SBD_ONLY = ["2008_000002", "2008_000003"]  # SBD masks only: in train_aug, not in train


@pytest.fixture
def make_voc(tmp_path: Path) -> Callable[..., Path]:
    """VOCdevkit/VOC2012: JPEGImages/*.jpg, palette-PNG SegmentationClass (VOC_IDS bands) for
    train + val, ImageSets/Segmentation/{train,val}.txt; with ``aug``, SegmentationClassAug
    (single-channel PNGs) for every image and two SBD-only images. Returns the VOCdevkit dir."""

    def make(aug: bool = False) -> Path:
        devkit = tmp_path / "VOCdevkit"
        root = devkit / "VOC2012"
        lists = root / "ImageSets" / "Segmentation"
        lists.mkdir(parents=True)
        lists.joinpath("train.txt").write_text("".join(f"{n}\n" for n in VOC_TRAIN))
        lists.joinpath("val.txt").write_text("".join(f"{n}\n" for n in VOC_VAL))
        names = VOC_TRAIN + VOC_VAL + (VOC_SBD_ONLY if aug else [])
        for k, name in enumerate(names):
            save(root / "JPEGImages" / f"{name}.jpg", random_image(k))
            if name not in VOC_SBD_ONLY:
                save(root / "SegmentationClass" / f"{name}.png", band_mask(VOC_IDS), palette=True)
            if aug:  # SBD draws no boundary band: 255 becomes background here
                sbd = band_mask([0 if i == 255 else i for i in VOC_IDS])
                save(root / "SegmentationClassAug" / f"{name}.png", sbd)
        return devkit

    return make
