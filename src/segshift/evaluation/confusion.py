"""Confusion matrix accumulated over a dataset and the segmentation metrics derived from it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


class ConfusionMatrix:
    """An int64 (C, C) matrix of pixel counts indexed ``[target, pred]``.

    Each ``update`` adds one ``torch.bincount``; ``all_reduce`` sums the matrices of all ranks;
    ``compute`` turns the counts into per-class IoU / accuracy, mIoU, pixel accuracy and
    frequency-weighted IoU.

    Args:
        num_classes: C, the number of train ids.
        ignore_index: target value of pixels that are skipped.
        device: where the matrix lives; ``None`` follows the tensors given to the first
            ``update`` (so a CUDA matrix can be all-reduced with NCCL).

    Example:
        >>> cm = ConfusionMatrix(3)
        >>> cm.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 255]))
        >>> cm.compute()["miou"]
        1.0
    """

    def __init__(
        self, num_classes: int, ignore_index: int = 255, device: torch.device | str | None = None
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._follow_inputs = device is None
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of predictions.

        Args:
            pred: integer class ids of any shape, e.g. (B, H, W).
            target: integer train ids of the same shape; ``ignore_index`` pixels are skipped.

        Raises:
            ValueError: shapes differ, or a target / prediction id is outside [0, C)
                (other than ``ignore_index`` in the target).
        """
        if pred.shape != target.shape:
            raise ValueError(
                f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}"
            )
        if self._follow_inputs and self.matrix.device != target.device:
            self.matrix = self.matrix.to(target.device)
        valid = target != self.ignore_index
        target = target[valid].to(self.matrix.device, torch.int64)
        pred = pred[valid].to(self.matrix.device, torch.int64)
        if target.numel() == 0:
            return
        self._check_range(target, "target")
        self._check_range(pred, "prediction")
        c = self.num_classes
        self.matrix += torch.bincount(target * c + pred, minlength=c * c).view(c, c)

    def _check_range(self, ids: torch.Tensor, what: str) -> None:
        bad = ids[(ids < 0) | (ids >= self.num_classes)]
        if bad.numel():
            raise ValueError(
                f"{what} id {int(bad[0])} is outside [0, {self.num_classes}) "
                f"and is not ignore_index={self.ignore_index}"
            )

    def all_reduce(self, fn: Callable[[torch.Tensor], torch.Tensor | None]) -> None:
        """Sum the matrix across ranks.

        Args:
            fn: sums a tensor over all ranks, either in place (``torch.distributed.all_reduce``)
                or by returning the sum (``functools.partial(fabric.all_reduce, reduce_op="sum")``).
                It must sum, not average.
        """
        reduced = fn(self.matrix)
        if isinstance(reduced, torch.Tensor):
            if reduced.shape != self.matrix.shape:
                raise ValueError(
                    f"all_reduce returned shape {tuple(reduced.shape)}, "
                    f"expected {tuple(self.matrix.shape)}"
                )
            self.matrix = reduced.to(self.matrix.device, torch.int64)

    def reset(self) -> None:
        """Zero the counts (keeps the device)."""
        self.matrix.zero_()

    def compute(self, subset: Sequence[int] | None = None) -> dict:
        """Metrics from the accumulated counts.

        Per-class values are over the full matrix; ``subset`` (e.g. the SYNTHIA-13 classes)
        only restricts which classes ``miou`` and ``mean_accuracy`` average over.

        Returns:
            A dict with
            ``iou``, ``accuracy``: lists of C floats in [0, 1]. IoU is NaN where a class is in
            neither target nor prediction (union 0) and 0 where it is predicted but absent from
            the target; accuracy (recall) is NaN where the class is absent from the target.
            ``miou``, ``mean_accuracy``: NaN-ignoring means over the classes (or ``subset``).
            ``pixel_accuracy``: correct / valid pixels. ``fwiou``: IoU weighted by target
            frequency. ``subset``: the subset as a list, or None. All NaN for an empty matrix.
        """
        classes = self._check_subset(subset)
        counts = self.matrix.detach().to("cpu", torch.float64)
        true_positive = counts.diagonal()
        target_count = counts.sum(dim=1)
        pred_count = counts.sum(dim=0)
        union = target_count + pred_count - true_positive
        total = counts.sum()
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        iou = torch.where(union > 0, true_positive / union, nan)
        accuracy = torch.where(target_count > 0, true_positive / target_count, nan)
        frequency = target_count / total
        present = target_count > 0
        fwiou = (frequency[present] * iou[present]).sum() if total > 0 else nan
        return {
            "iou": iou.tolist(),
            "accuracy": accuracy.tolist(),
            "miou": float(torch.nanmean(iou[classes])),
            "mean_accuracy": float(torch.nanmean(accuracy[classes])),
            "pixel_accuracy": float(true_positive.sum() / total) if total > 0 else float("nan"),
            "fwiou": float(fwiou),
            "subset": None if subset is None else classes,
        }

    def _check_subset(self, subset: Sequence[int] | None) -> list[int]:
        if subset is None:
            return list(range(self.num_classes))
        classes = [int(c) for c in subset]
        bad = [c for c in classes if not 0 <= c < self.num_classes]
        if bad or not classes:
            raise ValueError(
                f"subset must be a non-empty list of ids in [0, {self.num_classes}), got {subset}"
            )
        return classes
