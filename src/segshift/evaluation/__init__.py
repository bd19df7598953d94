"""Evaluation: confusion matrix and metrics, whole/slide inference with TTA, tables, visuals."""

from segshift.evaluation.confusion import ConfusionMatrix
from segshift.evaluation.evaluate import evaluate
from segshift.evaluation.inference import predict
from segshift.evaluation.tables import MetricsTable
from segshift.evaluation.visualise import colorize, overlay, save_prediction

__all__ = [
    "ConfusionMatrix",
    "MetricsTable",
    "colorize",
    "evaluate",
    "overlay",
    "predict",
    "save_prediction",
]
