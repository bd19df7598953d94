"""An exported ONNX segmentation model, run by ONNX Runtime, behind the segshift model contract.

``segshift export`` (`segshift.pipeline.export_onnx`) writes ``model.onnx`` whose graph holds the
whole model: input ``image`` (B, 3, H, W) float32 RGB in [0, 1] (the normalisation is inside),
output ``logits`` (B, C, h, w) at the model's own stride (resized by consumers with
``align_corners``, as the PyTorch model's) or ``classes`` (B, H, W) int64, the argmax at input
size. The file carries what is needed to use it as JSON in its metadata under ``segshift``
(`read_metadata`): classes, palette, input size, normalisation, output kind, the run's config.

`OnnxSegmenter` is an ``nn.Module`` without parameters whose ``forward(x)`` returns
``{"out": logits}``, so whole-image and sliding-window inference, flip and multi-scale TTA
(`segshift.evaluation.predict`) and `segshift.evaluation.evaluate` run it unchanged. An argmax
export gives one-hot scores: its argmax is the model's, but resizing and TTA average class votes,
not probabilities.

Example::

    model = OnnxSegmenter("runs/fast/export/model.onnx")
    probs = predict(model, images, model.num_classes, mode="slide", crop_size=(144, 192))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segshift.errors import CheckpointError, ConfigError, DataError

METADATA_KEY = "segshift"
ONNX_SUFFIX = ".onnx"


def require_onnxruntime() -> Any:
    """The ``onnxruntime`` module; a ConfigError naming the extra to install when it is missing."""
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(
            "ONNX Runtime is not installed: pip install 'segshift[export]' (onnx, onnxruntime)"
        ) from None
    return onnxruntime


def is_onnx_file(path: str | Path) -> bool:
    """Whether ``path`` names an ONNX model file (by its suffix; it need not exist)."""
    return Path(path).suffix.lower() == ONNX_SUFFIX


def session(model: str | Path | bytes, threads: int | None = None, name: str = "") -> Any:
    """An ONNX Runtime CPU session of ``model`` (a file, or the serialised model named ``name``),
    with ``threads`` intra-op threads (default: torch's thread count, so both runtimes share the
    machine alike); errors name the file."""
    ort = require_onnxruntime()
    path = name or model
    if not isinstance(model, bytes):
        if not Path(model).is_file():
            raise CheckpointError(f"no ONNX model at {model}")
        model = str(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: the CPU provider's notes are not for users
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own classes (InvalidGraph, Fail, ...)
        raise CheckpointError(f"{path}: ONNX Runtime cannot load it ({_summary(err)})") from None


def read_metadata(sess: Any, path: str | Path) -> dict[str, Any]:
    """The ``segshift`` metadata of a session made by `session`; a CheckpointError for an ONNX
    file that segshift did not export."""
    text = sess.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    try:
        meta = json.loads(text) if text else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or "label_space" not in meta or "output" not in meta:
        raise CheckpointError(
            f"{path}: not a segshift ONNX export (no '{METADATA_KEY}' metadata); export one with "
            "segshift export RUN"
        )
    return meta


class OnnxSegmenter(nn.Module):
    """An exported model (see the module docstring) as ``forward(x) -> {"out": (B, C, h, w)}``.

    ``x``: (B, 3, H, W) RGB in [0, 1] on any device; the result is float32 on the same device.
    A model exported at a fixed size (without ``--dynamic``) runs the batch one image at a time
    and refuses other image sizes with a DataError naming the file and both sizes.

    Attributes: ``metadata`` (the exported JSON), ``num_classes``, ``class_names``, ``palette``,
    ``align_corners`` (how to resize the logits), ``output`` ("logits" or "argmax"),
    ``fixed_size`` ((H, W) or None when dynamic).
    """

    def __init__(
        self, model: str | Path | bytes, threads: int | None = None, name: str = ""
    ) -> None:
        """``model``: the ``.onnx`` file, or the serialised model (then ``name`` names it)."""
        super().__init__()
        self.path = Path(name) if isinstance(model, bytes) else Path(model)
        self.session = session(model, threads, str(self.path))
        meta = read_metadata(self.session, self.path)
        self.metadata = meta
        self.class_names = list(meta["label_space"]["class_names"])
        self.palette = [list(c) for c in meta["label_space"]["palette"]]
        self.num_classes = len(self.class_names)
        self.output = meta["output"]["kind"]
        self.align_corners = bool(meta["output"].get("align_corners", False))
        self.fixed_size = None if meta["input"]["dynamic"] else tuple(meta["input"]["size"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The graph's own output for images ``x`` (B, 3, H, W): logits (B, C, h, w) float32 or
        class ids (B, H, W) int64, on the CPU."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W), got {tuple(x.shape)}")
        images = x.detach().to("cpu", torch.float32).contiguous().numpy()
        if self.fixed_size is None:
            return torch.from_numpy(self._run(images))
        if tuple(images.shape[-2:]) != self.fixed_size:
            h, w = self.fixed_size
            raise DataError(
                f"{self.path} was exported for {h}x{w} images (HxW) and got "
                f"{images.shape[2]}x{images.shape[3]}: export it with --dynamic, or feed images "
                f"of its size (data.val.resize=[{h},{w}], --mode whole)"
            )
        return torch.from_numpy(
            np.concatenate([self._run(images[i : i + 1]) for i in range(len(images))])
        )

    def _run(self, images: np.ndarray) -> np.ndarray:
        try:
            return self.session.run([self.output_name], {self.input_name: images})[0]
        except Exception as err:  # onnxruntime's own error classes
            raise CheckpointError(
                f"{self.path}: ONNX Runtime failed on a {'x'.join(map(str, images.shape))} input "
                f"({_summary(err)})"
            ) from None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """RGB images in [0, 1] (B, 3, H, W) -> {"out": (B, C, h, w) float32} on x's device."""
        out = self.run(x)
        if self.output == "argmax":  # class votes: the argmax survives, nothing else does
            out = F.one_hot(out.long(), self.num_classes).permute(0, 3, 1, 2)
        return {"out": out.to(device=x.device, dtype=torch.float32)}

    def extra_repr(self) -> str:
        size = "dynamic" if self.fixed_size is None else "x".join(map(str, self.fixed_size))
        return f"{self.path}, {self.num_classes} classes, output={self.output}, size={size}"


def _summary(err: Exception) -> str:
    """An ONNX Runtime message on one line, without the source-file prefix, at most 300 chars."""
    text = " ".join(str(err).split())
    return text[:300]
