"""Split files in a folder dataset's root: ``split: train`` reads ``train.txt``, ``val`` reads
``val.txt``, ``all`` is every image; a missing split file is named; ``split_file`` still works."""

from __future__ import annotations

import pytest

from segshift.data.folder import FolderDataset
from segshift.data.gta5 import GTA5Dataset
from segshift.errors import DataError

NAMES = ["a", "b", "c", "d"]


@pytest.fixture
def split_root(tmp_path, tiny):
    """Four images with masks; train.txt lists a, b (as paths with suffixes), val.txt lists c."""
    root = tmp_path / "harbour"
    for k, name in enumerate(NAMES):
        tiny.save(root / "images" / f"{name}.jpg", tiny.random_image(k))
        tiny.save(root / "masks" / f"{name}.png", tiny.band_mask([0, 1]))
    (root / "train.txt").write_text("images/a.jpg masks/a.png\nimages/b.jpg masks/b.png\n")
    (root / "val.txt").write_text("# held out\nc\n")
    return root


def names(dataset):
    return [f.name for f in dataset.files]


@pytest.mark.parametrize(
    ("split", "expected"), [("train", ["a", "b"]), ("val", ["c"]), ("all", NAMES)]
)
def test_split_files_choose_the_images(split_root, split, expected):
    assert names(FolderDataset(split_root, classes=["x", "y"], split=split)) == expected


def test_a_root_with_split_files_names_the_missing_one(split_root):
    with pytest.raises(DataError, match=r"split 'test': .*harbour/test\.txt does not exist, but "):
        FolderDataset(split_root, classes=["x", "y"], split="test")
    (split_root / "train.txt").unlink()
    with pytest.raises(DataError, match=r"train\.txt does not exist, but .* has split files val"):
        FolderDataset(split_root, classes=["x", "y"], split="train")


def test_split_file_key_still_selects_alone(split_root):
    """An explicit split_file picks from every image, whatever the split (as before)."""
    dataset = FolderDataset(split_root, classes=["x", "y"], split_file="val.txt")
    assert names(dataset) == ["c"]
    (split_root / "subset.txt").write_text("d\n")
    assert names(FolderDataset(split_root, classes=["x", "y"], split_file="subset.txt")) == ["d"]


def test_a_root_without_split_files_uses_every_image_for_any_split(split_root):
    for path in ("train.txt", "val.txt"):
        (split_root / path).unlink()
    for split in ("train", "val"):
        assert names(FolderDataset(split_root, classes=["x", "y"], split=split)) == NAMES


def test_split_directories_win_over_split_files(split_root, tiny):
    tiny.save(split_root / "val" / "images" / "e.png", tiny.random_image(9))
    tiny.save(split_root / "val" / "masks" / "e.png", tiny.band_mask([0]))
    assert names(FolderDataset(split_root, classes=["x", "y"], split="val")) == ["e"]


def test_unlabeled_plain_folder_uses_split_files(tmp_path, tiny):
    for k, name in enumerate(NAMES):
        tiny.save(tmp_path / f"{name}.png", tiny.random_image(k))
    (tmp_path / "train.txt").write_text("b\nd\n")
    assert names(FolderDataset(tmp_path, labeled=False)) == ["b", "d"]


def test_a_listed_image_that_is_missing_is_named(split_root):
    (split_root / "val.txt").write_text("c\nzz\n")
    with pytest.raises(DataError, match=r"val\.txt: 1 listed samples are not in the dataset"):
        FolderDataset(split_root, classes=["x", "y"], split="val")


def test_gta5_train_reads_train_txt_when_the_root_is_split(make_gta5):
    root = make_gta5(3)
    assert names(GTA5Dataset(root, split="train")) == ["00001", "00002", "00003"]
    (root / "train.txt").write_text("00001.png\n")
    (root / "val.txt").write_text("00002.png\n00003.png\n")
    assert names(GTA5Dataset(root, split="train")) == ["00001"]
    assert names(GTA5Dataset(root, split="all")) == ["00001", "00002", "00003"]
