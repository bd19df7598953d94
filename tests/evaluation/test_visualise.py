"""colorize / overlay values and PNG output."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from segshift.errors import DataError
from segshift.evaluation import colorize, overlay, save_prediction

PALETTE = [(128, 64, 128), (244, 35, 232), (70, 70, 70)]


def test_colorize_maps_ids_and_ignore_to_black():
    rgb = colorize(np.array([[0, 1], [2, 255]]), PALETTE)
    assert rgb.dtype == np.uint8
    np.testing.assert_array_equal(
        rgb, [[[128, 64, 128], [244, 35, 232]], [[70, 70, 70], [0, 0, 0]]]
    )
    np.testing.assert_array_equal(colorize(torch.tensor([[0, 1], [2, 255]]), PALETTE), rgb)


def test_colorize_rejects_ids_without_colour():
    with pytest.raises(ValueError, match="train id 3"):
        colorize(np.array([[0, 3]]), PALETTE)


@pytest.mark.parametrize(("alpha", "expected"), [(0.0, 100), (0.25, 125), (0.5, 150), (1.0, 200)])
def test_overlay_blends(alpha, expected):
    image = np.full((2, 3, 3), 100, np.uint8)
    mask = np.full((2, 3, 3), 200, np.uint8)
    blended = overlay(image, mask, alpha)
    assert blended.dtype == np.uint8
    assert (blended == expected).all()


def test_overlay_checks_arguments():
    image = np.zeros((2, 3, 3), np.uint8)
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, image, 1.5)
    with pytest.raises(ValueError, match="must both be"):
        overlay(image, np.zeros((3, 2, 3), np.uint8))


def test_save_prediction_writes_colour_and_overlay(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    pred = np.random.default_rng(1).integers(0, 3, (4, 5))
    color_path, overlay_path = save_prediction(tmp_path / "sub" / "frame", image, pred, PALETTE)
    assert color_path.name == "frame_color.png"
    assert overlay_path.name == "frame_overlay.png"
    colour = colorize(pred, PALETTE)
    np.testing.assert_array_equal(np.asarray(Image.open(color_path)), colour)
    np.testing.assert_array_equal(np.asarray(Image.open(overlay_path)), overlay(image, colour))


def test_save_prediction_disk_full_is_a_data_error(tmp_path, monkeypatch):
    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(DataError, match="frame_color.png"):
        save_prediction(
            tmp_path / "frame", np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2)), PALETTE
        )
    assert os.listdir(tmp_path) == []
