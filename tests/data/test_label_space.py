import numpy as np
import pytest

from segshift.data import get_label_space, label_space_from_classes, label_space_names
from segshift.errors import ConfigError, DataError


def test_builtin_spaces_have_consistent_sizes():
    assert {"cityscapes", "camvid", "synthia16", "cityscapes16"} <= set(label_space_names())
    sizes = {name: get_label_space(name).num_classes for name in label_space_names()}
    assert sizes == {
        "camvid": 11,
        "cityscapes": 19,
        "cityscapes16": 16,
        "synthia16": 16,
        "cityscapes_synthia19": 19,
        "synthia19": 19,
        "voc": 21,
    }


def test_cityscapes_label_ids_map_to_train_ids():
    space = get_label_space("cityscapes")
    raw = np.array([[7, 8, 11, 26, 33, 0, 1, 6, 34, -1]], dtype=np.int32)
    assert space.encode(raw).tolist() == [[0, 1, 2, 13, 18, 255, 255, 255, 255, 255]]
    assert space.class_names[0] == "road" and space.palette[0] == (128, 64, 128)


def test_encode_handles_uint16_ids_beyond_the_map():
    space = get_label_space("camvid")
    raw = np.array([[0, 10, 11, 300, 65535]], dtype=np.uint16)
    out = space.encode(raw)
    assert out.dtype == np.uint8
    assert out.tolist() == [[0, 10, 255, 255, 255]]


def test_synthia16_uses_the_literature_mapping_and_13_class_subset():
    space = get_label_space("synthia16")
    raw = np.array([[3, 4, 2, 21, 5, 7, 15, 9, 6, 1, 10, 17, 8, 19, 12, 11, 0, 16, 18]])
    assert space.encode(raw).tolist() == [list(range(16)) + [255, 255, 255]]
    assert "terrain" not in space.class_names and "truck" not in space.class_names
    thirteen = [space.class_names[i] for i in space.subsets["13"]]
    assert len(thirteen) == 13 and not {"wall", "fence", "pole"} & set(thirteen)


def test_cityscapes16_maps_cityscapes_label_ids_to_synthia_classes():
    space = get_label_space("cityscapes16")
    assert space.class_names == get_label_space("synthia16").class_names
    # road, terrain (dropped), bicycle, truck (dropped), person
    assert space.encode(np.array([[7, 22, 33, 27, 24]])).tolist() == [[0, 255, 15, 255, 10]]


def test_colorize_and_decode_rgb_round_trip():
    space = get_label_space("camvid")
    ids = np.array([[0, 3], [255, 10]], dtype=np.uint8)
    rgb = space.colorize(ids)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[1, 0].tolist() == [0, 0, 0] and rgb[0, 1].tolist() == [128, 64, 128]
    assert space.decode_rgb(rgb, "mask.png").tolist() == ids.tolist()  # black = void


def test_decode_rgb_names_file_and_colour_when_unknown():
    space = get_label_space("cityscapes")
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[0, 0] = (1, 2, 3)
    with pytest.raises(DataError, match=r"frame_7\.png.*\(1, 2, 3\)"):
        space.decode_rgb(rgb, "frame_7.png")


def test_check_train_ids_names_file():
    space = get_label_space("camvid")
    assert space.check_train_ids(np.array([[0, 255]]), "a.png").dtype == np.uint8
    with pytest.raises(DataError, match=r"a\.png.*\[11, 40\]"):
        space.check_train_ids(np.array([[0, 11, 40]]), "a.png")


def test_label_space_from_classes():
    space = label_space_from_classes(
        "harbour", ["water", {"name": "pier", "color": [1, 2, 3], "id": 9}]
    )
    assert space.class_names == ("water", "pier")
    assert space.palette[1] == (1, 2, 3) and len(set(space.palette)) == 2
    assert space.encode(np.array([[0, 9, 1]])).tolist() == [[0, 1, 255]]


@pytest.mark.parametrize(
    "classes",
    [[], [{"colour": [1, 2, 3]}], [{"name": "a", "color": [1, 2]}], [{"name": "a", "id": 1}, "b"]],
)
def test_label_space_from_classes_rejects_bad_lists(classes):
    with pytest.raises(ConfigError, match="classes"):
        label_space_from_classes("x", classes)


def test_unknown_label_space_suggests_a_name():
    with pytest.raises(ConfigError, match="did you mean 'camvid'"):
        get_label_space("camvd")
