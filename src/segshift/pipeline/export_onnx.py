"""``segshift export``: a trained run as an ONNX model, checked against PyTorch on real images.

The graph takes ``image`` (B, 3, H, W) float32 RGB in [0, 1] (the model's own normalisation is
inside it, `segshift.models.normalization`) and returns ``logits`` (B, C, h, w) at the model's
stride (smp models: input size; DeepLab-v2: 1/8, resized with ``align_corners`` as in PyTorch)
or ``classes`` (B, H, W) int64, the argmax of the logits resized to the input size. Without
``dynamic`` batch and size are fixed (1, 3, H, W); with it both vary. A multi-level DeepLab-v2
exports its main head.

The model, its metadata (`segshift.models.onnx_runtime.read_metadata`: classes, palette, input
size, normalisation, output kind, the run's config) and a JSON copy with the parity measured are
written only after the check passed: ONNX Runtime runs the graph on the first batches of the
run's validation set and the largest logit difference, relative to the logits' scale, must stay
within ``tolerance`` and the argmax agreement reach ``min_agreement``. ``quantize="dynamic"``
also writes ``<name>.int8.onnx`` (ONNX Runtime's dynamic int8 quantisation of the weights); its
parity is reported, not enforced, as quantisation changes the outputs by design.

Example::

    report = export_onnx("runs/source_only", dynamic=True, quantize="dynamic")
    report["parity"].line()  # "16 images: max abs logit difference 2.1e-05, ..."
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from segshift.engine.restore import load_trained
from segshift.errors import ConfigError, SegshiftError
from segshift.fileio import atomic_write_bytes
from segshift.models.onnx_runtime import METADATA_KEY, OnnxSegmenter, require_onnxruntime
from segshift.pipeline.onnx_parity import Parity, compare, validation_images

OPSETS = range(11, 21)  # bilinear Resize with align_corners needs 11; the exporter stops at 20
DEFAULT_OPSET = 17
OUTPUTS = ("logits", "argmax")
QUANTIZE = ("dynamic",)
TOLERANCE = 1e-3  # max abs logit difference / max(1, max |logit|)
MIN_AGREEMENT = 0.999


class Deployable(nn.Module):
    """What the graph computes: ``model(image)["out"]``, or its argmax at input size."""

    def __init__(self, model: nn.Module, output: str) -> None:
        super().__init__()
        self.model = model
        self.output = output
        self.align_corners = bool(getattr(model, "align_corners", False))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.model(image)["out"]
        if self.output == "logits":
            return logits
        # smp models' logits are at input size, DeepLab-v2's at 1/8 whatever the size: the branch
        # the trace takes holds for every input
        if logits.shape[-2:] != image.shape[-2:]:
            logits = F.interpolate(
                logits, size=image.shape[-2:], mode="bilinear", align_corners=self.align_corners
            )
        return logits.argmax(dim=1)


def default_output(run: str | Path) -> Path:
    """``<run>/export/model.onnx`` for a run directory or one of its checkpoints; beside the
    weights for an export directory or ``model.safetensors``."""
    path = Path(run)
    if path.is_file():
        base = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        return (base / "export" if path.suffix == ".pt" else base) / "model.onnx"
    if (path / "model.safetensors").is_file() and not (path / "checkpoints").is_dir():
        return path / "model.onnx"
    return path / "export" / "model.onnx"


def input_size(cfg: Any, size: tuple[int, int] | None, images: list[torch.Tensor]) -> list[int]:
    """The export's (traced) input size: ``size``, else ``data.val.resize``, else the sliding
    window of a slide-mode run, else the first validation image's size."""
    if size is not None:
        return list(size)
    val = cfg.data.val
    if val is not None and val.resize:
        return [int(v) for v in val.resize]
    if cfg.eval.mode != "whole" and cfg.eval.crop_size:
        return [int(v) for v in cfg.eval.crop_size]
    if images:
        return [int(v) for v in images[0].shape[-2:]]
    raise ConfigError("no input size for the export: give --size HxW (or data.val.resize)")


def _blocking_op(err: Exception, arch: str, opset: int, dynamic: bool) -> str:
    """One line naming the operator the exporter could not translate, and what to try."""
    text = " ".join(str(err).split())
    found = re.search(r"operator '?(?:aten::|onnx::)?([\w.]+)'?", text)
    reason = re.split(r" Please feel free| \[Caused by|\. Please", text)[0][:240]
    where = (
        f"model.arch {arch}: ONNX export (opset {opset}, {'dynamic' if dynamic else 'fixed'} size)"
    )
    hint = "export without --dynamic (a fixed input size)" if dynamic else "try another --opset"
    if found is None:
        return f"{where} failed: {reason}"
    return f"{where} is blocked by the operator {found.group(1)}: {reason}; {hint}"


def trace(module: Deployable, size: list[int], dynamic: bool, opset: int, arch: str) -> bytes:
    """``module`` traced into a serialised ONNX model for (1, 3, *size) inputs."""
    names = {"logits": "logits", "argmax": "classes"}
    output = names[module.output]
    axes = None
    if dynamic:
        out_axes = {0: "batch", 2: "height", 3: "width"} if output == "logits" else None
        axes = {
            "image": {0: "batch", 2: "height", 3: "width"},
            output: out_axes or {0: "batch", 1: "height", 2: "width"},
        }
    example = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    buffer = io.BytesIO()
    module.eval()
    padded = [m for m in module.modules() if hasattr(m, "traced_any_size")]  # smp_models
    for segmenter in padded:
        segmenter.traced_any_size = dynamic
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # tracer notes on constant shapes; parity is checked
            torch.onnx.export(
                module,
                (example,),
                buffer,
                dynamo=False,  # the TorchScript exporter: no onnxscript needed
                input_names=["image"],
                output_names=[output],
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
            )
    except SegshiftError:
        raise
    except (RuntimeError, ValueError, TypeError) as err:  # torch.onnx's errors are RuntimeErrors
        raise ConfigError(_blocking_op(err, arch, opset, dynamic)) from None
    finally:
        module.eval()  # the exporter restores the module's mode: keep eval for the check
        for segmenter in padded:
            del segmenter.traced_any_size  # back to the class's False
    return buffer.getvalue()


def with_metadata(data: bytes, meta: dict[str, Any]) -> bytes:
    """The serialised model ``data`` with ``meta`` as JSON under the ``segshift`` key."""
    import onnx

    model = onnx.load_from_string(data)
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    model.producer_name = "segshift"
    return model.SerializeToString()


def quantized(data: bytes) -> bytes:
    """ONNX Runtime's dynamic int8 quantisation (int8 weights, activations quantised on the
    fly) of the serialised model ``data``; the metadata is kept."""
    require_onnxruntime()
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    meta = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
    with tempfile.TemporaryDirectory(prefix="segshift-int8-") as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(data)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantiser's advice on pre-processing, not ours
        try:
            quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        result = target.read_bytes()
    info = json.loads(meta[METADATA_KEY])
    info["quantization"] = "dynamic int8 (onnxruntime.quantization.quantize_dynamic, QInt8)"
    return with_metadata(result, info)


def metadata(
    cfg: Any, model: nn.Module, label_space: dict[str, Any], size: list[int], options: dict
) -> dict[str, Any]:
    """What a consumer of the file needs (see the module docstring)."""
    dynamic, output = options["dynamic"], options["output"]
    shape_in: list[Any] = ["batch", 3, "height", "width"] if dynamic else [1, 3, *size]
    if output == "logits":
        shape_out: list[Any] = [
            "batch" if dynamic else 1,
            len(label_space["class_names"]),
            "h",
            "w",
        ]
    else:
        shape_out = ["batch", "height", "width"] if dynamic else [1, *size]
    val = cfg.data.val
    return {
        "format": "segshift-onnx/1",
        "input": {
            "name": "image",
            "shape": shape_in,
            "dtype": "float32",
            "layout": "NCHW",
            "channel_order": "rgb",
            "range": [0.0, 1.0],
            "size": size,
            "dynamic": dynamic,
            "resize": list(val.resize) if val is not None and val.resize else None,
            "interpolation": val.interpolation if val is not None else "bilinear",
        },
        "normalization": {**model.input_norm.norm.as_config(), "applied": "inside the graph"},
        "output": {
            "name": "logits" if output == "logits" else "classes",
            "kind": output,
            "shape": shape_out,
            "dtype": "float32" if output == "logits" else "int64",
            "stride": "input size" if output == "argmax" else "the model's (resize to input)",
            "align_corners": bool(getattr(model, "align_corners", False)),
        },
        "label_space": {
            "name": label_space.get("name"),
            "class_names": list(label_space["class_names"]),
            "palette": [list(c) for c in label_space["palette"]],
            "ignore_index": 255,
        },
        "model": {"arch": cfg.model.arch, "encoder": cfg.model.encoder},
        "opset": options["opset"],
        "quantization": None,
        "source": str(Path(options["source"]).resolve()),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def check_options(opset: int, output: str, quantize: str | None, batches: int) -> None:
    if opset not in OPSETS:
        raise ConfigError(f"--opset: {opset} is not in {OPSETS.start}..{OPSETS.stop - 1}")
    if output not in OUTPUTS:
        raise ConfigError(f"--output: '{output}' is not one of {', '.join(OUTPUTS)}")
    if quantize is not None and quantize not in QUANTIZE:
        raise ConfigError(f"--quantize: '{quantize}' is not one of {', '.join(QUANTIZE)}")
    if batches < 0:
        raise ConfigError(f"--verify-batches: must be >= 0; got {batches}")


def export_onnx(
    run: str | Path,
    out: str | Path | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic: bool = False,
    output: str = "logits",
    size: tuple[int, int] | None = None,
    quantize: str | None = None,
    verify_batches: int = 4,
    tolerance: float = TOLERANCE,
    min_agreement: float = MIN_AGREEMENT,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Export ``run`` (a run directory, checkpoint, export directory or ``model.safetensors``,
    read by `segshift.engine.restore.load_trained`) to ``out`` (default `default_output`).

    Returns {"onnx": path, "json": path, "parity": Parity | None, "size": [H, W]} plus
    "int8", "int8_json" and "int8_parity" with ``quantize``. Raises a SegshiftError (nothing
    written) when the run has no segmentation model, an operator cannot be exported, or parity
    is off.
    """
    check_options(opset, output, quantize, verify_batches)
    require_onnxruntime()
    cfg, method, label_space = load_trained(run, overrides)
    model = method.eval_model()
    if model is None or label_space is None:
        raise ConfigError(
            f"{run} is an image-translation run (method {cfg.method.name}): it has no "
            "segmentation model to export"
        )
    model = model.cpu().eval()
    images = validation_images(cfg, verify_batches) if verify_batches else []
    shape = input_size(cfg, size, images)
    if dynamic and images:  # and a size the trace did not see (no multiple of the stride)
        height, width = images[0].shape[-2:]
        if min(height, width) >= 16:
            images.append(images[0][..., : height - 1 - height // 8, : width - 1 - width // 8])
    module = Deployable(model, output)
    options = {"dynamic": dynamic, "output": output, "opset": opset, "source": run}
    meta = metadata(cfg, model, label_space, shape, options)
    data = with_metadata(trace(module, shape, dynamic, opset, cfg.model.arch), meta)
    out = Path(out) if out is not None else default_output(run)
    if out.suffix != ".onnx":
        raise ConfigError(f"--out: {out} must end in .onnx")
    parity = _checked(module, data, out, images, tolerance, min_agreement)
    report: dict[str, Any] = {"onnx": out, "parity": parity, "size": shape}
    report["json"] = _write(out, data, meta, parity)
    if quantize:
        int8_out = out.with_name(f"{out.stem}.int8.onnx")
        int8 = quantized(data)
        exported = OnnxSegmenter(int8, name=str(int8_out))
        int8_parity = compare(module, exported, images) if images else None
        report["int8"], report["int8_parity"] = int8_out, int8_parity
        report["int8_json"] = _write(int8_out, int8, exported.metadata, int8_parity)
    return report


def _checked(
    module: Deployable,
    data: bytes,
    out: Path,
    images: list[torch.Tensor],
    tolerance: float,
    min_agreement: float,
) -> Parity | None:
    """The parity of ``data`` on ``images``; a SegshiftError when it is off (nothing written)."""
    exported = OnnxSegmenter(data, name=str(out))
    if not images:
        return None
    parity = compare(module, exported, images)
    relative = parity.relative_diff()
    if parity.agreement < min_agreement or (relative is not None and relative > tolerance):
        raise SegshiftError(
            f"parity check failed, {out} not written: {parity.line()} (tolerance: relative "
            f"difference <= {tolerance:g}, agreement >= {100 * min_agreement:.2f}%)"
        )
    return parity


def _write(out: Path, data: bytes, meta: dict[str, Any], parity: Parity | None) -> Path:
    """``out`` and ``<out stem>.json`` (the metadata plus the parity), each written atomically."""
    info = {**meta, "parity": parity.as_dict() if parity is not None else None}
    atomic_write_bytes(out, data)
    return atomic_write_bytes(out.with_suffix(".json"), json.dumps(info, indent=1).encode())
