"""Labels as users have them: many-to-one ids and colours, ignore entries, an id channel of a
colour mask (CARLA), a built-in mapping on a folder (KITTI's Cityscapes labelIds), and a common
class subset that lets streams with different label spaces train together."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from segshift.config import load_config
from segshift.data import build_dataset, get_label_space
from segshift.data.cityscapes import CityscapesDataset
from segshift.data.folder import FolderDataset
from segshift.data.label_space import common_label_space, label_space_from_classes
from segshift.engine.trainer import Trainer
from segshift.errors import ConfigError, DataError

# CARLA 0.9.10-0.9.13 semantic tags (id in the R channel), the ones the fixture uses
CARLA_CLASSES = [
    {"name": "unlabeled", "id": 0, "ignore": True},
    {"name": "building", "id": 1},
    {"name": "pedestrian", "id": 4},
    {"name": "road line", "id": 6},
    {"name": "road", "id": 7},
    {"name": "sidewalk", "id": 8},
    {"name": "vegetation", "id": 9},
    {"name": "vehicles", "id": 10},
    {"name": "sky", "id": 13},
    {"name": "terrain", "id": 22},
]
CARLA_RAW = [0, 7, 6, 10, 4, 22, 13, 1]  # unlabeled, road, road line, vehicles, ..., building
KITTI_RAW = [7, 0, 26, 27, 24, 22, 23, 8]  # road, unlabeled, car, truck, person, terrain, sky, sw
COMMON = ["road", "sidewalk", "building", "vegetation", "vehicle", "person", "sky"]


def carla_folder(root, tiny, count=2):
    """CARLA-style RGBA masks: the class id in R, noise in G and B, alpha 255."""
    rng = np.random.default_rng(0)
    for k in range(count):
        tiny.save(root / "images" / f"frame{k}.png", tiny.random_image(k))
        mask = rng.integers(0, 256, (tiny.H, tiny.W, 4), dtype=np.uint8)
        mask[..., 0], mask[..., 3] = tiny.band_mask(CARLA_RAW), 255
        tiny.save(root / "masks" / f"frame{k}.png", mask)
    return root


def kitti_folder(root, tiny, count=2):
    """KITTI semantic: single-channel masks of Cityscapes labelIds."""
    for k in range(count):
        tiny.save(root / "images" / f"{k:06d}_10.png", tiny.random_image(k))
        tiny.save(root / "masks" / f"{k:06d}_10.png", tiny.band_mask(KITTI_RAW))
    (root / "classes.yaml").write_text("label_space: cityscapes\n")
    return root


def folder_config(root, **options):
    return SimpleNamespace(
        name="folder", root=str(root), split="train", labeled=True, domain=None, n_labeled=None,
        split_file=None, subset_seed=0, complement=False, resize=None, crop_size=None,
        scale_range=[1.0, 1.0], hflip=False, photometric=False, options=options,
    )  # fmt: skip


def labels(dataset, tiny, bands):
    return tiny.band_values(dataset.load_label(0), bands)


# --- class lists -------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["options", "classes.yaml"])
def test_many_to_one_ids_and_an_ignore_entry(tmp_path, tiny, source):
    classes = [
        {"name": "unlabeled", "id": [0, 1], "ignore": True},
        {"name": "road", "id": 7},
        {"name": "vehicle", "id": [26, 27, 28]},
    ]
    tiny.save(tmp_path / "images" / "a.png", tiny.random_image(0))
    tiny.save(tmp_path / "masks" / "a.png", tiny.band_mask([0, 1, 7, 26, 27, 28, 5]))
    if source == "options":
        dataset = FolderDataset(tmp_path, classes=classes)
    else:
        (tmp_path / "classes.yaml").write_text(
            "classes:\n"
            "  - {name: unlabeled, id: [0, 1], ignore: true}\n"
            "  - {name: road, id: 7}\n"
            "  - {name: vehicle, id: [26, 27, 28]}\n"
        )
        dataset = FolderDataset(tmp_path)
    assert dataset.label_space.class_names == ("road", "vehicle")
    assert labels(dataset, tiny, 7) == [255, 255, 0, 1, 1, 1, 255]  # 5 is unknown: ignored
    assert dataset.label_space.raw_to_train[0] == 255  # ignored ids are known, not unknown


def test_ignore_entry_with_train_ids_keeps_out_of_range_ids_an_error(tmp_path, tiny):
    """Classes without ids read train ids; an ignored colour does not change that."""
    tiny.save(tmp_path / "images" / "a.png", tiny.random_image(0))
    tiny.save(tmp_path / "masks" / "a.png", tiny.band_mask([0, 1, 255, 2]))
    classes = ["road", {"name": "void", "color": [0, 0, 0], "ignore": True}, "car"]
    dataset = FolderDataset(tmp_path, classes=classes)
    assert dataset.label_space.class_names == ("road", "car")
    assert dataset.label_space.void_colors == ((0, 0, 0),)
    with pytest.raises(DataError, match=r"a\.png: label ids \[2\]"):
        dataset.load_label(0)


def test_several_colours_per_class_void_colours_and_ignored_colours(tmp_path, tiny):
    classes = [
        {"name": "road", "color": [128, 64, 128]},
        {"name": "vehicle", "color": [[0, 0, 142], [0, 0, 70], [0, 60, 100]]},
        {"name": "unlabeled", "color": [[0, 0, 0], [81, 0, 81]], "ignore": True},
    ]
    colours = np.array(
        [[128, 64, 128], [0, 0, 142], [0, 0, 70], [0, 60, 100], [0, 0, 0], [81, 0, 81], [9, 9, 9]],
        dtype=np.uint8,
    )
    tiny.save(tmp_path / "images" / "a.png", tiny.random_image(0))
    tiny.save(tmp_path / "masks" / "a.png", colours[tiny.band_mask(range(7))])
    dataset = FolderDataset(tmp_path, classes=classes, mask_format="rgb", void_colors=[[9, 9, 9]])
    assert dataset.label_space.palette == [(128, 64, 128), (0, 0, 142)]
    assert labels(dataset, tiny, 7) == [0, 1, 1, 1, 255, 255, 255]
    with pytest.raises(ConfigError, match=r"void_colors: \[0, 0, 70\] is the colour of class 've"):
        FolderDataset(tmp_path, classes=classes, mask_format="rgb", void_colors=[[0, 0, 70]])


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ([{"name": "a", "id": [1, 1]}], r"classes\[0\]\.id: \[1, 1\] lists an id twice"),
        ([{"name": "a", "id": [1, 2]}, {"name": "b", "id": 2}], r"classes\[1\]\.id: 2 is already"),
        ([{"name": "void", "ignore": True}, "a"], r"classes\[0\]: an ignored entry needs"),
        ([{"name": "void", "id": 0, "ignore": True}], "every entry is ignored"),
        ([{"name": "a", "color": [[1, 2, 3], [4, 5]]}], r"classes\[0\]\.color: expected"),
        ([{"name": "a", "color": [1, 2, 3]}, {"name": "b", "color": [[4, 5, 6], [1, 2, 3]]}],
         r"classes\[1\]\.color: \[1, 2, 3\] is already the colour of class 'a'"),
        ([{"name": "a", "ignore": "yes", "id": 3}], r"classes\[0\]\.ignore: expected true"),
    ],
)  # fmt: skip
def test_ambiguous_class_lists_are_refused(classes, message):
    with pytest.raises(ConfigError, match=message):
        label_space_from_classes("x", classes)


# --- an id channel (CARLA) and a built-in mapping (KITTI) ---------------------------------------


def test_carla_id_in_the_red_channel(tmp_path, tiny):
    dataset = FolderDataset(
        carla_folder(tmp_path, tiny), classes=CARLA_CLASSES, mask_format="channel"
    )
    # unlabeled, road, road line, vehicles, pedestrian, terrain, sky, building
    assert labels(dataset, tiny, 8) == [255, 3, 2, 6, 1, 8, 7, 0]
    assert dataset.load(1)[1].shape == (tiny.H, tiny.W)


def test_mask_channel_picks_another_channel_and_is_checked(tmp_path, tiny):
    carla_folder(tmp_path, tiny)
    green = FolderDataset(tmp_path, classes=["a"], mask_format="channel", mask_channel=3)
    assert labels(green, tiny, 8) == [255] * 8  # alpha 255 everywhere
    with pytest.raises(ConfigError, match="options.mask_channel: is read with mask_format: chan"):
        FolderDataset(tmp_path, classes=["a"], mask_channel=0)
    with pytest.raises(ConfigError, match=r"options.mask_channel: expected 0 \(R\)"):
        FolderDataset(tmp_path, classes=["a"], mask_format="channel", mask_channel=4)
    tiny.save(tmp_path / "masks" / "frame0.png", np.zeros((tiny.H, tiny.W, 3), np.uint8))
    rgb = FolderDataset(tmp_path, classes=["a"], mask_format="channel", mask_channel=3)
    with pytest.raises(DataError, match=r"frame0\.png: has 3 channels, so no channel 3"):
        rgb.load_label(0)


def test_kitti_folder_with_cityscapes_label_ids(tmp_path, tiny):
    dataset = FolderDataset(kitti_folder(tmp_path, tiny))
    assert dataset.label_space.class_names == get_label_space("cityscapes").class_names
    # road 7 -> 0, unlabeled 0 -> 255, car 26 -> 13, truck 27 -> 14, person 24 -> 11,
    # terrain 22 -> 9, sky 23 -> 10, sidewalk 8 -> 1
    assert labels(dataset, tiny, 8) == [0, 255, 13, 14, 11, 9, 10, 1]


# --- a common class subset ----------------------------------------------------------------------

CARLA_REMAP = {
    "classes": COMMON,
    "map": {"vehicles": "vehicle", "pedestrian": "person", "terrain": "vegetation"},
}
KITTI_REMAP = {
    "classes": COMMON,
    "map": {"car": "vehicle", "truck": "vehicle", "bus": "vehicle", "terrain": "vegetation"},
}


def test_carla_and_kitti_share_a_common_class_subset(tmp_path, tiny):
    carla = build_dataset(
        folder_config(
            carla_folder(tmp_path / "carla", tiny),
            classes=CARLA_CLASSES,
            mask_format="channel",
            remap=CARLA_REMAP,
        ),
        train=False,
    )
    kitti = build_dataset(
        folder_config(kitti_folder(tmp_path / "kitti", tiny), remap=KITTI_REMAP), train=False
    )
    assert carla.label_space.class_names == kitti.label_space.class_names == tuple(COMMON)
    # unlabeled, road, road line (unmapped), vehicles, pedestrian, terrain, sky, building
    assert labels(carla, tiny, 8) == [255, 0, 255, 4, 5, 3, 6, 2]
    # road, unlabeled, car, truck, person, terrain, sky, sidewalk
    assert labels(kitti, tiny, 8) == [0, 255, 4, 4, 5, 3, 6, 1]
    assert carla[0]["label"].unique().tolist() == [0, 2, 3, 4, 5, 6, 255]
    # colours of the common classes: the first own class mapped onto each
    assert kitti.label_space.palette[4] == (0, 0, 142)  # car's


def test_common_subset_on_built_in_datasets_with_label_ids_and_train_ids(make_cityscapes, tiny):
    remap = {
        "classes": ["road", "vehicle", "bike", "pole", "signs"],
        "map": {
            "car": "vehicle",
            "bicycle": "bike",
            "traffic light": "signs",
            "traffic sign": "signs",
        },
    }
    label_ids = CityscapesDataset(make_cityscapes(), remap=remap)
    assert label_ids.label_space.class_names == ("road", "vehicle", "bike", "pole", "signs")
    # road, unlabeled, car, bicycle, sidewalk (not common)
    assert labels(label_ids, tiny, 5) == [0, 255, 1, 2, 255]
    train_ids = CityscapesDataset(make_cityscapes(train_ids=True), remap=remap)
    # labelTrainIds, read as they are: pole 5, ignore, traffic light 6, traffic sign 7, vegetation 8
    assert labels(train_ids, tiny, 5) == [3, 255, 4, 4, 255]


def test_common_classes_from_a_label_space_name_keep_its_palette_and_subsets(make_cityscapes):
    dataset = CityscapesDataset(make_cityscapes(), remap={"classes": "cityscapes16"})
    target = get_label_space("cityscapes16")
    assert dataset.label_space.class_names == target.class_names
    assert dataset.label_space.palette == target.palette
    assert dataset.label_space.subsets == target.subsets
    common, lut = common_label_space(get_label_space("cityscapes"), {"classes": "cityscapes16"})
    terrain, sky = (get_label_space("cityscapes").class_names.index(c) for c in ("terrain", "sky"))
    assert lut[terrain] == 255 and lut[sky] == common.class_names.index("sky")


def test_map_to_null_ignores_a_class_of_the_same_name():
    common, lut = common_label_space(
        get_label_space("cityscapes"), {"classes": ["road", "sidewalk"], "map": {"road": None}}
    )
    assert lut[[0, 1, 2, 255]].tolist() == [255, 1, 255, 255]


@pytest.mark.parametrize(
    ("remap", "message"),
    [
        ({"classes": COMMON, "map": {"cars": "vehicle"}},
         r"options.remap.map: 'cars' is not a class of label space 'cityscapes' \(did you mean 'car"),
        ({"classes": COMMON, "map": {"car": "vehicles"}},
         r"options.remap.map.car: 'vehicles' is not one of options.remap.classes \(did you mean 've"),
        ({"classes": "cityscape"}, r"options.remap.classes: unknown label space 'cityscape'"),
        ({"clases": COMMON}, r"options.remap: expected \{classes: "),
        ({"classes": [{"name": "road", "id": 7}]}, r"options.remap.classes\[0\]: expected a label"),
        ({"classes": ["road", "road"]}, r"options.remap.classes\[1\]: class name 'road' is listed"),
    ],
)  # fmt: skip
def test_remap_errors_name_the_key_and_the_class(make_cityscapes, remap, message):
    with pytest.raises(ConfigError, match=message):
        CityscapesDataset(make_cityscapes(), remap=remap)


def test_training_carla_to_kitti_on_the_common_classes(tmp_path, tiny):
    """The trainer accepts a source and a validation set of different label spaces once both map
    onto the same common classes."""
    carla = carla_folder(tmp_path / "carla", tiny)
    kitti = kitti_folder(tmp_path / "kitti", tiny)
    common = "[" + ",".join(COMMON) + "]"
    carla_classes = ",".join(
        f"{{name: '{c['name']}', id: {c['id']}{', ignore: true' if c.get('ignore') else ''}}}"
        for c in CARLA_CLASSES
    )
    cfg = load_config(
        "demo/source_only",
        [
            f"data.streams.labeled.root={carla}",
            f"data.val.root={kitti}",
            f"output_dir={tmp_path / 'runs'}",
            "data.num_workers=0",
            "data.streams.labeled.batch_size=2",
            "data.streams.labeled.crop_size=[32,32]",
            "data.val.batch_size=2",
            "train.iters=1",
            "train.eval_every=1",
            "train.ckpt_every=1",
            "train.progress=plain",
            "schedule.warmup_iters=0",
            "data.streams.labeled.options={mask_format: channel, classes: [" + carla_classes + "],"
            " remap: {classes: " + common + ", map: {vehicles: vehicle, pedestrian: person}}}",
            "data.val.options={remap: {classes: "
            + common
            + ", map: {car: vehicle, truck: vehicle}}}",
        ],
    )
    trainer = Trainer(cfg)
    trainer.fit()
    assert list(trainer.label_space.class_names) == COMMON
    assert trainer.num_classes == 7
