"""Split files in the layouts the semi-supervised papers publish are used as they are."""

from pathlib import Path

import pytest

from segshift.config import DatasetConfig
from segshift.data import build_dataset
from segshift.data.cityscapes import CityscapesDataset
from segshift.data.splits import keep_listed, read_split_file, split_entry_name
from segshift.data.voc import VOCDataset
from segshift.errors import DataError

# The fixture's Cityscapes train frames, in the dataset's (sorted) order.
FRAMES = ["aachen_000000_000000", "aachen_000000_000001", "bochum_000000_000000", "bochum_000000_000001"]  # fmt: skip


def write(path: Path, *lines: str) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def names(dataset) -> list[str]:
    return [f.name for f in dataset.files]


def test_split_entry_name_strips_folders_and_image_suffixes_only():
    assert split_entry_name("JPEGImages/2007_000032.jpg") == "2007_000032"
    assert split_entry_name("/images/train/jena_000078_000019.png") == "jena_000078_000019"
    assert split_entry_name("2007_000032") == "2007_000032"
    assert split_entry_name("scene.v2") == "scene.v2"  # not an image suffix: part of the name
    assert split_entry_name("scene.v2.PNG") == "scene.v2"
    assert split_entry_name("a\\b\\c.jpeg") == "c"


def test_read_split_file_takes_the_first_token_of_each_line(tmp_path):
    path = write(
        tmp_path / "list.txt",
        "# labeled images",
        "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png gtFine/train/aachen/x.png",
        "/images/train/jena_000078_000019.png\t/segmentation/train/jena_000078_000019_gtFine.png",
        "",
        "2007_000032  # a comment",
    )
    assert read_split_file(path) == [
        "aachen_000000_000019_leftImg8bit",
        "jena_000078_000019",
        "2007_000032",
    ]


@pytest.mark.parametrize(
    "lines",
    [
        [  # UniMatch / U2PL: image and labelTrainIds paths, space-separated
            "leftImg8bit/train/aachen/aachen_000000_000001_leftImg8bit.png "
            "gtFine/train/aachen/aachen_000000_000001_gtFine_labelTrainIds.png",
            "leftImg8bit/train/bochum/bochum_000000_000000_leftImg8bit.png "
            "gtFine/train/bochum/bochum_000000_000000_gtFine_labelTrainIds.png",
        ],
        [  # CPS / TorchSemiSeg: flattened folders, no suffix, tab-separated
            "/images/train/aachen_000000_000001.png\t/segmentation/train/aachen_000000_000001_gtFine.png",
            "/images/train/bochum_000000_000000.png\t/segmentation/train/bochum_000000_000000_gtFine.png",
        ],
        ["aachen_000000_000001", "bochum_000000_000000_leftImg8bit"],  # bare names, either form
    ],
    ids=["unimatch", "cps", "names"],
)
def test_cityscapes_accepts_the_published_list_layouts(make_cityscapes, tmp_path, lines):
    root = make_cityscapes()
    split = write(tmp_path / "labeled.txt", *lines)
    dataset = CityscapesDataset(root, split="train", split_file=split)
    assert names(dataset) == [f"{FRAMES[1]}_leftImg8bit", f"{FRAMES[2]}_leftImg8bit"]
    assert dataset.files[0].mask.name == f"{FRAMES[1]}_gtFine_labelIds.png"


def test_cityscapes_unlabeled_list_with_build_dataset(make_cityscapes, tmp_path):
    root = make_cityscapes()
    split = write(tmp_path / "unlabeled.txt", *(f"leftImg8bit/train/{f.split('_')[0]}/{f}_leftImg8bit.png" for f in FRAMES[2:]))  # fmt: skip
    cfg = DatasetConfig(name="cityscapes", root=str(root), labeled=False, split_file=str(split))
    dataset = build_dataset(cfg, train=True)
    assert names(dataset) == [f"{f}_leftImg8bit" for f in FRAMES[2:]]
    assert "label" not in dataset[0]


def test_cityscapes_list_of_another_split_is_refused(make_cityscapes, tmp_path):
    split = write(tmp_path / "val.txt", "/images/val/frankfurt_000000_000000.png\tx.png")
    with pytest.raises(DataError, match=r"val\.txt: 1 listed samples are not in the dataset"):
        CityscapesDataset(make_cityscapes(), split="train", split_file=split)


@pytest.mark.parametrize(
    "lines",
    [
        ["JPEGImages/2007_000039.jpg SegmentationClass/2007_000039.png"],  # UniMatch
        ["2007_000039"],  # CPS, U2PL, ImageSets/Segmentation
        ["JPEGImages/2007_000039.jpg\tSegmentationClassAug/2007_000039.png"],
    ],
    ids=["unimatch", "ids", "tab"],
)
def test_voc_accepts_the_published_list_layouts(make_voc, tmp_path, lines):
    split = write(tmp_path / "labeled.txt", *lines)
    dataset = VOCDataset(make_voc(), split="train", split_file=split)
    assert names(dataset) == ["2007_000039"]


def test_split_file_relative_to_the_dataset_root(make_voc):
    root = make_voc(aug=True) / "VOC2012"
    write(root / "unlabeled.txt", "2008_000002", "JPEGImages/2008_000003.jpg x.png")
    dataset = VOCDataset(root, split="train_aug", labeled=False, split_file="unlabeled.txt")
    assert names(dataset) == ["2008_000002", "2008_000003"]


def test_keep_listed_refuses_ambiguous_keys(tmp_path):
    key = lambda name: name.split("_")[0]  # noqa: E731
    assert keep_listed(["a_1", "b_1", "c_1"], ["c", "a"], tmp_path / "s.txt", key=key) == [0, 2]
    with pytest.raises(DataError, match=r"\['a_1', 'a_2'\] share the name 'a'"):
        keep_listed(["a_1", "a_2", "b_1"], ["a"], tmp_path / "s.txt", key=key)
    # duplicates that the list does not name do not matter
    assert keep_listed(["a_1", "a_2", "b_1"], ["b_1"], tmp_path / "s.txt", key=key) == [2]
