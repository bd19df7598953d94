"""Each dataset finds its files in the real layout and maps raw ids to the right train ids."""

import numpy as np
import pytest
import torch

from segshift.data.camvid import CamVidDataset
from segshift.data.cityscapes import CityscapesDataset
from segshift.data.folder import FolderDataset
from segshift.data.gta5 import GTA5Dataset
from segshift.data.synthia import SynthiaDataset
from segshift.errors import ConfigError
from segshift.transforms import to_uint8


def labels_of(dataset, index=0):
    return dataset[index]["label"].numpy()


def test_cityscapes_maps_label_ids(make_cityscapes, tiny):
    dataset = CityscapesDataset(make_cityscapes(), split="train")
    assert [f.name for f in dataset.files] == [
        "aachen_000000_000000_leftImg8bit",
        "aachen_000000_000001_leftImg8bit",
        "bochum_000000_000000_leftImg8bit",
        "bochum_000000_000001_leftImg8bit",
    ]
    sample = dataset[0]
    assert sample["image"].shape == (3, tiny.H, tiny.W) and sample["image"].dtype == torch.float32
    assert sample["label"].shape == (tiny.H, tiny.W) and sample["label"].dtype == torch.int64
    assert sample["domain"] == "cityscapes" and sample["index"] == 0
    assert tiny.band_values(labels_of(dataset), 5) == tiny.CITYSCAPES_TRAIN
    assert len(CityscapesDataset(dataset.root, split="val")) == 1


def test_cityscapes_prefers_label_train_ids(make_cityscapes, tiny):
    dataset = CityscapesDataset(make_cityscapes(train_ids=True))
    assert dataset.files[0].mask.name.endswith("_gtFine_labelTrainIds.png")
    assert tiny.band_values(labels_of(dataset), 5) == [5, 255, 6, 7, 8]


def test_cityscapes16_ignores_classes_outside_synthia(make_cityscapes, tiny):
    dataset = CityscapesDataset(make_cityscapes(train_ids=True), label_space="cityscapes16")
    assert dataset.label_space.num_classes == 16
    assert dataset.files[0].mask.name.endswith("_labelIds.png")
    # road, unlabeled, car, bicycle, sidewalk in the 16-class ids
    assert tiny.band_values(labels_of(dataset), 5) == [0, 255, 12, 15, 1]


def test_gta5_reads_palette_label_ids(make_gta5, tiny):
    dataset = GTA5Dataset(make_gta5(3), split="all")
    assert [f.name for f in dataset.files] == ["00001", "00002", "00003"]
    assert len(GTA5Dataset(dataset.root)) == 3  # the default "train" split is everything too
    assert tiny.band_values(labels_of(dataset, 2), 5) == tiny.CITYSCAPES_TRAIN


def test_gta5_named_split_reads_a_list(make_gta5, tiny):
    root = make_gta5(3)
    (root / "val.txt").write_text("00002.png\n00003.png\n")
    assert [f.name for f in GTA5Dataset(root, split="val").files] == ["00002", "00003"]


def test_synthia_reads_the_class_channel_of_16_bit_labels(make_synthia, tiny):
    dataset = SynthiaDataset(make_synthia(2))
    assert dataset.label_space.name == "synthia16"
    assert tiny.band_values(labels_of(dataset, 1), 5) == tiny.SYNTHIA_TRAIN


def test_synthia_in_the_19_class_protocol(make_synthia, make_cityscapes, tiny):
    from segshift.data.label_space import CITYSCAPES_CLASSES

    dataset = SynthiaDataset(make_synthia(2), label_space="synthia19")
    assert dataset.label_space.num_classes == 19
    # road, wall, void, bicycle, terrain -> Cityscapes train ids (DACS's SYNTHIA mapping)
    assert tiny.band_values(labels_of(dataset, 1), 5) == [0, 3, 255, 18, 255]
    target = CityscapesDataset(make_cityscapes(train_ids=True), label_space="cityscapes_synthia19")
    assert target.label_space.class_names == dataset.label_space.class_names
    assert tiny.band_values(labels_of(target), 5) == [5, 255, 6, 7, 8]  # train ids as they are
    subsets = target.label_space.subsets
    assert len(subsets["16"]) == 16 and len(subsets["13"]) == 13
    missing = set(CITYSCAPES_CLASSES) - {CITYSCAPES_CLASSES[i] for i in subsets["16"]}
    assert missing == {"terrain", "truck", "train"}
    assert {"wall", "fence", "pole"}.isdisjoint(CITYSCAPES_CLASSES[i] for i in subsets["13"])


@pytest.mark.parametrize("layout", ["shared", "segnet"])
def test_camvid_layouts(make_camvid, layout, tiny):
    root = make_camvid(layout)
    train, val = CamVidDataset(root, split="train"), CamVidDataset(root, split="val")
    assert (len(train), len(val)) == (4, 2)
    assert train.files[0].name == "0001TP_000000"
    assert tiny.band_values(labels_of(val), 5) == tiny.CAMVID_TRAIN


@pytest.mark.parametrize("mask_format", ["index", "palette", "rgb"])
def test_folder_mask_formats(make_folder, mask_format, tiny):
    root = make_folder(mask_format)
    void = [[0, 0, 0]] if mask_format == "rgb" else []  # the fixture paints ignored pixels black
    for option in ("auto", mask_format):
        dataset = FolderDataset(
            root, classes=tiny.FOLDER_CLASSES, mask_format=option, void_colors=void
        )
        assert dataset.label_space.class_names == ("water", "pier", "boat")
        assert tiny.band_values(labels_of(dataset), 4) == tiny.FOLDER_IDS


def test_folder_classes_yaml_with_builtin_label_space(make_folder, tiny):
    yaml_text = "label_space: camvid\nclasses:\n" + "".join(
        f"  - {{name: {n}, color: [{i}, 0, 0]}}\n"
        for i, n in enumerate(
            [
                "sky",
                "building",
                "pole",
                "road",
                "sidewalk",
                "tree",
                "signsymbol",
                "fence",
                "car",
                "pedestrian",
                "bicyclist",
            ]
        )
    )
    root = make_folder("index", classes_yaml=yaml_text)
    dataset = FolderDataset(root)
    assert dataset.label_space.name == "camvid" and dataset.label_space.palette[3] == (3, 0, 0)
    assert tiny.band_values(labels_of(dataset), 4) == tiny.FOLDER_IDS


def test_folder_split_root_and_classes_yaml(make_folder, tiny):
    root = make_folder("index", split="train", classes_yaml="classes: [water, pier, boat]\n")
    dataset = FolderDataset(root, split="train")  # root/train/images exists: root/train is used
    assert dataset.root == root / "train" and len(dataset) == 3
    assert dataset.label_space.class_names == ("water", "pier", "boat")
    assert tiny.band_values(labels_of(dataset), 4) == tiny.FOLDER_IDS
    with pytest.raises(ConfigError, match="no classes"):
        FolderDataset(root / "train")  # no classes.yaml in root/train or above it


def test_unlabeled_folder_needs_no_masks_or_classes(make_folder, tiny):
    root = make_folder("index")
    for mask in (root / "masks").iterdir():
        mask.unlink()
    dataset = FolderDataset(root, labeled=False, domain="harbour")
    sample = dataset[1]
    assert "label" not in sample and sample["domain"] == "harbour" and sample["name"] == "img1"
    assert dataset.label_space.num_classes == 0


def test_image_is_rgb_in_unit_range(make_gta5, tiny):
    dataset = GTA5Dataset(make_gta5(3))
    sample = dataset[-1]
    assert sample["index"] == 2 and sample["name"] == "00003"
    restored = to_uint8(sample["image"]).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(restored, tiny.random_image(3))
    assert float(sample["image"].min()) >= 0.0 and float(sample["image"].max()) <= 1.0
