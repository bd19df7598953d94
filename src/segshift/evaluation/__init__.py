"""Evaluation: confusion matrix and metrics, whole/slide inference with TTA, tables, visuals."""

from segshift.evaluation.confusion import ConfusionMatrix
from segshift.evaluation.evaluate import evaluate
from segshift.evaluation.inference import predict
from segshift.evaluation.per_image import PerImageMeanIoU, per_image_iou
from segshift.evaluation.tables import MetricsTable
from segshift.evaluation.visualise import (
    colorize,
    overlay,
    panel,
    save_prediction,
    write_legend,
    write_png,
)

__all__ = [
    "ConfusionMatrix",
    "MetricsTable",
    "PerImageMeanIoU",
    "colorize",
    "evaluate",
    "overlay",
    "panel",
    "per_image_iou",
    "predict",
    "save_prediction",
    "write_legend",
    "write_png",
]
