"""Per-image mIoU (mean over images of each image's mIoU) on a hand-computed example."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segshift.config import load_config
from segshift.evaluation import MetricsTable, PerImageMeanIoU, evaluate, per_image_iou

C = 3
# Image A: class 0 -> TP 2, FN 1 (IoU 2/3); class 1 -> TP 3, FP 1 (IoU 3/4); class 2 absent from
# both, skipped. Image score (2/3 + 3/4) / 2 = 17/24.
TARGET_A = [[0, 0, 1], [0, 1, 1]]
PRED_A = [[0, 1, 1], [0, 1, 1]]
# Image B: the 255 column is not scored (its predicted 0s do not count as false positives).
# class 0 -> 1; class 1 predicted once, never labeled -> 0; class 2 -> TP 1, FN 1 -> 1/2.
# Image score (1 + 0 + 1/2) / 3 = 1/2.
TARGET_B = [[2, 2, 255], [0, 0, 255]]
PRED_B = [[2, 1, 0], [0, 0, 0]]
PER_IMAGE = (17 / 24 + 1 / 2) / 2  # 29/48
# The dataset-level mIoU pools the pixels: class 0 4/5, class 1 3/5, class 2 1/2.
DATASET = (4 / 5 + 3 / 5 + 1 / 2) / 3


def pair() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([PRED_A, PRED_B]), torch.tensor([TARGET_A, TARGET_B])


def test_per_image_iou_table():
    pred, target = pair()
    iou = per_image_iou(pred, target, C)
    assert iou.shape == (2, C) and iou.dtype == torch.float64
    assert iou[0, :2].tolist() == pytest.approx([2 / 3, 3 / 4]) and math.isnan(iou[0, 2])
    assert iou[1].tolist() == pytest.approx([1.0, 0.0, 0.5])


def test_two_images_mean_of_image_scores():
    pred, target = pair()
    metric = PerImageMeanIoU(C)
    metric.update(pred, target)
    assert metric.count == 2
    assert metric.compute() == pytest.approx(29 / 48)
    # the same images one batch at a time give the same value
    single = PerImageMeanIoU(C)
    for i in range(2):
        single.update(pred[i : i + 1], target[i : i + 1])
    assert single.compute() == pytest.approx(PER_IMAGE)


def test_images_without_scored_pixels_are_left_out():
    pred, target = pair()
    metric = PerImageMeanIoU(C)
    metric.update(pred, target)
    metric.update(torch.zeros(1, 2, 3, dtype=torch.long), torch.full((1, 2, 3), 255))
    assert metric.count == 2 and metric.compute() == pytest.approx(PER_IMAGE)
    assert math.isnan(PerImageMeanIoU(C).compute())


def test_subset_restricts_each_image_mean():
    pred, target = pair()
    metric = PerImageMeanIoU(C, subset=[0, 2])
    metric.update(pred, target)
    # A: class 0 only (2/3); B: classes 0 and 2 ((1 + 1/2) / 2)
    assert metric.compute() == pytest.approx((2 / 3 + 3 / 4) / 2)
    with pytest.raises(ValueError, match="subset"):
        PerImageMeanIoU(C, subset=[3])


def test_all_reduce_sums_sums_and_counts():
    pred, target = pair()
    ranks = [PerImageMeanIoU(C), PerImageMeanIoU(C)]
    for rank, metric in enumerate(ranks):
        metric.update(pred[rank : rank + 1], target[rank : rank + 1])
    total = ranks[0].totals + ranks[1].totals
    ranks[0].all_reduce(lambda t: total.clone())
    assert ranks[0].count == 2 and ranks[0].compute() == pytest.approx(PER_IMAGE)


def test_bad_ids_are_refused():
    with pytest.raises(ValueError, match="prediction id 3"):
        per_image_iou(torch.tensor([[3]]), torch.tensor([[0]]), C)
    with pytest.raises(ValueError, match="shape"):
        per_image_iou(torch.zeros(1, 2, 2), torch.zeros(1, 2, 3), C)


class OneHotModel(nn.Module):
    """Logits = the image, so an image that one-hot encodes ``PRED`` predicts it exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> dict:
        return {"out": x * self.scale}


def test_evaluate_reports_both_mious_and_the_tables_show_it():
    pred, target = pair()
    image = F.one_hot(pred, C).permute(0, 3, 1, 2).float() * 10
    batches = [{"image": image[i : i + 1], "label": target[i : i + 1]} for i in range(2)]
    result = evaluate(OneHotModel(), batches, C, per_image=True)
    assert result["miou"] == pytest.approx(DATASET)
    assert result["miou_per_image"] == pytest.approx(PER_IMAGE)
    assert "miou_per_image" not in evaluate(OneHotModel(), batches, C)
    table = MetricsTable(result, ["a", "b", "c"])
    assert table.arrow().splitlines()[-1] == "===> mIoU per image: 60.42"
    assert "| mIoU/image |" in table.grid() and "**mIoU per image** | 60.42" in table.to_markdown()


def test_eval_config_key():
    assert load_config("demo/source_only").eval.per_image_miou is False
    cfg = load_config("demo/source_only", ["eval.per_image_miou=true"])
    assert cfg.eval.per_image_miou is True
