"""Evaluate a segmentation model over a labeled loader."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn
from tqdm import tqdm

from segshift.errors import SegshiftError
from segshift.evaluation.confusion import ConfusionMatrix
from segshift.evaluation.inference import predict
from segshift.evaluation.per_image import PerImageMeanIoU


def evaluate(
    model: nn.Module,
    loader: Iterable[Mapping[str, torch.Tensor]],
    num_classes: int,
    *,
    ignore_index: int = 255,
    mode: str = "whole",
    crop_size: tuple[int, int] | None = None,
    stride: tuple[int, int] | None = None,
    flip: bool = False,
    scales: Sequence[float] = (1.0,),
    device: torch.device | str | None = None,
    all_reduce: Callable[[torch.Tensor], torch.Tensor | None] | None = None,
    progress: bool = False,
    subset: Sequence[int] | None = None,
    per_image: bool = False,
    class_order: Sequence[int] | None = None,
) -> dict:
    """Accumulate a confusion matrix over ``loader`` and compute the metrics.

    Each batch is a dict with ``image`` (B, 3, h, w) and ``label`` (B, H, W) int64 (255 =
    ignore); predictions are made at the label's size, so labels kept at full resolution are
    scored at full resolution. The model is switched to eval mode and back.

    Args:
        model: ``model(x)["out"]`` gives (B, C, h, w) logits.
        loader: iterable of labeled batches (this rank's shard under DDP).
        num_classes: C.
        ignore_index: label value that is not scored.
        mode, crop_size, stride, flip, scales: inference options, see :func:`predict`.
        device: where images are sent; defaults to the device of the model's parameters.
        all_reduce: sums a tensor across ranks (see :meth:`ConfusionMatrix.all_reduce`).
        progress: show a tqdm bar.
        subset: class ids that ``miou`` averages over (e.g. SYNTHIA-13).
        per_image: also compute ``miou_per_image``, the mean over images of each image's mIoU
            (:mod:`segshift.evaluation.per_image` states the conventions), over ``subset`` too.
        class_order: the model's output channel of each data class (``class_order[k]`` scores
            as class ``k``): a checkpoint evaluated on data listing its classes in another order
            (see :func:`segshift.engine.restore.class_order`).

    Returns:
        :meth:`ConfusionMatrix.compute`'s dict plus ``confusion_matrix``: the (C, C) int64
        CPU tensor indexed [target, pred]; with ``per_image``, ``miou_per_image`` (a fraction).
    """
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    matrix = ConfusionMatrix(num_classes, ignore_index=ignore_index, device=device)
    image_scores = (
        PerImageMeanIoU(num_classes, ignore_index=ignore_index, subset=subset, device=device)
        if per_image
        else None
    )
    was_training = model.training
    model.eval()
    try:
        bar = tqdm(loader, desc="evaluate", disable=not progress, leave=False)
        for batch in _batches(bar):
            label = batch["label"].to(device)
            probs = predict(
                model,
                batch["image"].to(device),
                num_classes,
                mode=mode,
                crop_size=crop_size,
                stride=stride,
                flip=flip,
                scales=scales,
                output_size=tuple(label.shape[-2:]),
            )
            if class_order is not None:
                probs = probs[:, list(class_order)]
            prediction = probs.argmax(dim=1)
            matrix.update(prediction, label)
            if image_scores is not None:
                image_scores.update(prediction, label)
    finally:
        model.train(was_training)
    if all_reduce is not None:
        matrix.all_reduce(all_reduce)
        if image_scores is not None:
            image_scores.all_reduce(all_reduce)
    result = {**matrix.compute(subset), "confusion_matrix": matrix.matrix.cpu()}
    if image_scores is not None:
        result["miou_per_image"] = image_scores.compute()
    return result


def _batches(loader: Iterable[Mapping[str, torch.Tensor]]) -> Iterator[Mapping[str, torch.Tensor]]:
    """The loader's batches; an error from a loader worker keeps its one-line message."""
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except SegshiftError as err:
            raise type(err)(worker_error_message(str(err))) from None
        yield batch


def worker_error_message(text: str) -> str:
    """The message of an error raised in a DataLoader worker, without PyTorch's wrapping.

    PyTorch re-raises it in the main process as "Caught X in DataLoader worker process N.
    Original Traceback ... module.X: message"; the message names the file, the frames do not help.
    """
    if not text.startswith("Caught "):
        return text
    last = text.rstrip().splitlines()[-1]
    return last.split(": ", 1)[1] if ": " in last else last
