"""build_dataset from config objects; subsets, split files and seeded augmentation."""

from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from segshift.config import DatasetConfig
from segshift.data import SegDataset, build_dataset, dataset_options
from segshift.data.folder import FolderDataset
from segshift.errors import ConfigError
from segshift.registry import DATASETS


def Cfg(**fields: Any) -> DatasetConfig:  # noqa: N802 - reads like the dataclass it builds
    """A DatasetConfig defaulting to CamVid."""
    return DatasetConfig(**{"name": "camvid", **fields})


def test_every_registered_dataset_is_a_seg_dataset():
    assert {"camvid", "cityscapes", "folder", "gta5", "synthia"} <= set(DATASETS.names())
    for name in DATASETS.names():
        if name in ("camvid", "cityscapes", "folder", "gta5", "synthia"):
            assert issubclass(DATASETS.get(name), SegDataset)


def test_build_from_dataclass_with_train_augmentation(make_camvid):
    cfg = Cfg(
        root=str(make_camvid()),
        crop_size=[24, 24],
        scale_range=[0.5, 1.5],
        hflip=True,
        photometric=True,
    )
    dataset = build_dataset(cfg, train=True)
    sample = dataset[0, 11]
    assert sample["image"].shape == (3, 24, 24) and sample["label"].shape == (24, 24)
    assert sample["domain"] == "camvid"
    again = dataset[0, 11]
    assert torch.equal(sample["image"], again["image"]) and torch.equal(
        sample["label"], again["label"]
    )
    others = [dataset[0, seed]["image"] for seed in range(12, 16)]
    assert not all(torch.equal(sample["image"], other) for other in others)


def test_build_from_omegaconf_eval_keeps_label_resolution(make_folder, tiny):
    cfg = OmegaConf.create(
        {
            **Cfg().__dict__,
            "name": "folder",
            "root": str(make_folder("palette")),
            "domain": "harbour",
            "resize": [16, 32],
            "options": {"classes": ["water", "pier", "boat"], "mask_format": "palette"},
        }
    )
    dataset = build_dataset(cfg, train=False)
    assert isinstance(dataset, FolderDataset)
    sample = dataset[0]
    assert sample["image"].shape == (3, 16, 32) and sample["label"].shape == (tiny.H, tiny.W)
    assert sample["domain"] == "harbour"


def test_unknown_option_and_name_are_config_errors(make_camvid):
    root = str(make_camvid())
    with pytest.raises(ConfigError, match=r"\['colour'\].*camvid.*known"):
        build_dataset(Cfg(root=root, options={"colour": 1}), train=False)
    with pytest.raises(ConfigError, match="did you mean 'camvid'"):
        build_dataset(Cfg(name="camvd", root=root), train=False)
    assert "mask_format" in dataset_options(FolderDataset)


def test_n_labeled_subsets_are_deterministic_nested_and_complementary(make_camvid):
    root = str(make_camvid(counts={"train": 10}))
    names = lambda **kw: [f.name for f in build_dataset(Cfg(root=root, **kw), train=False).files]  # noqa: E731
    four = names(n_labeled=4, subset_seed=3)
    assert four == names(n_labeled=4, subset_seed=3) == sorted(four)
    assert set(names(n_labeled=2, subset_seed=3)) <= set(four)
    assert four != names(n_labeled=4, subset_seed=4)
    rest = names(n_labeled=4, subset_seed=3, complement=True)
    assert len(rest) == 6 and not set(rest) & set(four)
    with pytest.raises(ConfigError, match="complement: true .* needs n_labeled"):
        names(complement=True)


def test_split_file_then_subset(make_camvid, tmp_path):
    root = make_camvid(counts={"train": 6})
    listed = ["0001TP_000001", "0001TP_000003", "0001TP_000005"]
    split = tmp_path / "split.txt"
    # UniMatch-style "image label" lines, a comment and a blank line
    split.write_text(
        "# labeled\n" + "".join(f"train/images/{n}.jpg train/labels/{n}.png\n\n" for n in listed)
    )
    assert [
        f.name for f in build_dataset(Cfg(root=str(root), split_file=str(split)), train=False).files
    ] == listed
    subset = build_dataset(
        Cfg(root=str(root), split_file=str(split), n_labeled=2), train=False
    ).files
    assert {f.name for f in subset} < set(listed)


def test_split_file_relative_to_root(make_camvid):
    root = make_camvid(counts={"train": 3})
    (root / "one.txt").write_text("0001TP_000002\n")
    dataset = build_dataset(Cfg(root=str(root), split_file="one.txt"), train=False)
    assert [f.name for f in dataset.files] == ["0001TP_000002"]


def test_unseeded_augmentation_follows_torch_seed(make_camvid):
    dataset = build_dataset(
        Cfg(root=str(make_camvid()), crop_size=[16, 16], hflip=True), train=True
    )
    torch.manual_seed(0)
    first = [dataset[0]["image"] for _ in range(3)]
    torch.manual_seed(0)
    second = [dataset[0]["image"] for _ in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not torch.equal(first[0], first[1]) or not torch.equal(first[1], first[2])


def test_batches_collate_into_the_batch_contract(make_camvid):
    dataset = build_dataset(Cfg(root=str(make_camvid()), crop_size=[16, 16]), train=True)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2)))
    assert batch["image"].shape == (2, 3, 16, 16) and batch["image"].dtype == torch.float32
    assert batch["label"].shape == (2, 16, 16) and batch["label"].dtype == torch.int64
    assert batch["index"].tolist() == [0, 1] and batch["domain"] == ["camvid", "camvid"]
    assert batch["name"] == ["0001TP_000000", "0001TP_000001"]
