"""A semi-supervised setup as a user brings it: a labeled folder and a folder of images only."""

import torch

from segshift.config import load_config
from segshift.data import build_dataset


def folder_overrides(labeled, unlabeled, val, *extra: str) -> list[str]:
    """semi/base with every dataset replaced by a plain folder (what the user's config names)."""
    overrides = []
    for key, root, is_labeled in (
        ("data.streams.labeled", labeled, True),
        ("data.streams.unlabeled", unlabeled, False),
        ("data.val", val, True),
    ):
        overrides += [f"{key}.name=folder", f"{key}.root={root}", f"{key}.domain=harbour"]
        if key != "data.val":
            overrides += [f"{key}.n_labeled=null", f"{key}.labeled={str(is_labeled).lower()}"]
    return [*overrides, "data.streams.unlabeled.complement=false", *extra]


def test_labeled_folder_and_unlabeled_image_folder_load(make_folder, tmp_path, tiny):
    labeled = make_folder("index", count=3, classes_yaml="classes: [water, pier, boat]\n")
    unlabeled = tmp_path / "photos"  # images only: no masks/, no classes.yaml
    for k in range(5):
        tiny.save(unlabeled / "images" / f"photo{k}.jpg", tiny.random_image(100 + k))
    (unlabeled / "images" / "notes.txt").write_text("not an image")
    cfg = load_config("semi/base", folder_overrides(labeled, unlabeled, labeled))

    labeled_set = build_dataset(cfg.data.streams.labeled, train=True)
    unlabeled_set = build_dataset(cfg.data.streams.unlabeled, train=True)
    val_set = build_dataset(cfg.data.val, train=False)

    assert len(labeled_set) == 3 and labeled_set.labeled
    assert labeled_set.label_space.class_names == ("water", "pier", "boat")
    sample = labeled_set[0, 7]
    assert sample["image"].shape == (3, 128, 160) and sample["label"].shape == (128, 160)
    assert set(sample["label"].unique().tolist()) <= {0, 1, 2, 255}

    assert [f.name for f in unlabeled_set.files] == [f"photo{k}" for k in range(5)]
    assert not unlabeled_set.labeled and all(f.mask is None for f in unlabeled_set.files)
    photo = unlabeled_set[4, 7]
    assert "label" not in photo and photo["domain"] == "harbour"
    assert photo["image"].shape == (3, 128, 160) and photo["image"].dtype == torch.float32
    assert torch.equal(photo["image"], unlabeled_set[4, 7]["image"])  # seeded augmentation

    label = val_set[0]["label"].numpy()  # evaluation keeps the mask's own resolution
    assert label.shape == (tiny.H, tiny.W)
    assert tiny.band_values(label, 4) == tiny.FOLDER_IDS


def test_unlabeled_images_directly_in_the_folder(tmp_path, tiny):
    photos = tmp_path / "photos"
    for k in range(2):
        tiny.save(photos / f"p{k}.png", tiny.random_image(k))
    cfg = load_config(
        "semi/base",
        folder_overrides(
            tmp_path, photos, tmp_path, "data.streams.unlabeled.options={image_dir: .}"
        ),
    )
    dataset = build_dataset(cfg.data.streams.unlabeled, train=False)
    assert [f.name for f in dataset.files] == ["p0", "p1"]
    assert tuple(dataset[1]["image"].shape) == (3, 144, 192)  # semi/base resizes
