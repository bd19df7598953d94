"""Pseudo-labels of a trained teacher for a set of images: a folder dataset any config can name.

The *prediction* pass runs the network (batched, flip / multi-scale TTA) and stores per image, at
its own size, the top-``TOP_K`` classes and probabilities (uint16, p * 65535); for a model with an
auxiliary head also those of Seg-Uncertainty's fused prediction and the main/aux disagreement.
The *selection* pass (rerun alone when only the rule changes) turns them into labels:

- ``threshold``: keep pixels whose top probability >= ``threshold`` (our experiments: 0.5).
- ``cbst``: CBST (Zou et al., "Unsupervised Domain Adaptation for Semantic Segmentation via
  Class-Balanced Self-Training", ECCV 2018). k_c = the floor(N_c * p)-th largest confidence among
  the N_c pixels of all images predicted c (1 if that rank is 0), from a histogram of *all*
  pixels (the official code takes every 4th); label argmax_c p_c / k_c, kept if the ratio >= 1.
  The argmax looks at the stored top ``TOP_K`` classes only: exact wherever the probability left
  outside them is below the smallest k_c.
- ``uncertainty``: Seg-Uncertainty (Zheng & Yang, "Rectifying Pseudo Label Learning via
  Uncertainty Estimation for Domain Adaptive Semantic Segmentation", IJCV 2021). Label argmax of
  softmax(main + 0.5 aux); kept where KL(p_aux || p_main) (nats, of the TTA-averaged
  probabilities; the variance that rectifies the main head's loss) <= ``max_kl``, or, without
  it, for the ``kl_portion`` share of all pixels with the lowest KL.
- ``none``: keep every pixel.

The label of a pixel is the argmax of the main head (``head: main``, the default) or, for a model
with an auxiliary head, of softmax(main + ``aux_weight`` x aux) averaged over the TTA (``head:
fused``, the default of ``uncertainty``). Seg-Uncertainty's official generator
(``generate_plabel_cityscapes.py``) is ``rule: none``, ``head: fused``, ``aux_weight`` 0.5, flip
and scales 1 and 1.25 (docs/METHODS.md, "Seg-Uncertainty").

``out`` holds ``images/`` (links to the originals), ``masks/<stem>.png`` (palette PNG of train
ids, 255 = not kept), ``confidence/<stem>.png`` (16-bit p * 65535 of the top class),
``predictions/<stem>.npz``, ``classes.yaml``, ``manifest.json`` (``"complete": true`` at the
end) and ``report.json`` / ``report.md``. Every file is written atomically.

Example::

    >>> report = generate_pseudo_labels("runs/teacher", cfg.data.streams.target, "runs/pseudo",
    ...                                 Selection(rule="cbst", portion=0.2), flip=True)
    >>> cfg.data.streams.target.merge_with(pseudo_dataset("runs/pseudo"))
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import warnings
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from segshift.config import (
    DatasetConfig,
    config_diff,
    load_config,
    merge_into_schema,
    resolve_config_path,
)
from segshift.data import build_dataset
from segshift.data.base import SegDataset
from segshift.data.io import image_size
from segshift.engine.restore import find_checkpoint, load_trained
from segshift.errors import ConfigError, DataError
from segshift.evaluation import ConfusionMatrix, predict
from segshift.fileio import atomic_write, atomic_write_bytes
from segshift.pipeline.predict import sample_names

RULES = ("threshold", "cbst", "uncertainty", "none")
TOP_K = 3  # classes stored per pixel
SCALE = 65535  # probabilities are stored as uint16 p * SCALE
IGNORE = 255
AUX_WEIGHT = 0.5  # Seg-Uncertainty labels from softmax(main + 0.5 aux)
HEADS = ("main", "fused")
DATA_KEYS = (
    "name", "split", "split_file", "n_labeled", "subset_seed", "complement", "resize", "interpolation",
    "concat",
)  # fmt: skip


@dataclass
class Selection:
    """Which predicted pixels become labels (see the module docstring).

    Args:
        rule: ``threshold`` | ``cbst`` | ``uncertainty`` | ``none``.
        threshold: ``threshold`` keeps top probability >= this.
        portion: CBST's p, the share of each class kept (its round schedule is the caller's).
        max_kl: ``uncertainty`` keeps KL(p_aux || p_main) <= this (nats); None: use kl_portion.
        kl_portion: ``uncertainty`` without max_kl keeps this share of all pixels, lowest KL first.
        head: which prediction labels a pixel: ``main`` or ``fused`` (main + aux_weight x aux);
            None: ``fused`` for ``uncertainty``, ``main`` for the other rules.
    """

    rule: str = "threshold"
    threshold: float = 0.5
    portion: float = 0.2
    max_kl: float | None = None
    kl_portion: float = 0.8
    head: str | None = None

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ConfigError(
                f"selection.rule: expected one of {', '.join(RULES)}, not {self.rule}"
            )
        if not 0 <= self.threshold <= 1:
            raise ConfigError(f"selection.threshold: expected [0, 1], got {self.threshold}")
        for key in ("portion", "kl_portion"):
            if not 0 < getattr(self, key) <= 1:
                raise ConfigError(f"selection.{key}: expected (0, 1], got {getattr(self, key)}")
        if self.max_kl is not None and self.max_kl < 0:
            raise ConfigError(f"selection.max_kl: expected >= 0, got {self.max_kl}")
        if self.head is not None and self.head not in HEADS:
            raise ConfigError(
                f"selection.head: expected one of {', '.join(HEADS)}, not {self.head}"
            )

    @property
    def label_head(self) -> str:
        """The prediction that labels the pixels: ``main`` or ``fused``."""
        return self.head or ("fused" if self.rule == "uncertainty" else "main")


def dataset_node(
    data: DictConfig | Mapping[str, Any] | str | Path,
    stream: str | None = None,
    overrides: Sequence[str] = (),
) -> DictConfig:
    """A DatasetConfig node from a node, a dataset directory (folder layout) or a config file.

    With a config file, ``stream`` names one of its ``data.streams`` (or ``val``), by default the
    first with ``labeled: false``, else ``target``, and ``overrides`` are config keys
    (``data.streams.target.root=...``); otherwise they are the node's keys (``resize=[64,80]``).
    """
    origin = "data"
    if isinstance(data, (str, Path)) and not Path(data).expanduser().is_dir():
        try:
            resolve_config_path(data)
        except ConfigError:
            raise ConfigError(f"{data}: neither a dataset directory nor a config file") from None
        cfg = load_config(data, list(overrides))
        streams = dict(cfg.data.streams)
        if stream is None:
            stream = next((name for name, s in streams.items() if not s.labeled), "target")
        origin = f"{data}: data." + ("val" if stream == "val" else f"streams.{stream}")
        data = cfg.data.val if stream == "val" else streams.get(stream)
        if data is None:
            raise ConfigError(f"{origin}: no such stream (has: {', '.join(streams)})")
        overrides = ()
    elif isinstance(data, (str, Path)):
        data, origin = {"name": "folder", "root": str(data), "labeled": False}, str(data)
    layers = [data] + ([OmegaConf.from_dotlist(list(overrides))] if overrides else [])
    node = merge_into_schema(DatasetConfig(), *layers, origin=origin)
    missing = OmegaConf.missing_keys(node)
    if missing:
        raise ConfigError(f"{origin}: value(s) not set: {', '.join(sorted(missing))}")
    return node


class _MainFusedAux(nn.Module):
    """One ``predict`` call (with all its TTA) for three heads from one forward: given the images
    three times over, [x; x; x], it runs the model on x and returns [main; main + w aux; aux]."""

    def __init__(self, model: nn.Module, aux_weight: float = AUX_WEIGHT) -> None:
        super().__init__()
        self.model, self.aux_weight = model, aux_weight
        self.align_corners = getattr(model, "align_corners", False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = self.model(x[: x.shape[0] // 3])
        main, aux = outputs["out"], outputs["aux"]
        return {"out": torch.cat([main, main + self.aux_weight * aux, aux])}


def _top_k(probs: torch.Tensor, prefix: str = "") -> dict[str, np.ndarray]:
    values, classes = probs.topk(min(TOP_K, probs.shape[0]), dim=0)
    quantised = (values * SCALE).round().cpu().numpy().astype(np.uint16)
    return {f"{prefix}classes": classes.cpu().numpy().astype(np.uint8), f"{prefix}probs": quantised}


def _predict_missing(
    model: nn.Module, dataset: SegDataset, pred_dir: Path, num_classes: int, options: dict
) -> None:
    """Store ``pred_dir/<name>.npz`` for every image without one; ``options``: ``eval`` (the
    run's eval config), ``with_aux``, ``aux_weight``, ``flip``, ``scales``, ``batch_size``,
    ``num_workers``, ``progress``."""
    groups: dict[tuple[int, int], list[int]] = {}  # one batch holds images of one size
    for index, sample in enumerate(dataset.files):
        if not (pred_dir / f"{options['names'][index]}.npz").is_file():
            groups.setdefault(image_size(sample.image), []).append(index)
    step = options["batch_size"]
    batches = [ids[i : i + step] for ids in groups.values() for i in range(0, len(ids), step)]
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=options["num_workers"])
    with_aux, ev = options["with_aux"], options["eval"]
    net = _MainFusedAux(model, options["aux_weight"]) if with_aux else model
    device = next(model.parameters()).device
    bar = tqdm(total=sum(map(len, batches)), desc="predict", disable=not options["progress"])
    for batch, ids in zip(loader, batches, strict=True):
        images = batch["image"].to(device)
        n = images.shape[0]
        probs = predict(
            net,
            images.repeat(3, 1, 1, 1) if with_aux else images,
            num_classes,
            mode=ev.mode,
            crop_size=tuple(ev.crop_size) if ev.crop_size else None,
            stride=tuple(ev.stride) if ev.stride else None,
            flip=options["flip"],
            scales=tuple(options["scales"]),
            output_size=image_size(dataset.files[ids[0]].image),
        )
        for j, name in enumerate(options["names"][int(i)] for i in batch["index"]):
            arrays = _top_k(probs[j])
            if with_aux:
                main, aux = probs[j].clamp_min(1e-12), probs[2 * n + j].clamp_min(1e-12)
                kl = (aux * (aux.log() - main.log())).sum(0).clamp_min(0)
                arrays |= _top_k(probs[n + j], "fused_")
                arrays["kl"] = kl.cpu().numpy().astype(np.float16)
            atomic_write(pred_dir / f"{name}.npz", lambda f, a=arrays: np.savez_compressed(f, **a))
        bar.update(n)
    bar.close()


def _load(path: Path, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as stored:
            return {key: stored[key] for key in keys or stored.files}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: unreadable stored prediction ({err}); delete it") from None


def cbst_thresholds(histogram: np.ndarray, portion: float) -> np.ndarray:
    """CBST's k_c (C,) float64 from ``histogram`` (C, 65536): counts of the quantised top
    probabilities of the pixels predicted c. k_c = the floor(N_c * portion)-th largest, or 1.0
    where that rank is 0."""
    thresholds = np.ones(histogram.shape[0])
    for c, counts in enumerate(histogram):
        rank = math.floor(counts.sum() * portion)
        if rank >= 1:
            thresholds[c] = (SCALE - np.searchsorted(np.cumsum(counts[::-1]), rank)) / SCALE
    return thresholds


def kl_threshold(histogram: np.ndarray, portion: float) -> float:
    """The floor(N * portion)-th smallest of N non-negative float16 KL values, from the counts
    (65536,) of their bit patterns (which sort like the values); -inf where that rank is 0."""
    rank = math.floor(histogram.sum() * portion)
    if rank < 1:
        return -math.inf
    bits = np.searchsorted(np.cumsum(histogram), rank)
    return float(np.array(bits, dtype=np.uint16).view(np.float16))


def dataset_thresholds(files: Sequence[Path], selection: Selection, num_classes: int) -> dict:
    """What a rule needs from all images' stored predictions: CBST's k_c per class
    (``class``, a list), uncertainty's KL cut-off (``max_kl``); {} for the other rules."""
    if selection.rule == "cbst":
        histogram = np.zeros(num_classes * (SCALE + 1), dtype=np.int64)
        for path in files:
            stored = _load(path, ("classes", "probs"))
            keys = stored["classes"][0].astype(np.int64) * (SCALE + 1) + stored["probs"][0]
            histogram += np.bincount(keys.ravel(), minlength=histogram.size)
        thresholds = cbst_thresholds(histogram.reshape(num_classes, -1), selection.portion)
        return {"class": thresholds.tolist()}
    if selection.rule == "uncertainty":
        if selection.max_kl is not None:
            return {"max_kl": selection.max_kl}
        histogram = np.zeros(SCALE + 1, dtype=np.int64)
        for path in files:
            bits = _load(path, ("kl",))["kl"].view(np.uint16).ravel()
            histogram += np.bincount(bits, minlength=SCALE + 1)
        return {"max_kl": kl_threshold(histogram, selection.kl_portion)}
    return {}


def select_labels(
    stored: Mapping[str, np.ndarray], selection: Selection, thresholds: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """(label (H,W) uint8, 255 = not kept; confidence (H,W) uint16 p * 65535) of one image's
    stored predictions: ``classes`` / ``probs`` (K,H,W), ``fused_classes`` / ``fused_probs``,
    ``kl`` (H,W). ``thresholds``: from :func:`dataset_thresholds`."""
    prefix = "fused_" if selection.label_head == "fused" else ""
    classes, probs = stored[f"{prefix}classes"], stored[f"{prefix}probs"]
    label = classes[0].copy()
    if selection.rule == "threshold":
        keep = probs[0] / SCALE >= selection.threshold
    elif selection.rule == "cbst":
        # k_c quantised like the probabilities: a pixel at exactly k_c has ratio 1 and is kept.
        ratio = probs / np.rint(np.asarray(thresholds["class"]) * SCALE)[classes]
        best = ratio.argmax(axis=0)[None]
        label = np.take_along_axis(classes, best, axis=0)[0]
        keep = np.take_along_axis(ratio, best, axis=0)[0] >= 1
    elif selection.rule == "uncertainty":
        keep = stored["kl"] <= thresholds["max_kl"]
    else:
        keep = np.ones(label.shape, dtype=bool)
    label[~keep] = IGNORE
    return label, probs[0]


def _share(part: float, whole: float) -> float | None:
    return float(part / whole) if whole else None


class QualityReport:
    """Coverage of pseudo-labels per class and, against ground truth, pixel accuracy, per-class
    IoU and mIoU on the kept pixels and the share of each true class that is kept.

    Example::

        >>> report = QualityReport(["road", "car"])
        >>> report.update(label, teacher_argmax, target)   # (H,W) each; target may be None
        >>> report.to_dict()["labels"]["miou"]
    """

    def __init__(self, class_names: Sequence[str]) -> None:
        self.names = list(class_names)
        self.images = self.pixels = self.labeled_images = 0
        self.predicted, self.kept, self.truth = (np.zeros(len(self.names), np.int64) for _ in "pkt")
        self.confusion = ConfusionMatrix(len(self.names))

    def update(self, label: np.ndarray, predicted: np.ndarray, target: np.ndarray | None) -> None:
        """``label``: pseudo-label (255 = not kept); ``predicted``: the teacher's argmax;
        ``target``: ground-truth train ids (255 = void) or None."""
        n, kept = len(self.names), label != IGNORE
        self.images += 1
        self.pixels += label.size
        self.predicted += np.bincount(predicted.ravel(), minlength=n)
        self.kept += np.bincount(label[kept], minlength=n)
        if target is not None:
            self.labeled_images += 1
            self.truth += np.bincount(target[target != IGNORE], minlength=n)
            judged = np.where(kept, target, IGNORE)  # only kept pixels are scored
            self.confusion.update(torch.from_numpy(label), torch.from_numpy(judged))

    def to_dict(self) -> dict[str, Any]:
        """Counts and fractions (None where undefined), overall, per class and vs. the truth."""
        kept = int(self.kept.sum())
        rows = zip(self.names, self.predicted.tolist(), self.kept.tolist(), strict=True)
        classes = {
            name: {"predicted": p, "kept": k, "coverage": _share(k, p)} for name, p, k in rows
        }
        report = {"images": self.images, "pixels": self.pixels, "kept": kept}
        report |= {"coverage": _share(kept, self.pixels), "classes": classes, "labels": None}
        if self.labeled_images:
            metrics = self.confusion.compute()
            truth_kept = self.confusion.matrix.sum(dim=1).tolist()
            clean = lambda v: None if math.isnan(v) else v  # noqa: E731
            for c, row in enumerate(classes.values()):
                truth = int(self.truth[c])
                row |= {
                    "truth": truth,
                    "truth_kept": truth_kept[c],
                    "iou": clean(metrics["iou"][c]),
                }
                row["truth_coverage"] = _share(truth_kept[c], truth)
            report["labels"] = {
                "images": self.labeled_images,
                "coverage": _share(sum(truth_kept), int(self.truth.sum())),
                "pixel_accuracy": clean(metrics["pixel_accuracy"]),
                "miou": clean(metrics["miou"]),
            }
        return report

    def to_markdown(self) -> str:
        """A summary and a per-class table, in percent."""
        report, labels = self.to_dict(), self.to_dict()["labels"]
        pct = lambda v: "-" if v is None else f"{100 * v:.2f}"  # noqa: E731
        text = f"# Pseudo-labels\n\n{report['images']} images, {pct(report['coverage'])}% kept.\n"
        columns = ["id", "class", "predicted", "kept", "kept %"]
        if labels:
            text += (
                f"Against ground truth ({labels['images']} images), on kept pixels: pixel "
                f"accuracy {pct(labels['pixel_accuracy'])}, mIoU {pct(labels['miou'])}; "
                f"{pct(labels['coverage'])}% of valid pixels kept.\n"
            )
            columns += ["truth kept %", "IoU"]
        lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
        for c, (name, row) in enumerate(report["classes"].items()):
            cells = [c, name, row["predicted"], row["kept"], pct(row["coverage"])]
            if labels:
                cells += [pct(row["truth_coverage"]), pct(row["iou"])]
            lines.append("| " + " | ".join(map(str, cells)) + " |")
        return text + "\n" + "\n".join(lines) + "\n"


def _write_png(path: Path, array: np.ndarray, palette: Sequence[Sequence[int]] = ()) -> None:
    image = Image.fromarray(array)  # uint8 -> "L", uint16 -> "I;16" (a 16-bit grey PNG)
    if palette:  # the pixel values stay the class ids; the palette makes them viewable
        # 256 entries: a shorter palette makes Pillow write fewer bits and 255 would not fit.
        colours = [value for colour in palette for value in colour]
        image.putpalette(colours + [0] * (768 - len(colours)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue(), durable=False)


def _link_image(image: Path, target: Path) -> None:
    """``target`` -> ``image`` as a symlink (a copy where links fail), swapped in atomically."""
    source = image.resolve()
    if target.exists() and target.resolve() == source:
        return
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def _sha256(checkpoint: str | Path) -> str:
    export = Path(checkpoint) / "model.safetensors"
    digest = hashlib.sha256()
    with open(export if export.is_file() else find_checkpoint(checkpoint), "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _ground_truth(node: DictConfig, label_data: Any, names: list[str]) -> SegDataset | None:
    """The labeled dataset of the quality report: ``label_data``, or ``node``'s own labels
    where it has them (None where it has none or they are in another label space)."""
    try:
        gt_node = dataset_node(label_data) if label_data is not None else node.copy()
        gt_node.labeled = True
        gt = build_dataset(gt_node, train=False)
    except (ConfigError, DataError):
        if label_data is not None:
            raise
        return None
    if list(gt.label_space.class_names) == names:
        return gt
    message = f"labels at {gt.root} have classes {list(gt.label_space.class_names)}, not {names}"
    if label_data is not None:
        raise ConfigError(f"label_data: {message}")
    warnings.warn(f"no quality report: {message}", stacklevel=3)
    return None


def _start(out: Path, manifest: dict[str, Any], names: list[str], palette: list) -> None:
    """Check that ``out`` holds no predictions of another model or data, then write the
    manifest (incomplete) and ``classes.yaml``."""
    path, pred_dir = out / "manifest.json", out / "predictions"
    if path.is_file():
        stored = json.loads(path.read_text()).get("predictions", {})
        stored.setdefault("aux_weight", AUX_WEIGHT)  # written before the weight was an option
        changed = config_diff(stored, manifest["predictions"])
        if changed:
            raise ConfigError(
                f"{out} holds predictions made with another {', '.join(changed)}; "
                "choose another output directory or delete it"
            )
    elif pred_dir.is_dir() and any(pred_dir.iterdir()):
        raise ConfigError(f"{pred_dir} exists without {path}: delete it or choose another output")
    atomic_write_bytes(path, json.dumps(manifest, indent=2).encode())
    classes = [{"name": n, "color": list(c)} for n, c in zip(names, palette, strict=True)]
    atomic_write_bytes(out / "classes.yaml", yaml.safe_dump({"classes": classes}).encode())


def generate_pseudo_labels(
    checkpoint: str | Path,
    data: DictConfig | Mapping[str, Any] | str | Path,
    out: str | Path,
    selection: Selection | None = None,
    *,
    flip: bool = False,
    scales: Sequence[float] = (1.0,),
    batch_size: int = 4,
    progress: bool = True,
    label_data: DictConfig | Mapping[str, Any] | str | Path | None = None,
    num_workers: int = 2,
    aux_weight: float = AUX_WEIGHT,
) -> dict[str, Any]:
    """Pseudo-label the images of ``data`` with the model at ``checkpoint`` into ``out``.

    Args:
        checkpoint: a run directory, checkpoint file or export directory.
        data: a DatasetConfig-like node (e.g. ``cfg.data.streams.target``), a dataset directory
            or a config file (:func:`dataset_node`). Images go through the evaluation transform
            (the node's ``resize``, nothing random); labels come out at each image's own size.
        out: the output directory (layout in the module docstring). A rerun predicts only the
            images without stored predictions; one with another selection reuses them all;
            one with another checkpoint, data or TTA is a ConfigError.
        selection: the rule; default ``Selection()`` (top probability >= 0.5).
        flip, scales: test-time augmentation; the run's ``eval.mode`` / crop / stride apply.
        batch_size: images per forward (batches hold images of one size).
        progress: tqdm bars.
        label_data: ground truth for the quality report (node, directory or config file);
            None: ``data``'s own labels where it has them.
        num_workers: DataLoader workers reading the images.
        aux_weight: w of the fused prediction main + w aux (models with an auxiliary head).

    Returns:
        The report (also ``out/report.json``, ``report.md``): ``images``, ``pixels``, ``kept``,
        ``coverage``, ``classes`` (per class ``predicted``, ``kept``, ``coverage``; with labels
        also ``truth``, ``truth_kept``, ``truth_coverage``, ``iou``), ``labels``
        (``pixel_accuracy``, ``miou``, ``coverage`` of valid pixels; None without labels),
        ``selection`` and ``thresholds``.
    """
    selection, out, node = selection or Selection(), Path(out), dataset_node(data)
    cfg, method, label_space = load_trained(checkpoint)
    names, palette = list(label_space["class_names"]), label_space["palette"]
    dataset = build_dataset(merge_into_schema(node, {"labeled": False}), train=False)
    names_out = sample_names(dataset.files)  # <folder>_<name> where parts share a name
    data_key = {key: node[key] for key in DATA_KEYS}
    data_key |= {"root": str(Path(node.root).expanduser().resolve()), "options": node.options}
    predictions = {
        "checkpoint_sha256": _sha256(checkpoint),
        "data": data_key,
        "flip": flip,
        "scales": list(scales),
        "eval": cfg.eval,
        "top_k": TOP_K,
        "aux_weight": aux_weight,
    }
    manifest = {
        "checkpoint": str(checkpoint),
        "data": OmegaConf.to_container(node, resolve=True),
        "selection": asdict(selection),
        "predictions": OmegaConf.to_container(OmegaConf.create(predictions), resolve=True),
        "complete": False,
    }
    _start(out, manifest, names, palette)
    (out / "images").mkdir(exist_ok=True)
    for sample, name in zip(dataset.files, names_out, strict=True):
        _link_image(sample.image, out / "images" / f"{name}{sample.image.suffix}")

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = method.eval_model().to(device).eval()
    with torch.inference_mode():  # one image tells whether the model has an auxiliary head
        with_aux = "aux" in model(dataset[0]["image"][None].to(device))
    if selection.label_head == "fused" and not with_aux:
        asked = "rule uncertainty" if selection.rule == "uncertainty" else "head fused"
        raise ConfigError(
            f"selection.{asked} needs a model with an auxiliary head ('aux' output, "
            f"e.g. DeepLab-v2 multi_level); {checkpoint} has none"
        )
    options = {
        "eval": cfg.eval,
        "with_aux": with_aux,
        "aux_weight": aux_weight,
        "flip": flip,
        "scales": scales,
        "batch_size": batch_size,
        "num_workers": num_workers,
        "progress": progress,
        "names": names_out,
    }
    _predict_missing(model, dataset, out / "predictions", len(names), options)

    files = [out / "predictions" / f"{name}.npz" for name in names_out]
    thresholds = dataset_thresholds(files, selection, len(names))
    gt = _ground_truth(node, label_data, names)
    gt_index = {name: i for i, name in enumerate(sample_names(gt.files))} if gt else {}
    report, head = QualityReport(names), "fused_" if selection.label_head == "fused" else ""
    for sample, name, path in tqdm(
        list(zip(dataset.files, names_out, files, strict=True)), desc="select", disable=not progress
    ):
        stored = _load(path)
        label, confidence = select_labels(stored, selection, thresholds)
        _write_png(out / "masks" / f"{name}.png", label, palette)
        _write_png(out / "confidence" / f"{name}.png", confidence)
        target = gt.load_label(gt_index[name]) if name in gt_index else None
        if target is not None and target.shape != label.shape:
            raise DataError(
                f"{gt.files[gt_index[name]].mask}: mask size {target.shape} differs from "
                f"image {sample.image} size {label.shape} (H, W)"
            )
        report.update(label, stored[f"{head}classes"][0], target)

    result = report.to_dict() | {"selection": asdict(selection), "thresholds": thresholds}
    atomic_write_bytes(out / "report.json", json.dumps(result, indent=2).encode())
    atomic_write_bytes(out / "report.md", report.to_markdown().encode())
    manifest |= {"complete": True, "counts": {k: result[k] for k in ("images", "pixels", "kept")}}
    atomic_write_bytes(out / "manifest.json", json.dumps(manifest, indent=2).encode())
    return result


def pseudo_dataset(out: str | Path) -> dict[str, Any]:
    """The dataset keys that make a stream read the pseudo-labels in ``out`` (``name``,
    ``root``, ``labeled``, ``domain``, ``options``, and the subset keys reset); merge them into a
    stream's node. A DataError when ``out`` holds no complete pseudo-label set."""
    path = Path(out) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a pseudo-label directory ({err})") from None
    if not manifest.get("complete"):
        raise DataError(f"{path}: the pseudo-labels are incomplete; rerun to finish them")
    data = manifest["data"]
    return {
        "name": "folder",
        "root": str(Path(out).resolve()),
        "labeled": True,
        "domain": data.get("domain") or data["name"],
        "options": {"mask_format": "index"},
        # The folder holds exactly the labeled images: no subset of it (the teacher's stream
        # may have been the complement of an n_labeled subset, already applied).
        "n_labeled": None,
        "split_file": None,
        "complement": False,
        "concat": None,  # the parts of a concatenated stream are all in the folder
    }
