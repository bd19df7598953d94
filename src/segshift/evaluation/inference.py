"""Whole-image and sliding-window inference with flip and multi-scale test-time augmentation.

Two sliding-window layouts: ``"slide"`` (mmsegmentation: windows of the full crop size, the last
one shifted back to end at the border, logits averaged) and ``"slide_unimatch"`` (UniMatch's
``evaluate``: windows start at 0 and step by the stride while the start is inside the image, border
windows are cut short, window softmaxes are summed).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("whole", "slide", "slide_unimatch")


def predict(
    model: nn.Module,
    images: torch.Tensor,
    num_classes: int,
    mode: str = "whole",
    crop_size: tuple[int, int] | None = None,
    stride: tuple[int, int] | None = None,
    flip: bool = False,
    scales: Sequence[float] = (1.0,),
    output_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Class probabilities for a batch, averaged over test-time augmentations.

    For every scale (and its horizontal flip when ``flip``) the input is resized bilinearly, the
    logits are computed and resized with the model's ``align_corners`` protocol (whole image, or sliding windows averaged where they overlap, as in
    mmsegmentation), resized to ``output_size``, and turned into a softmax; the softmaxes are
    averaged. ``"slide_unimatch"`` instead takes the softmax of each window and, per pixel, the
    mean over the windows covering it (the same argmax as UniMatch's sum), then resizes that to
    ``output_size``. The caller puts the model in eval mode.

    Args:
        model: ``model(x)["out"]`` gives (B, C, h, w) logits at any stride.
        images: (B, 3, H, W) model inputs (RGB in [0, 1]; the model normalises them).
        num_classes: C; checked against the model's output.
        mode: ``"whole"``, ``"slide"`` or ``"slide_unimatch"``.
        crop_size: (h, w) window for the slide modes. ``"slide"`` zero-pads images smaller than
            it; ``"slide_unimatch"`` cuts windows short at the border instead.
        stride: (h, w) step between windows; defaults to int(2/3 of the crop) (overlapping).
        flip: also predict the horizontally flipped image.
        scales: input resize factors, e.g. (0.75, 1.0, 1.25).
        output_size: (H', W') of the result; defaults to (H, W).

    Returns:
        (B, C, H', W') float32 probabilities summing to 1 over C. It is an inference tensor:
        ``clone()`` it before using it in autograd (e.g. as a pseudo-label target).

    Example:
        >>> probs = predict(model, batch["image"], 19, mode="slide", crop_size=(512, 1024),
        ...                 flip=True, output_size=batch["label"].shape[-2:])
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode != "whole":
        if crop_size is None:
            raise ValueError(f"{mode} inference needs crop_size=(h, w)")
        stride = stride or (max(1, crop_size[0] * 2 // 3), max(1, crop_size[1] * 2 // 3))
    if not scales or any(s <= 0 for s in scales):
        raise ValueError(f"scales must be positive, got {scales}")
    height, width = images.shape[-2:]
    output_size = tuple(output_size) if output_size is not None else (height, width)
    flips = (False, True) if flip else (False,)
    align = bool(getattr(model, "align_corners", False))  # the model's logit-resize protocol

    with torch.inference_mode():
        probs = images.new_zeros(images.shape[0], num_classes, *output_size, dtype=torch.float32)
        for scale in scales:
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            scaled = images if size == (height, width) else _resize(images, size)
            for flipped in flips:
                x = scaled.flip(-1) if flipped else scaled
                if mode == "whole":
                    p = _forward(model, x, num_classes, output_size).softmax(dim=1)
                elif mode == "slide":
                    logits = _slide(model, x, num_classes, crop_size, stride)
                    p = _resize(logits, output_size, align).softmax(dim=1)
                else:
                    p = _resize(
                        _slide_unimatch(model, x, num_classes, crop_size, stride),
                        output_size,
                        align,
                    )
                probs += p.flip(-1) if flipped else p
        return probs / (len(scales) * len(flips))


def _resize(x: torch.Tensor, size: Sequence[int], align_corners: bool = False) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


def _forward(
    model: nn.Module, x: torch.Tensor, num_classes: int, size: Sequence[int]
) -> torch.Tensor:
    """Logits of ``model`` on x (B, 3, h, w), resized to ``size`` with the model's
    ``align_corners``: (B, C, *size)."""
    logits = model(x)["out"]
    if logits.shape[1] != num_classes:
        raise ValueError(f"model predicts {logits.shape[1]} classes, expected {num_classes}")
    return _resize(logits.float(), size, bool(getattr(model, "align_corners", False)))


def _slide(
    model: nn.Module,
    images: torch.Tensor,
    num_classes: int,
    crop_size: Sequence[int],
    stride: Sequence[int],
) -> torch.Tensor:
    """Sliding-window logits (B, C, H, W): windows cover the image, overlaps are averaged.

    The last window in each direction is shifted back to end at the border; a window larger than
    the image is zero-padded at the bottom/right and its logits cropped back.
    """
    batch, _, height, width = images.shape
    crop_h, crop_w = crop_size
    stride_h, stride_w = stride
    rows = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
    cols = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
    logits = images.new_zeros(batch, num_classes, height, width, dtype=torch.float32)
    count = images.new_zeros(1, 1, height, width, dtype=torch.float32)
    for row in range(rows):
        for col in range(cols):
            y2 = min(row * stride_h + crop_h, height)
            x2 = min(col * stride_w + crop_w, width)
            y1, x1 = max(y2 - crop_h, 0), max(x2 - crop_w, 0)
            window = images[:, :, y1:y2, x1:x2]
            pad_h, pad_w = crop_h - (y2 - y1), crop_w - (x2 - x1)
            if pad_h or pad_w:
                window = F.pad(window, (0, pad_w, 0, pad_h))
            window_logits = _forward(model, window, num_classes, (crop_h, crop_w))
            logits[:, :, y1:y2, x1:x2] += window_logits[:, :, : y2 - y1, : x2 - x1]
            count[:, :, y1:y2, x1:x2] += 1
    return logits / count


def _slide_unimatch(
    model: nn.Module,
    images: torch.Tensor,
    num_classes: int,
    crop_size: Sequence[int],
    stride: Sequence[int],
) -> torch.Tensor:
    """UniMatch's sliding window: (B, C, H, W), per pixel the mean softmax of its windows.

    Windows start at rows 0, s, 2s, ... while the start is < H, and likewise for columns. A
    window that crosses the border is cut short there (a smaller input), not shifted back or
    padded. UniMatch sums the softmaxes and takes the argmax. Dividing by the number of windows
    per pixel keeps that argmax and makes the result a probability map.
    """
    batch, _, height, width = images.shape
    probs = images.new_zeros(batch, num_classes, height, width, dtype=torch.float32)
    count = images.new_zeros(1, 1, height, width, dtype=torch.float32)
    for y1 in range(0, height, stride[0]):
        for x1 in range(0, width, stride[1]):
            y2, x2 = min(y1 + crop_size[0], height), min(x1 + crop_size[1], width)
            window = images[:, :, y1:y2, x1:x2]
            probs[:, :, y1:y2, x1:x2] += _forward(
                model, window, num_classes, (y2 - y1, x2 - x1)
            ).softmax(dim=1)
            count[:, :, y1:y2, x1:x2] += 1
    return probs / count
