"""ONNX export on CamVid val: parity with PyTorch, mIoU and CPU speed of ONNX Runtime fp32 / int8.

For each model architecture of the packaged CPU configs (``fast``: the slim FPN over ResNet-18
that every CPU config uses, and ``fast`` over ``tu-tf_efficientnet_lite0`` from its packaged
ImageNet weights) the script trains a small model on CamVid train for ``--iters`` steps (about a
minute on an idle 2-core machine; a run given with ``--run ARCH=DIR`` is used instead), exports it
with ``segshift export --dynamic --quantize dynamic`` and then, on all 101 CamVid val images at the
benchmark configs' 144x192 input (labels scored at full 360x480):

- parity: max abs logit difference and argmax agreement of ONNX Runtime fp32 and int8 against
  PyTorch fp32 (`segshift.pipeline.onnx_parity.ParityCounter`), from the same forward passes that
- score mIoU for each runtime (whole-image inference as ``segshift eval``: logits resized to the
  label size, argmax);
- speed: seconds per image at batch 1, PyTorch eager (``inference_mode``) and ONNX Runtime fp32
  and int8, interleaved image by image so that load changes hit all three alike, with the same
  thread count for both runtimes (``--threads``), at 144x192 and the full 360x480.

    .venv/bin/python -m benchmarks.export_onnx --iters 60 --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import write_result
from segshift.config import load_config
from segshift.data import build_dataset
from segshift.engine.loaders import evaluation_loader
from segshift.engine.restore import load_trained
from segshift.engine.trainer import Trainer
from segshift.evaluation import ConfusionMatrix, predict
from segshift.models.onnx_runtime import OnnxSegmenter
from segshift.pipeline.export_onnx import export_onnx
from segshift.pipeline.onnx_parity import ParityCounter

CAMVID = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid"
ROOT = Path(__file__).resolve().parents[1]
MODELS = {  # name: (encoder, extra overrides)
    "fast/resnet18": ("resnet18", ["model.encoder_weights=null"]),
    "fast/tu-tf_efficientnet_lite0": (
        "tu-tf_efficientnet_lite0",
        ["model.encoder_weights=imagenet"],
    ),
}
VAL = [
    "data.val.name=camvid",
    f"data.val.root={CAMVID}",
    "data.val.split=val",
    "data.val.resize=[144,192]",
    "data.val.batch_size=1",
]


def train(name: str, out: Path, iters: int) -> Path:
    """A small supervised model on all of CamVid train (144x192 crops of 180x240 images)."""
    encoder, extra = MODELS[name]
    tag = name.replace("/", "_")
    cfg = load_config(
        "benchmarks/camvid_labeled_only",
        [
            f"data.streams.labeled.root={CAMVID}",
            "data.streams.labeled.n_labeled=null",
            "data.streams.labeled.resize=[180,240]",
            "data.streams.labeled.crop_size=[144,192]",
            "data.streams.labeled.scale_range=[0.75,1.25]",
            *VAL,
            "data.num_workers=0",
            "model.arch=fast",
            f"model.encoder={encoder}",
            *extra,
            f"train.iters={iters}",
            f"train.eval_every={iters}",
            f"train.ckpt_every={iters}",
            f"train.log_every={max(1, iters // 4)}",
            "train.progress=plain",
            "schedule.warmup_iters=0",
            f"output_dir={out}",
            f"name={tag}",
        ],
    )
    run = out / tag
    if not (run / "export" / "model.safetensors").is_file():
        start = time.perf_counter()
        Trainer(cfg).fit()
        print(f"{name}: trained {iters} steps in {time.perf_counter() - start:.0f} s")
    return run


class Recorder(nn.Module):
    """``model``'s forward, keeping the last "out" (for parity from the scoring passes)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.align_corners, self.last = model, model.align_corners, None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model(x)
        self.last = out["out"]
        return out


def score(models: dict[str, nn.Module], loader, num_classes: int) -> dict:
    """mIoU per runtime and parity of each ONNX runtime against "pytorch", on one pass."""
    recorders = {k: Recorder(m) for k, m in models.items()}
    matrices = {k: ConfusionMatrix(num_classes) for k in models}
    parity = {k: ParityCounter("logits", recorders[k].align_corners) for k in models}
    with torch.inference_mode():
        for batch in loader:
            image, label = batch["image"], batch["label"]
            for key, recorder in recorders.items():  # as segshift eval: whole image, no TTA
                probs = predict(recorder, image, num_classes, output_size=label.shape[-2:])
                matrices[key].update(probs.argmax(1), label)
            for key in models:
                if key != "pytorch":
                    parity[key].update(
                        recorders["pytorch"].last, recorders[key].last, image.shape[-2:]
                    )
    result = {k: {"miou": m.compute()["miou"]} for k, m in matrices.items()}
    for key in models:
        if key != "pytorch":
            result[key]["parity"] = parity[key].result()
    return result


def speed(models: dict[str, nn.Module], images: list[torch.Tensor], size) -> dict[str, float]:
    """Median seconds per image (batch 1) of each model, interleaved image by image."""
    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        for i, image in enumerate(images):
            x = F.interpolate(image, size=size, mode="bilinear") if size else image
            for key, model in models.items():
                start = time.perf_counter()
                model(x)
                if i >= 2:  # warm-up
                    times[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def bench(name: str, run: Path, args) -> list[str]:
    report = export_onnx(run, run / "export" / "model.onnx", dynamic=True, quantize="dynamic")
    cfg, method, label_space = load_trained(run)
    torch_model = method.eval_model().eval()
    models = {
        "pytorch": torch_model,
        "onnx fp32": OnnxSegmenter(report["onnx"], threads=args.threads),
        "onnx int8": OnnxSegmenter(report["int8"], threads=args.threads),
    }
    val = build_dataset(cfg.data.val, train=False)
    loader = evaluation_loader(val, range(len(val)), 1)
    scores = score(models, loader, len(label_space["class_names"]))
    images = [val[i]["image"].unsqueeze(0) for i in range(args.speed_images + 2)]
    small = speed(models, images, None)
    full = speed(models, images[: max(3, args.speed_images // 2 + 2)], (360, 480))
    rows = []
    for key in models:
        parity = scores[key].get("parity")
        agreement = f"{100 * parity.agreement:.3f}%" if parity else "-"
        diff = f"{parity.max_abs_diff:.2g}" if parity else "-"
        drop = 100 * (scores["pytorch"]["miou"] - scores[key]["miou"])
        rows.append(
            f"| {name} | {key} | {agreement} | {diff} | {100 * scores[key]['miou']:.2f} | "
            f"{drop:+.2f} | {1000 * small[key]:.1f} | {small['pytorch'] / small[key]:.2f} | "
            f"{1000 * full[key]:.1f} | {full['pytorch'] / full[key]:.2f} |"
        )
    print("\n".join(rows), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=60, help="training steps per model")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of both runtimes")
    parser.add_argument("--speed-images", type=int, default=30, help="timed images at 144x192")
    parser.add_argument("--out", default=str(ROOT / "runs" / "export_onnx"), help="run folder")
    parser.add_argument("--run", action="append", default=[], metavar="ARCH=DIR")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    given = dict(item.split("=", 1) for item in args.run)
    load_before = os.getloadavg()
    rows = []
    for name in MODELS:
        run = Path(given[name]) if name in given else train(name, Path(args.out), args.iters)
        rows += bench(name, run, args)
    loads = f"{load_before[1]:.1f} before, {os.getloadavg()[1]:.1f} after"
    body = f"""
Every row: all 101 CamVid val images, input resized to 144x192 (the benchmark configs' val
size), labels scored at 360x480; whole-image inference. Parity is against PyTorch fp32 on the
same images (argmax agreement at input size; max abs logit difference). int8 is ONNX Runtime's
dynamic quantisation (`segshift export --quantize dynamic`: int8 weights, activations quantised
on the fly). Speed: median milliseconds per image at batch 1 over {args.speed_images} images
(144x192) and {max(1, args.speed_images // 2)} images (360x480, the full CamVid size), both
runtimes on {args.threads} CPU thread(s), interleaved image by image; "x" is PyTorch eager's time
divided by the runtime's (above 1: faster than PyTorch).

Weights: each model trained {args.iters} steps (batch 8, AdamW 2e-3, all 367 CamVid train
images at 180x240, 144x192 crops) from random init (`fast/resnet18`: the packaged CPU configs'
model) or from the packaged ImageNet weights (`fast/tu-tf_efficientnet_lite0`): a briefly
trained model, enough for parity, speed and the int8 mIoU drop, not a CamVid result.

The machine was shared with other jobs (a training benchmark and other test runs; 5-minute load
average {loads} on its {os.cpu_count()} cores), so the absolute timings are rough; the ratios,
measured side by side on the same images, are the meaningful figures.

| model | runtime | argmax agreement | max abs logit diff | mIoU | drop vs PyTorch | ms/image 144x192 | x PyTorch | ms/image 360x480 | x PyTorch |
|---|---|---|---|---|---|---|---|---|---|
""" + "\n".join(rows)
    write_result("export_onnx", "ONNX export: parity, mIoU and CPU speed on CamVid val", body)


if __name__ == "__main__":
    main()
