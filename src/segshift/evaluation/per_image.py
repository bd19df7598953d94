"""Per-image mIoU: the mean over images of each image's mean IoU.

Dataset-level mIoU (:class:`ConfusionMatrix`) pools every pixel of the dataset before dividing, so
large images and frequent classes dominate; competitions that score each photo on its own (our
harbour-structures entry) average a per-image score instead. Conventions, chosen to match the
dataset-level metric wherever the two can agree:

- pixels whose label is ``ignore_index`` are not scored, whatever was predicted there;
- in an image, class c's IoU is TP / (TP + FP + FN) over that image's scored pixels; a class
  absent from both its label and its prediction (union 0) is skipped for that image, like the
  NaN of the dataset-level IoU, rather than counted as a perfect 1 (which would reward every
  image for the many classes it does not show) or a 0;
- a class predicted but absent from the label counts IoU 0 (a false alarm costs the image);
- the image's score is the mean over its remaining classes (within ``subset`` if given);
- an image with no scored class (every pixel ignored) is left out of the mean, not counted 0.

Example:
    >>> metric = PerImageMeanIoU(3)
    >>> metric.update(torch.tensor([[[0, 1]]]), torch.tensor([[[0, 1]]]))   # one 1x2 image
    >>> metric.compute()
    1.0
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def per_image_iou(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255
) -> torch.Tensor:
    """IoU of every class in every image: (B, C) float64, NaN where the union is empty.

    Args:
        pred: (B, H, W) integer class ids.
        target: (B, H, W) integer train ids; ``ignore_index`` pixels are not scored.

    Raises:
        ValueError: shapes differ, or an id (other than ``ignore_index`` in the target) is
            outside [0, C).
    """
    if pred.shape != target.shape or pred.dim() < 2:
        raise ValueError(
            f"pred shape {tuple(pred.shape)} and target shape {tuple(target.shape)} must be the "
            "same (B, ...)"
        )
    batch, c = pred.shape[0], num_classes
    pred = pred.reshape(batch, -1).to(torch.int64)
    target = target.reshape(batch, -1).to(torch.int64)
    valid = target != ignore_index
    for ids, what in ((target[valid], "target"), (pred[valid], "prediction")):
        bad = ids[(ids < 0) | (ids >= c)]
        if bad.numel():
            raise ValueError(
                f"{what} id {int(bad[0])} is outside [0, {c}) and is not ignore_index={ignore_index}"
            )
    image = torch.arange(batch, device=pred.device).unsqueeze(1).expand_as(pred)
    flat = (image * c + target) * c + pred
    counts = torch.bincount(flat[valid], minlength=batch * c * c).view(batch, c, c).double()
    true_positive = counts.diagonal(dim1=1, dim2=2)
    union = counts.sum(dim=2) + counts.sum(dim=1) - true_positive
    return torch.where(union > 0, true_positive / union.clamp(min=1), float("nan"))


class PerImageMeanIoU:
    """Accumulates the per-image mIoU over batches (see the module for the conventions).

    Holds two numbers, the sum of the image scores and the number of scored images, so a
    sharded evaluation sums them across ranks with ``all_reduce``.

    Args:
        num_classes: C.
        ignore_index: target value of pixels that are not scored.
        subset: class ids an image's mean runs over (e.g. SYNTHIA-13); default all.
        device: where the sums live; ``None`` follows the first ``update``'s tensors.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        subset: Sequence[int] | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        classes = list(range(num_classes)) if subset is None else [int(i) for i in subset]
        if not classes or any(not 0 <= i < num_classes for i in classes):
            raise ValueError(
                f"subset must be a non-empty list of ids in [0, {num_classes}), got {subset}"
            )
        self.num_classes, self.ignore_index, self.classes = num_classes, ignore_index, classes
        self._follow_inputs = device is None
        self.totals = torch.zeros(2, dtype=torch.float64, device=device)  # [sum of scores, images]

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Score each image of a batch: ``pred`` and ``target`` (B, H, W) integer ids."""
        if self._follow_inputs and self.totals.device != target.device:
            self.totals = self.totals.to(target.device)
        iou = per_image_iou(pred, target, self.num_classes, self.ignore_index)[:, self.classes]
        scored = ~iou.isnan().all(dim=1)
        scores = iou[scored].nanmean(dim=1)
        self.totals += torch.stack([scores.sum(), scored.sum().double()]).to(self.totals)

    def all_reduce(self, fn: Callable[[torch.Tensor], torch.Tensor | None]) -> None:
        """Sum across ranks; ``fn`` as for :meth:`ConfusionMatrix.all_reduce` (it must sum)."""
        reduced = fn(self.totals)
        if isinstance(reduced, torch.Tensor):
            self.totals = reduced.to(self.totals.device, torch.float64).reshape(2)

    @property
    def count(self) -> int:
        """How many images were scored so far."""
        return int(self.totals[1])

    def compute(self) -> float:
        """Mean of the image scores, as a fraction; NaN when no image was scored."""
        total, count = self.totals.tolist()
        return total / count if count > 0 else float("nan")
