"""ConfusionMatrix and its metrics against a plain numpy reference."""

import math
import warnings

import numpy as np
import pytest
import torch

from segshift.evaluation import ConfusionMatrix

IGNORE = 255


def reference(pred: np.ndarray, target: np.ndarray, num_classes: int) -> dict:
    """Metrics computed class by class from an np.add.at confusion matrix."""
    valid = target != IGNORE
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (target[valid], pred[valid]), 1)
    iou, accuracy = [], []
    for c in range(num_classes):
        tp = matrix[c, c]
        union = matrix[c, :].sum() + matrix[:, c].sum() - tp
        iou.append(tp / union if union else math.nan)
        accuracy.append(tp / matrix[c, :].sum() if matrix[c, :].sum() else math.nan)
    total = matrix.sum()
    frequency = matrix.sum(axis=1) / total
    fwiou = sum(f * i for f, i in zip(frequency, iou) if f > 0)
    return {
        "matrix": matrix,
        "iou": iou,
        "accuracy": accuracy,
        "pixel_accuracy": np.trace(matrix) / total,
        "fwiou": fwiou,
    }


def random_case(seed: int, shape: tuple[int, ...], num_classes: int):
    """Predictions and targets with ignore pixels, a class only predicted and a class in neither."""
    rng = np.random.default_rng(seed)
    target_classes = np.arange(num_classes - 2)  # last two classes never in the target
    pred_classes = np.arange(num_classes - 1)  # last class in neither: IoU NaN
    target = rng.choice(target_classes, size=shape)
    pred = np.where(rng.random(shape) < 0.6, target, rng.choice(pred_classes, size=shape))
    target[rng.random(shape) < 0.2] = IGNORE
    return pred, target


CASES = [(0, (2, 7, 9), 4), (1, (1, 16, 16), 7), (2, (3, 5, 11), 19), (3, (4, 13), 5)]


def assert_nan_close(actual, expected) -> None:
    np.testing.assert_allclose(np.asarray(actual, float), np.asarray(expected, float), rtol=1e-12)


@pytest.mark.parametrize(("seed", "shape", "num_classes"), CASES)
def test_metrics_match_numpy_reference(seed, shape, num_classes):
    pred, target = random_case(seed, shape, num_classes)
    cm = ConfusionMatrix(num_classes)
    cm.update(torch.from_numpy(pred), torch.from_numpy(target))
    ref = reference(pred, target, num_classes)
    result = cm.compute()

    np.testing.assert_array_equal(cm.matrix.numpy(), ref["matrix"])
    assert cm.matrix.dtype == torch.int64
    assert_nan_close(result["iou"], ref["iou"])
    assert_nan_close(result["accuracy"], ref["accuracy"])
    assert result["miou"] == pytest.approx(np.nanmean(ref["iou"]))
    assert result["mean_accuracy"] == pytest.approx(np.nanmean(ref["accuracy"]))
    assert result["pixel_accuracy"] == pytest.approx(ref["pixel_accuracy"])
    assert result["fwiou"] == pytest.approx(ref["fwiou"])
    assert result["subset"] is None
    assert math.isnan(result["iou"][-1])  # in neither target nor prediction
    assert result["iou"][-2] == 0.0  # predicted, never in the target


def test_updates_accumulate_like_one_update():
    pred, target = random_case(5, (6, 8, 8), 6)
    once, in_parts = ConfusionMatrix(6), ConfusionMatrix(6)
    once.update(torch.from_numpy(pred), torch.from_numpy(target))
    for p, t in zip(pred, target):
        in_parts.update(torch.from_numpy(p), torch.from_numpy(t))
    assert torch.equal(once.matrix, in_parts.matrix)


def test_subset_reuses_full_matrix_iou():
    pred, target = random_case(7, (2, 10, 10), 8)
    cm = ConfusionMatrix(8)
    cm.update(torch.from_numpy(pred), torch.from_numpy(target))
    subset = [0, 2, 3, 7]
    full, sub = cm.compute(), cm.compute(subset)
    assert_nan_close(sub["iou"], full["iou"])
    assert sub["miou"] == pytest.approx(np.nanmean([full["iou"][c] for c in subset]))
    assert sub["mean_accuracy"] == pytest.approx(np.nanmean([full["accuracy"][c] for c in subset]))
    assert sub["pixel_accuracy"] == full["pixel_accuracy"]
    assert sub["subset"] == subset


@pytest.mark.parametrize("subset", [[], [0, 8], [-1]])
def test_bad_subset_raises(subset):
    with pytest.raises(ValueError, match="subset"):
        ConfusionMatrix(8).compute(subset)


def test_target_out_of_range_names_the_value():
    cm = ConfusionMatrix(5)
    with pytest.raises(ValueError, match="target id 7"):
        cm.update(torch.tensor([0, 1, 2]), torch.tensor([0, 7, 255]))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        ConfusionMatrix(3).update(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2))


def test_custom_ignore_index():
    cm = ConfusionMatrix(3, ignore_index=-1)
    cm.update(torch.tensor([0, 1, 2, 2]), torch.tensor([0, -1, 2, 1]))
    assert cm.matrix.sum() == 3
    assert cm.matrix[1, 2] == 1


@pytest.mark.parametrize("in_place", [True, False])
def test_all_reduce_sums_with_fake_fn(in_place):
    pred, target = random_case(11, (2, 9, 9), 5)
    cm = ConfusionMatrix(5)
    cm.update(torch.from_numpy(pred), torch.from_numpy(target))
    before, metrics = cm.matrix.clone(), cm.compute()

    def double_in_place(t: torch.Tensor) -> None:
        t.mul_(2)

    cm.all_reduce(double_in_place if in_place else (lambda t: t * 2))
    assert torch.equal(cm.matrix, before * 2)
    assert_nan_close(cm.compute()["iou"], metrics["iou"])
    assert cm.compute()["pixel_accuracy"] == pytest.approx(metrics["pixel_accuracy"])


def test_empty_matrix_is_all_nan_without_warnings():
    cm = ConfusionMatrix(4)
    cm.update(torch.zeros(3, 3, dtype=torch.long), torch.full((3, 3), IGNORE))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = cm.compute()
    for key in ("miou", "mean_accuracy", "pixel_accuracy", "fwiou"):
        assert math.isnan(result[key])
    assert all(math.isnan(v) for v in result["iou"] + result["accuracy"])


def test_reset_zeroes_counts():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    cm.reset()
    assert cm.matrix.sum() == 0
