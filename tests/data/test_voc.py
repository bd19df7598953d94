"""Pascal VOC 2012 (+ SBD): layout, splits, masks, label space and build_dataset."""

import numpy as np
import pytest

from segshift.config import DatasetConfig
from segshift.data import build_dataset, get_label_space
from segshift.data.voc import VOCDataset
from segshift.errors import ConfigError, DataError

VOC_BANDS = [0, 15, 255, 7, 20]  # the fixture's palette indices: background, person, boundary, ...
SBD_BANDS = [0, 15, 0, 7, 20]  # SBD masks have no boundary band


def test_voc_label_space_has_the_21_classes_and_palette():
    space = get_label_space("voc")
    assert space.num_classes == 21
    assert space.class_names[0] == "background" and space.class_names[15] == "person"
    assert space.class_names[20] == "tvmonitor"
    # VOC's colour map: aeroplane, person, tvmonitor
    assert space.palette[0] == (0, 0, 0) and space.palette[1] == (128, 0, 0)
    assert space.palette[15] == (192, 128, 128) and space.palette[20] == (0, 64, 128)
    rgb = np.array([[[192, 128, 128], [224, 224, 192], [0, 0, 0]]], dtype=np.uint8)
    assert space.decode_rgb(rgb, "m.png").tolist() == [[15, 255, 0]]


def test_voc_reads_splits_and_palette_masks(make_voc, tiny):
    devkit = make_voc()
    train = VOCDataset(devkit, split="train")  # found under VOCdevkit/VOC2012
    assert train.root == devkit / "VOC2012"
    assert [f.name for f in train.files] == ["2007_000032", "2007_000039"]
    assert train.files[0].image.name == "2007_000032.jpg"
    assert train.files[0].mask.parent.name == "SegmentationClass"
    sample = train[0]
    assert sample["image"].shape == (3, tiny.H, tiny.W) and sample["domain"] == "voc"
    assert tiny.band_values(sample["label"].numpy(), 5) == VOC_BANDS
    val = VOCDataset(devkit / "VOC2012", split="val")
    assert [f.name for f in val.files] == ["2007_000033"]


def test_voc_train_aug_takes_sbd_masks_where_voc_has_none(make_voc, tiny):
    root = make_voc(aug=True) / "VOC2012"
    aug = VOCDataset(root, split="train_aug")  # no train_aug.txt: derived, val left out
    names = [f.name for f in aug.files]
    assert names == ["2007_000032", "2007_000039", "2008_000002", "2008_000003"]
    masks = {f.name: f.mask.parent.name for f in aug.files}
    assert masks["2007_000032"] == "SegmentationClass"  # the official mask first
    assert masks["2008_000002"] == "SegmentationClassAug"
    assert tiny.band_values(aug.load_label(2), 5) == SBD_BANDS
    only_aug = VOCDataset(root, split="train", mask_dirs=["SegmentationClassAug"])
    assert tiny.band_values(only_aug.load_label(0), 5) == SBD_BANDS
    (root / "ImageSets/Segmentation/train_aug.txt").write_text("2008_000003\n")
    assert [f.name for f in VOCDataset(root, split="train_aug").files] == ["2008_000003"]


def test_voc_unlabeled_needs_no_masks(make_voc):
    root = make_voc(aug=True) / "VOC2012"
    for path in (root / "SegmentationClassAug").glob("2008_*.png"):
        path.unlink()
    (root / "ImageSets/Segmentation/train_aug.txt").write_text("2007_000032\n2008_000002\n")
    unlabeled = VOCDataset(root, split="train_aug", labeled=False)
    assert [f.mask for f in unlabeled.files] == [None, None]
    assert "label" not in unlabeled[1]
    with pytest.raises(DataError, match=r"no mask for image '2008_000002'.*SegmentationClassAug"):
        VOCDataset(root, split="train_aug")


def test_voc_errors_name_the_file(make_voc):
    root = make_voc() / "VOC2012"
    with pytest.raises(DataError, match=r"trainval\.txt does not exist"):
        VOCDataset(root, split="trainval")
    with pytest.raises(DataError, match=r"train_aug.*SegmentationClassAug"):
        VOCDataset(root, split="train_aug")
    (root / "JPEGImages/2007_000039.jpg").unlink()
    with pytest.raises(DataError, match=r"lists '2007_000039'.*2007_000039\.jpg is missing"):
        VOCDataset(root, split="train")
    with pytest.raises(ConfigError, match="options.mask_dirs"):
        VOCDataset(root, split="val", mask_dirs="SegmentationClass")


def test_voc_mask_ids_outside_the_classes_are_an_error(make_voc, tiny):
    root = make_voc() / "VOC2012"
    bad = root / "SegmentationClass" / "2007_000033.png"
    tiny.save(bad, tiny.band_mask([0, 21]), palette=True)
    with pytest.raises(DataError, match=r"2007_000033\.png: label ids \[21\]"):
        VOCDataset(root, split="val")[0]


def test_build_dataset_voc_with_published_split_file(make_voc, tmp_path, tiny):
    root = make_voc(aug=True)
    split = tmp_path / "labeled.txt"  # UniMatch's line layout
    split.write_text("JPEGImages/2007_000039.jpg SegmentationClass/2007_000039.png\n")
    cfg = DatasetConfig(name="voc", root=str(root), split="train", split_file=str(split))
    dataset = build_dataset(cfg, train=False)
    assert [f.name for f in dataset.files] == ["2007_000039"]
    assert tiny.band_values(dataset[0]["label"].numpy(), 5) == VOC_BANDS
    rest = DatasetConfig(
        name="voc", root=str(root), split="train_aug", labeled=False, n_labeled=1, complement=True
    )
    assert len(build_dataset(rest, train=True)) == 3
