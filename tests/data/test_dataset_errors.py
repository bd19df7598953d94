"""Every data problem is a DataError (or ConfigError) whose message names the file or directory."""

import re

import numpy as np
import pytest

from segshift.data.camvid import CamVidDataset
from segshift.data.cityscapes import CityscapesDataset
from segshift.data.folder import FolderDataset
from segshift.data.gta5 import GTA5Dataset
from segshift.data.synthia import SynthiaDataset
from segshift.errors import ConfigError, DataError


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "nowhere"))):
        CamVidDataset(tmp_path / "nowhere")


def test_missing_split_directory(make_cityscapes):
    root = make_cityscapes()
    with pytest.raises(DataError, match=r"leftImg8bit/test"):
        CityscapesDataset(root, split="test")


def test_empty_split(make_camvid):
    root = make_camvid("shared", counts={"train": 1, "test": 0})
    (root / "test" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no images for split 'test'.*camvid_shared"):
        CamVidDataset(root, split="test")


def test_missing_mask_names_the_image(make_gta5):
    root = make_gta5(3)
    (root / "labels" / "00002.png").unlink()
    with pytest.raises(DataError, match=r"no mask for image .*images/00002\.png"):
        GTA5Dataset(root)
    assert len(GTA5Dataset(root, labeled=False)) == 3  # unlabeled data needs no masks


def test_corrupt_image(make_camvid):
    root = make_camvid("shared")
    bad = root / "train" / "images" / "0001TP_000001.jpg"
    bad.write_bytes(b"this is not a jpeg")
    dataset = CamVidDataset(root)  # content errors surface when the sample is loaded
    dataset[0]
    with pytest.raises(DataError, match=re.escape(str(bad))):
        dataset[1]


def test_truncated_png(make_gta5):
    root = make_gta5(2)
    label = root / "labels" / "00001.png"
    label.write_bytes(label.read_bytes()[:60])
    with pytest.raises(DataError, match=re.escape(str(label))):
        GTA5Dataset(root)[0]


def test_truncated_16_bit_label(make_synthia):
    root = make_synthia(1)
    label = root / "GT" / "LABELS" / "0000000.png"
    label.write_bytes(label.read_bytes()[:100])
    with pytest.raises(DataError, match=re.escape(str(label))):
        SynthiaDataset(root)[0]


def test_size_mismatch_names_both_files(make_folder, tiny):
    root = make_folder("index")
    tiny.save(root / "masks" / "img1.png", np.zeros((tiny.H, tiny.W + 2), dtype=np.uint8))
    dataset = FolderDataset(root, classes=["a", "b", "c"])
    with pytest.raises(
        DataError, match=r"img1\.png: mask size 66x32 does not match image .*img1\.jpg"
    ):
        dataset[1]


def test_train_ids_out_of_range(make_folder):
    dataset = FolderDataset(make_folder("index"), classes=["a", "b"])  # masks hold id 2
    with pytest.raises(DataError, match=r"masks/img0\.png: label ids \[2\] are outside 0\.\.1"):
        dataset[0]


def test_cityscapes_train_ids_out_of_range(make_cityscapes, tiny):
    root = make_cityscapes(train_ids=True)
    bad = root / "gtFine" / "train" / "aachen" / "aachen_000000_000000_gtFine_labelTrainIds.png"
    tiny.save(bad, tiny.band_mask([0, 19]))
    with pytest.raises(DataError, match=re.escape(bad.name) + r".*\[19\]"):
        CityscapesDataset(root)[0]


def test_unknown_rgb_colour(make_folder, tiny):
    root = make_folder("rgb")
    with pytest.raises(DataError, match=r"img0\.png: mask colour\(s\) \(0, 0, 0\)"):
        FolderDataset(root, classes=tiny.FOLDER_CLASSES, mask_format="rgb")[0]


def test_colour_mask_read_as_index(make_folder, tiny):
    root = make_folder("rgb")
    with pytest.raises(DataError, match=r"img0\.png: expected a single-channel mask"):
        FolderDataset(root, classes=tiny.FOLDER_CLASSES, mask_format="index")[0]


def test_index_mask_read_as_palette(make_folder):
    with pytest.raises(DataError, match=r"img0\.png: expected a palette"):
        FolderDataset(make_folder("index"), classes=["a", "b", "c"], mask_format="palette")[0]


def test_split_file_with_unknown_names(make_gta5, tmp_path):
    split = tmp_path / "list.txt"
    split.write_text("00001\n99999\n")
    with pytest.raises(DataError, match=r"list\.txt: 1 listed samples .*99999"):
        GTA5Dataset(make_gta5(2), split_file=split)


def test_n_labeled_larger_than_dataset(make_gta5):
    with pytest.raises(DataError, match=r"n_labeled=5 .* 3 available"):
        GTA5Dataset(make_gta5(3), n_labeled=5)


def test_bad_options_are_config_errors(make_folder, make_cityscapes):
    with pytest.raises(ConfigError, match="mask_format"):
        FolderDataset(make_folder("index"), classes=["a"], mask_format="jpeg")
    with pytest.raises(ConfigError, match="label_space"):
        CityscapesDataset(make_cityscapes(), label_space="camvid")


def test_invalid_classes_yaml(make_folder):
    root = make_folder("index", classes_yaml="colours: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"classes\.yaml"):
        FolderDataset(root)
