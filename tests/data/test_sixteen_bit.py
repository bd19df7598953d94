"""16-bit images and masks are read correctly or refused by name; never whitened or wrapped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segshift.data.folder import FolderDataset
from segshift.data.io import read_image, read_mask
from segshift.data.label_space import LabelSpace, label_space_from_classes
from segshift.errors import ConfigError, DataError


def save16(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint16)).save(path)
    return path


def test_sixteen_bit_gray_image_is_scaled_not_white(tmp_path: Path) -> None:
    # v * 257 is v in 8 bits exactly; 300 -> 1.17 -> 1; 254 * 257 + 128 -> 254.498 -> 254
    values = np.array([[0, 10 * 257, 128 * 257, 65535, 300, 254 * 257 + 128]], dtype=np.uint16)
    path = save16(tmp_path / "gray16.png", values)
    assert Image.open(path).mode.startswith("I")  # the test really writes a 16-bit file
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (1, 6, 3)
    assert image[0, :, 0].tolist() == [0, 10, 128, 255, 1, 254]
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()


def test_eight_bit_images_unchanged(tmp_path: Path) -> None:
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 7
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    assert (read_image(tmp_path / "rgb.png") == rgb).all()
    assert (read_image(tmp_path / "gray.png") == rgb[..., :1]).all()


def test_float_image_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "depth.tif"
    Image.fromarray(np.ones((4, 4), np.float32)).save(path)
    with pytest.raises(DataError, match=r"depth\.tif: floating-point image"):
        read_image(path)
    with pytest.raises(DataError, match=r"depth\.tif: a mask must hold integer ids"):
        read_mask(path)


def test_sixteen_bit_mask_keeps_ids_above_255(tmp_path: Path) -> None:
    path = save16(tmp_path / "m.png", np.array([[299, 256, 43, 1000]]))
    assert read_mask(path).tolist() == [[299, 256, 43, 1000]]


def _folder(root: Path, mask: np.ndarray, classes_yaml: str) -> Path:
    Image.fromarray(np.zeros((*mask.shape, 3), np.uint8)).save(_mk(root / "images") / "a.png")
    save16(root / "masks" / "a.png", mask)
    (root / "classes.yaml").write_text(classes_yaml)
    return root


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_sixteen_bit_raw_ids_map_through_explicit_ids(tmp_path: Path) -> None:
    classes = "classes:\n  - {name: a, id: 256}\n  - {name: b, id: 299}\n  - {name: c, id: 43}\n"
    root = _folder(tmp_path / "f", np.array([[299, 256, 43, 7, 1000]]), classes)
    _, label = FolderDataset(root).load(0)
    # 299 must not wrap to 43 (class c); unknown raw ids are ignored
    assert label.tolist() == [[1, 0, 2, 255, 255]]


def test_sixteen_bit_train_ids_out_of_range_name_the_file(tmp_path: Path) -> None:
    root = _folder(tmp_path / "f", np.array([[0, 1, 299]]), "classes: [a, b, c]\n")
    with pytest.raises(DataError, match=r"masks/a\.png: label ids \[299\] are outside 0\.\.2"):
        FolderDataset(root).load(0)


def test_more_than_255_classes_are_refused_by_name(tmp_path: Path) -> None:
    names = "".join(f"  - c{i}\n" for i in range(300))
    root = _folder(tmp_path / "f", np.array([[299]]), f"classes:\n{names}")
    with pytest.raises(ConfigError, match=r"classes\.yaml: 300 classes, at most 255"):
        FolderDataset(root)
    assert label_space_from_classes("ok", [f"c{i}" for i in range(255)]).num_classes == 255
    with pytest.raises(ValueError, match="at most 255"):
        LabelSpace("big", tuple(map(str, range(256))), [(0, 0, 0)] * 256, {})


def test_void_colour_that_is_a_class_colour_is_refused(tmp_path: Path) -> None:
    classes = "classes:\n  - {name: a, color: [0, 0, 0]}\n  - {name: b, color: [9, 9, 9]}\n"
    root = _folder(tmp_path / "f", np.array([[0, 1]]), classes)
    with pytest.raises(ConfigError, match=r"void_colors: \[9, 9, 9\] is the colour of class 'b'"):
        FolderDataset(root, void_colors=[[9, 9, 9]])
