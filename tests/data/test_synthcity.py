"""synthcity: determinism, file layout, label validity and a real colour gap between styles."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from segshift.data.label_space import get_label_space
from segshift.data.synthcity import (
    CLASSES,
    GENERATOR_VERSION,
    generate,
    parse_size,
    render_sample,
)
from segshift.errors import DataError

SIZE = (48, 64)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("sim"), "sim", n=4, size=SIZE, seed=3)


def test_same_seed_gives_identical_bytes(sim_dir: Path, tmp_path: Path) -> None:
    again = generate(tmp_path / "again", "sim", n=4, size=SIZE, seed=3)
    assert _files(again) == _files(sim_dir)


def test_workers_give_identical_bytes(tmp_path: Path) -> None:
    one = generate(tmp_path / "one", "photo", n=4, size=SIZE, seed=5)
    two = generate(tmp_path / "two", "photo", n=4, size=SIZE, seed=5, workers=2)
    assert _files(one) == _files(two)


def test_different_seed_gives_different_images(sim_dir: Path, tmp_path: Path) -> None:
    other = generate(tmp_path / "other", "sim", n=4, size=SIZE, seed=4)
    name = "images/sim_000000.png"
    assert (other / name).read_bytes() != (sim_dir / name).read_bytes()


def test_single_index_regenerates_the_batch_output(sim_dir: Path) -> None:
    image, mask = render_sample("sim", SIZE, seed=3, index=2)
    saved_image = cv2.imread(str(sim_dir / "images" / "sim_000002.png"))[..., ::-1]
    saved_mask = cv2.imread(str(sim_dir / "masks" / "sim_000002.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(saved_image, image)
    np.testing.assert_array_equal(saved_mask, mask)


def test_layout_and_shapes(sim_dir: Path) -> None:
    names = [f"sim_{i:06d}.png" for i in range(4)]
    assert sorted(p.name for p in (sim_dir / "images").iterdir()) == names
    assert sorted(p.name for p in (sim_dir / "masks").iterdir()) == names
    image = cv2.imread(str(sim_dir / "images" / names[0]), cv2.IMREAD_UNCHANGED)
    mask = cv2.imread(str(sim_dir / "masks" / names[0]), cv2.IMREAD_UNCHANGED)
    assert image.shape == (*SIZE, 3) and image.dtype == np.uint8
    assert mask.shape == SIZE and mask.dtype == np.uint8


@pytest.mark.parametrize("style", ["sim", "photo"])
def test_masks_hold_train_ids_and_every_class_appears(style: str) -> None:
    seen: set[int] = set()
    for index in range(12):
        image, mask = render_sample(style, (96, 128), seed=0, index=index)
        assert image.shape == (96, 128, 3) and mask.shape == (96, 128)
        values = set(np.unique(mask).tolist())
        assert values <= set(range(11)) | {255}
        seen |= values
    assert set(range(11)) <= seen


def test_manifest(sim_dir: Path) -> None:
    manifest = json.loads((sim_dir / "manifest.json").read_text())
    assert manifest["style"] == "sim" and manifest["n"] == 4 and manifest["seed"] == 3
    assert manifest["size"] == list(SIZE)
    assert manifest["generator_version"] == GENERATOR_VERSION
    freqs = manifest["class_frequencies"]
    assert list(freqs) == [name for name, _ in CLASSES]
    assert sum(freqs.values()) + manifest["void_frequency"] == pytest.approx(1.0, abs=1e-4)
    assert freqs["road"] > 0 and freqs["sky"] > 0


def test_classes_yaml_matches_camvid(sim_dir: Path) -> None:
    spec = yaml.safe_load((sim_dir / "classes.yaml").read_text())
    camvid = get_label_space("camvid")
    assert spec["label_space"] == "camvid"
    assert [c["name"] for c in spec["classes"]] == list(camvid.class_names)
    assert [tuple(c["color"]) for c in spec["classes"]] == [tuple(c) for c in camvid.palette]
    assert spec["classes"][0] == {"name": "sky", "color": [128, 128, 128]}


def test_no_temporary_files_left(sim_dir: Path) -> None:
    assert not [p for p in sim_dir.rglob("*") if ".tmp" in p.name]


def _class_colour_stats(style: str) -> tuple[np.ndarray, float]:
    """Per-class mean RGB over a few scenes, and the mean HSV saturation of all pixels."""
    sums, counts, sat = np.zeros((11, 3)), np.zeros(11), []
    for index in range(6):
        image, mask = render_sample(style, (96, 128), seed=1, index=index)
        for c in range(11):
            sel = mask == c
            sums[c] += image[sel].sum(0)
            counts[c] += sel.sum()
        sat.append(cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[..., 1].mean())
    return sums / np.maximum(counts, 1)[:, None], float(np.mean(sat))


def test_styles_differ_in_colour_statistics() -> None:
    sim_means, sim_sat = _class_colour_stats("sim")
    photo_means, photo_sat = _class_colour_stats("photo")
    assert sim_sat > photo_sat + 20  # sim is saturated, photo is washed out
    for cls in ("sky", "tree", "sidewalk"):
        c = [name for name, _ in CLASSES].index(cls)
        assert np.abs(sim_means[c] - photo_means[c]).max() > 20, cls


def test_photo_is_textured_and_sim_is_flat() -> None:
    def road_grain(style: str) -> float:
        image, mask = render_sample(style, (96, 128), seed=2, index=0)
        road = cv2.erode((mask == 3).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        # The median ignores the sharp edges of lane markings, which both styles have.
        return float(np.median(np.abs(cv2.Laplacian(grey, cv2.CV_32F))[road]))

    assert road_grain("sim") == 0.0
    assert road_grain("photo") > 0.5


def test_parse_size() -> None:
    assert parse_size("128x160") == (128, 160)
    assert parse_size("64X96") == (64, 96)
    for bad in ("128", "axb", "8x8"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_unknown_style_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="style"):
        generate(tmp_path, "cartoon", n=1, size=SIZE, seed=0)


def test_regenerating_smaller_or_other_style_leaves_no_stale_scenes(tmp_path):
    out = tmp_path / "set"
    generate(out, "sim", n=3, size=(32, 40), seed=0)
    generate(out, "photo", n=2, size=(32, 40), seed=0)
    assert sorted(p.name for p in (out / "images").iterdir()) == [
        "photo_000000.png",
        "photo_000001.png",
    ]
    assert sorted(p.name for p in (out / "masks").iterdir()) == [
        "photo_000000.png",
        "photo_000001.png",
    ]


def test_foreign_files_stop_generation_untouched(tmp_path):
    out = tmp_path / "set"
    (out / "images").mkdir(parents=True)
    precious = out / "images" / "holiday.jpg"
    precious.write_bytes(b"not ours")
    with pytest.raises(DataError, match="holiday.jpg: not a synthcity file"):
        generate(out, "sim", n=2, size=(32, 40), seed=0)
    assert precious.read_bytes() == b"not ours"
