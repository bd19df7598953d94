"""UniMatch-style sliding-window inference (``mode="slide_unimatch"``).

UniMatch's ``evaluate``: windows start at the origin and step by int(2/3 crop) while the start is
inside the image. Border windows are cut short, not shifted back. The softmax of each window is
summed into the full map, and the argmax of the sum is the prediction.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segshift.cli import _inference_overrides, build_parser
from segshift.evaluation import evaluate, predict

NUM_CLASSES = 3
H, W, CROP = 10, 7, (6, 6)  # stride int(6 * 2 / 3) = 4: rows 0, 4, 8; columns 0, 4
# (row, column, height, width) of every window, in the order UniMatch visits them.
UNIMATCH_WINDOWS = [
    (0, 0, 6, 6),
    (0, 4, 6, 3),
    (4, 0, 6, 6),
    (4, 4, 6, 3),
    (8, 0, 2, 6),
    (8, 4, 2, 3),
]


def coordinate_image(batch: int = 1) -> torch.Tensor:
    """Channel 0 holds the row index, channel 1 the column index, channel 2 zeros."""
    rows = torch.arange(H, dtype=torch.float32).view(H, 1).expand(H, W)
    cols = torch.arange(W, dtype=torch.float32).view(1, W).expand(H, W)
    image = torch.stack([rows, cols, torch.zeros(H, W)])
    return image.unsqueeze(0).repeat(batch, 1, 1, 1)


class CornerModel(nn.Module):
    """Constant logits per window that depend on the window's top-left corner.

    Reads the corner from a :func:`coordinate_image` window, so the window layout shows in the
    output. It records (row, column, height, width) of each call.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, int, int, int]] = []

    @staticmethod
    def corner_logits(row: float, col: float) -> torch.Tensor:
        return torch.tensor([-(((row + col) / 4 - c) ** 2) for c in range(NUM_CLASSES)])

    def forward(self, x: torch.Tensor) -> dict:
        row, col = x[0, 0, 0, 0].item(), x[0, 1, 0, 0].item()
        self.calls.append((int(row), int(col), x.shape[-2], x.shape[-1]))
        logits = self.corner_logits(row, col).view(1, NUM_CLASSES, 1, 1)
        return {"out": logits.expand(x.shape[0], NUM_CLASSES, *x.shape[-2:])}


def test_window_layout_starts_at_origin_and_truncates_at_the_border():
    model = CornerModel()
    predict(model, coordinate_image(), NUM_CLASSES, mode="slide_unimatch", crop_size=CROP)
    assert model.calls == UNIMATCH_WINDOWS
    # mmseg's layout, for contrast: full-size windows, the last shifted back to the border.
    model = CornerModel()
    predict(model, coordinate_image(), NUM_CLASSES, mode="slide", crop_size=CROP)
    assert model.calls == [(0, 0, 6, 6), (0, 1, 6, 6), (4, 0, 6, 6), (4, 1, 6, 6)]


def test_result_is_the_normalised_sum_of_window_softmaxes():
    summed = torch.zeros(NUM_CLASSES, H, W)
    for row, col, h, w in UNIMATCH_WINDOWS:
        softmax = CornerModel.corner_logits(row, col).softmax(0)
        summed[:, row : row + h, col : col + w] += softmax.view(NUM_CLASSES, 1, 1)
    # Windows per pixel, by hand: rows 4-5 and 8-9 lie in two row windows, and columns 4-5 lie
    # in two column windows.
    row_count = torch.tensor([1, 1, 1, 1, 2, 2, 1, 1, 2, 2], dtype=torch.float32)
    col_count = torch.tensor([1, 1, 1, 1, 2, 2, 1], dtype=torch.float32)
    count = row_count.view(H, 1) * col_count.view(1, W)

    probs = predict(
        CornerModel(), coordinate_image(2), NUM_CLASSES, mode="slide_unimatch", crop_size=CROP
    )
    assert probs.shape == (2, NUM_CLASSES, H, W)
    torch.testing.assert_close(probs[0], summed / count)
    torch.testing.assert_close(probs[1], probs[0])
    torch.testing.assert_close(probs.sum(1), torch.ones(2, H, W))
    assert torch.equal(probs[0].argmax(0), summed.argmax(0))
    # Each window's own argmax is round((row + col) / 4), clipped to 2; overlaps mix them.
    expected = torch.tensor(
        [[0, 0, 0, 0, 0, 0, 1]] * 4
        + [[0, 0, 0, 0, 1, 1, 2]] * 2
        + [[1, 1, 1, 1, 2, 2, 2]] * 2
        + [[2, 2, 2, 2, 2, 2, 2]] * 2
    )
    assert torch.equal(probs[0].argmax(0), expected)
    # The window layout matters here: the prediction differs from one whole-image window.
    whole = predict(CornerModel(), coordinate_image(), NUM_CLASSES)
    assert not torch.equal(whole[0].argmax(0), summed.argmax(0))


def test_explicit_stride():
    model = CornerModel()
    predict(
        model,
        coordinate_image(),
        NUM_CLASSES,
        mode="slide_unimatch",
        crop_size=(5, 4),
        stride=(5, 3),
    )
    assert model.calls == [
        (row, col, min(5, H - row), min(4, W - col)) for row in (0, 5) for col in (0, 3, 6)
    ]


def test_pointwise_model_agrees_with_whole():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, NUM_CLASSES, 1)

    def model(x):
        return {"out": conv(x)}

    x = torch.rand(2, 3, 13, 17, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = predict(model, x, NUM_CLASSES)
        slide = predict(model, x, NUM_CLASSES, mode="slide_unimatch", crop_size=(6, 9))
        flipped = predict(model, x, NUM_CLASSES, mode="slide_unimatch", crop_size=(6, 9), flip=True)
    torch.testing.assert_close(slide, whole)
    torch.testing.assert_close(flipped, whole)


def test_image_smaller_than_the_crop_is_one_window_without_padding():
    model = CornerModel()
    probs = predict(
        model, coordinate_image(), NUM_CLASSES, mode="slide_unimatch", crop_size=(16, 16)
    )
    assert model.calls == [(0, 0, H, W)]
    torch.testing.assert_close(probs, predict(CornerModel(), coordinate_image(), NUM_CLASSES))


def test_output_size_resizes_the_probabilities():
    probs = predict(
        CornerModel(),
        coordinate_image(),
        NUM_CLASSES,
        mode="slide_unimatch",
        crop_size=CROP,
        output_size=(20, 14),
    )
    assert probs.shape == (1, NUM_CLASSES, 20, 14)
    torch.testing.assert_close(probs.sum(1), torch.ones(1, 20, 14))


def test_needs_a_crop_size():
    with pytest.raises(ValueError, match="crop_size"):
        predict(CornerModel(), coordinate_image(), NUM_CLASSES, mode="slide_unimatch")
    with pytest.raises(ValueError, match="slide_unimatch"):
        predict(CornerModel(), coordinate_image(), NUM_CLASSES, mode="sliding")


def test_evaluate_passes_the_mode_through():
    model = CornerModel()
    label = predict(CornerModel(), coordinate_image(), NUM_CLASSES, "slide_unimatch", CROP)
    batch = {"image": coordinate_image(), "label": label.argmax(1)}
    result = evaluate(model, [batch], NUM_CLASSES, mode="slide_unimatch", crop_size=CROP)
    assert model.calls == UNIMATCH_WINDOWS
    assert result["pixel_accuracy"] == 1.0


def test_cli_accepts_the_mode():
    args = build_parser().parse_args(["eval", "run_dir", "--mode", "slide_unimatch"])
    assert "eval.mode=slide_unimatch" in _inference_overrides(args)


def test_logits_are_resized_with_the_models_align_corners() -> None:
    class TwoPixels(torch.nn.Module):
        align_corners = False

        def forward(self, x):  # logits (1, 2, 1, 2) whatever the input
            row = torch.tensor([0.0, 4.0])
            return {"out": torch.stack([row, -row]).view(1, 2, 1, 2)}

    model = TwoPixels()
    images = torch.zeros(1, 3, 1, 4)
    half_pixel = predict(model, images, 2)[0, 0, 0]
    model.align_corners = True
    corners = predict(model, images, 2)[0, 0, 0]
    # logit of class 0 at x = 1 of 4: 0.25 * 4 = 1 (half-pixel) vs 1/3 * 4 (corners)
    assert half_pixel[1].item() == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item(), abs=1e-6)
    assert corners[1].item() == pytest.approx(torch.sigmoid(torch.tensor(8 / 3)).item(), abs=1e-6)
