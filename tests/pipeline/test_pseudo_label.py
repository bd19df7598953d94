"""Pseudo-labels: selection rules on hand-made predictions, the quality report by hand, and the
whole pipeline (files, resume, reuse, errors) with a pointwise model whose probabilities are
known in closed form, plus one CLI run with a really trained checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image
from torch import nn

from segshift.cli import main
from segshift.config import Config, DatasetConfig, merge_into_schema
from segshift.data import build_dataset
from segshift.errors import ConfigError, DataError
from segshift.pipeline import pseudo_label as pl
from segshift.pipeline.pseudo_label import (
    QualityReport,
    Selection,
    cbst_thresholds,
    dataset_node,
    dataset_thresholds,
    generate_pseudo_labels,
    kl_threshold,
    pseudo_dataset,
    select_labels,
)

SCALE = 65535
NAMES = ["r", "g", "b"]
PALETTE = [[255, 0, 0], [0, 255, 0], [0, 0, 255]]
RED, ORANGE, GREEN, BLUE, TEAL = (255, 0, 0), (153, 102, 0), (0, 255, 0), (0, 0, 255), (0, 153, 102)
GAIN = 8.0  # the fake model's logits are GAIN * RGB in [0, 1]


def q(p: float) -> int:
    return round(p * SCALE)


def softmax(logits: list[float]) -> list[float]:
    exps = [math.exp(v) for v in logits]
    return [e / sum(exps) for e in exps]


P_PURE = softmax([GAIN, 0, 0])[0]  # a pure colour: 0.99933
P_MIXED = softmax([GAIN * 0.6, GAIN * 0.4, 0])[0]  # 0.6/0.4 of two channels: 0.8293


def stored(classes, probs, **extra) -> dict[str, np.ndarray]:
    """Stored predictions of a 1-row image: classes/probs given per pixel as (top1, top2)."""
    arrays = {
        "classes": np.array(classes, dtype=np.uint8).T[:, None, :],
        "probs": np.array([[q(p) for p in pair] for pair in probs], dtype=np.uint16).T[:, None, :],
    }
    return arrays | {k: np.asarray(v)[None] for k, v in extra.items()}


# --- selection rules ------------------------------------------------------------------------


def test_threshold_keeps_confidence_at_or_above() -> None:
    s = stored([(0, 1), (1, 0), (2, 0)], [(0.5, 0.3), (0.49, 0.4), (0.9, 0.1)])
    label, confidence = select_labels(s, Selection("threshold", threshold=0.5), {})
    assert label.tolist() == [[0, 255, 2]]
    assert confidence.tolist() == [[q(0.5), q(0.49), q(0.9)]]
    label, _ = select_labels(s, Selection("none"), {})
    assert label.tolist() == [[0, 1, 2]]


def test_cbst_thresholds_keep_the_asked_portion_per_class() -> None:
    # Class 0: 5 pixels, p = 0.4 -> rank floor(2.0) = 2 -> k_0 = 2nd largest = 0.8.
    # Class 1: 3 pixels -> rank floor(1.2) = 1 -> k_1 = 0.95. Class 2: none -> 1.0.
    conf0, conf1 = [0.9, 0.8, 0.7, 0.6, 0.55], [0.95, 0.6, 0.52]
    classes = [(0, 1)] * 5 + [(1, 0)] * 3
    # second-ranked probabilities small enough never to win p_c / k_c
    s = stored(classes, [(p, 0.05) for p in conf0 + conf1])
    histogram = np.zeros((3, SCALE + 1), dtype=np.int64)
    np.add.at(histogram, (s["classes"][0].ravel(), s["probs"][0].ravel()), 1)
    k = cbst_thresholds(histogram, 0.4)
    assert k.tolist() == [q(0.8) / SCALE, q(0.95) / SCALE, 1.0]
    label, _ = select_labels(s, Selection("cbst", portion=0.4), {"class": k.tolist()})
    assert label.tolist() == [[0, 0, 255, 255, 255, 1, 255, 255]]
    kept = [(label == c).sum() for c in (0, 1)]
    assert kept == [math.floor(5 * 0.4), math.floor(3 * 0.4)]


def test_cbst_labels_the_argmax_of_normalised_scores() -> None:
    # k = (0.9, 0.3): p = (0.6, 0.4) -> r = (0.667, 1.333) -> class 1, kept;
    # p = (0.7, 0.2) -> r = (0.778, 0.667) -> not kept; p = (0.95, 0.05) -> class 0, kept.
    s = stored([(0, 1), (0, 1), (0, 1)], [(0.6, 0.4), (0.7, 0.2), (0.95, 0.05)])
    label, _ = select_labels(s, Selection("cbst"), {"class": [0.9, 0.3, 1.0]})
    assert label.tolist() == [[1, 255, 0]]


def test_cbst_thresholds_from_stored_files(tmp_path: Path) -> None:
    # Two images: class 2 has 4 pixels (0.9, 0.7 | 0.8, 0.6); p = 0.5 -> 2nd largest = 0.8.
    files = []
    for i, confs in enumerate([(0.9, 0.7), (0.8, 0.6)]):
        arrays = stored([(2, 0), (2, 0)], [(c, 0.05) for c in confs])
        files.append(tmp_path / f"{i}.npz")
        np.savez(files[-1], **arrays)
    thresholds = dataset_thresholds(files, Selection("cbst", portion=0.5), 3)
    assert thresholds["class"] == [1.0, 1.0, q(0.8) / SCALE]


def test_uncertainty_keeps_low_kl_of_fused_label(tmp_path: Path) -> None:
    kl = np.array([0.0, 0.5, 0.1, 2.0], dtype=np.float16)
    s = stored([(0, 1)] * 4, [(0.9, 0.1)] * 4, kl=kl)
    s |= {"fused_classes": s["classes"][::-1].copy(), "fused_probs": s["probs"]}
    label, _ = select_labels(s, Selection("uncertainty"), {"max_kl": 0.1})
    assert label.tolist() == [[1, 255, 1, 255]]  # fused label (class 1), KL <= 0.1 kept
    histogram = np.bincount(kl.view(np.uint16), minlength=SCALE + 1)
    assert kl_threshold(histogram, 0.5) == pytest.approx(0.1, rel=1e-3)  # 2nd smallest of 4
    assert kl_threshold(histogram, 0.2) == -math.inf  # rank floor(0.8) = 0: nothing kept
    np.savez(tmp_path / "a.npz", **s)
    assert dataset_thresholds([tmp_path / "a.npz"], Selection("uncertainty", kl_portion=0.75), 3)[
        "max_kl"
    ] == pytest.approx(0.5, rel=1e-3)


def test_selection_rejects_bad_values() -> None:
    with pytest.raises(ConfigError, match="selection.rule"):
        Selection("fancy")
    with pytest.raises(ConfigError, match="selection.portion"):
        Selection("cbst", portion=0)
    with pytest.raises(ConfigError, match="selection.threshold"):
        Selection(threshold=1.5)


# --- quality report ---------------------------------------------------------------------------


def test_quality_report_hand_computed() -> None:
    label = np.array([[0, 0, 255, 1], [1, 255, 0, 0]], dtype=np.uint8)
    teacher = np.array([[0, 0, 1, 1], [1, 0, 0, 0]], dtype=np.uint8)
    target = np.array([[0, 1, 1, 255], [1, 0, 0, 1]], dtype=np.uint8)
    report = QualityReport(["a", "b"])
    report.update(label, teacher, target)
    result = report.to_dict()
    # kept & valid: (0,0) a/a, (0,1) a/b, (1,0) b/b, (1,2) a/a, (1,3) a/b -> 3 of 5 correct.
    # IoU a: TP 2 / (truth-kept 2 + pred 4 - 2) = 0.5; IoU b: TP 1 / (3 + 1 - 1) = 1/3.
    labels = result["labels"]
    assert labels["pixel_accuracy"] == pytest.approx(3 / 5)
    assert labels["miou"] == pytest.approx((0.5 + 1 / 3) / 2)
    assert labels["coverage"] == pytest.approx(5 / 7)  # 7 valid pixels, 5 kept
    assert result["coverage"] == pytest.approx(6 / 8)
    a, b = result["classes"]["a"], result["classes"]["b"]
    assert (a["truth"], a["truth_kept"], a["truth_coverage"]) == (3, 2, pytest.approx(2 / 3))
    assert (b["truth"], b["truth_kept"], b["truth_coverage"]) == (4, 3, pytest.approx(3 / 4))
    assert (a["predicted"], a["kept"], a["coverage"]) == (5, 4, pytest.approx(4 / 5))
    assert (b["predicted"], b["kept"], b["coverage"]) == (3, 2, pytest.approx(2 / 3))
    assert a["iou"] == pytest.approx(0.5) and b["iou"] == pytest.approx(1 / 3)
    assert "| 1 | b | 3 | 2 | 66.67 | 75.00 | 33.33 |" in report.to_markdown()


def test_quality_report_without_labels() -> None:
    report = QualityReport(["a", "b"])
    report.update(np.array([[0, 255]], np.uint8), np.array([[0, 0]], np.uint8), None)
    result = report.to_dict()
    assert result["labels"] is None
    assert result["classes"]["a"] == {"predicted": 2, "kept": 1, "coverage": 0.5}
    assert result["classes"]["b"]["coverage"] is None


# --- the pipeline with a pointwise model ----------------------------------------------------


class Pointwise(nn.Module):
    """Logits GAIN * RGB (``aux``: half that, red and green swapped); counts the images seen."""

    def __init__(self, aux: bool = False) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(GAIN))
        self.aux, self.images = aux, 0

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.images += x.shape[0]
        out = {"out": self.scale * x}
        if self.aux:
            out["aux"] = 0.5 * self.scale * x[:, [1, 0, 2]]
        return out


class FakeMethod:
    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def eval_model(self) -> nn.Module:
        return self.model


def blocks(height: int, width: int, *colours: tuple[int, int, int]) -> np.ndarray:
    """Horizontal bands: colour i of n fills rows i*h//n .. (i+1)*h//n."""
    image = np.zeros((height, width, 3), np.uint8)
    for i, colour in enumerate(colours):
        image[i * height // len(colours) : (i + 1) * height // len(colours)] = colour
    return image


@pytest.fixture
def scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Three images (two 8x12, one 6x10) with masks, a fake checkpoint file and model."""
    root = tmp_path / "data"
    images = {
        "a": (blocks(8, 12, RED, ORANGE), [0, 1]),  # truth: orange rows are 'g'
        "b": (blocks(8, 12, BLUE, GREEN), [2, 1]),
        "c": (blocks(6, 10, TEAL), [1]),
    }
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    for name, (image, truth) in images.items():
        Image.fromarray(image).save(root / "images" / f"{name}.png")
        mask = blocks(*image.shape[:2], *[(t, t, t) for t in truth])[..., 0]
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    (root / "classes.yaml").write_text(
        "classes:\n" + "".join(f"  - {{name: {n}, color: {c}}}\n" for n, c in zip(NAMES, PALETTE))
    )
    checkpoint = tmp_path / "teacher.pt"
    checkpoint.write_bytes(b"weights v1")
    state = {"model": Pointwise()}
    cfg = OmegaConf.structured(Config())
    space = {"name": "rgb", "class_names": NAMES, "palette": PALETTE}
    monkeypatch.setattr(
        pl, "load_trained", lambda path, overrides=None: (cfg, FakeMethod(state["model"]), space)
    )
    node = {"name": "folder", "root": str(root), "labeled": False}
    return root, checkpoint, node, state


def run(scene, out: Path, selection: Selection, **kwargs):
    _, checkpoint, node, _ = scene
    kwargs = {"progress": False, "num_workers": 0, "batch_size": 4} | kwargs
    return generate_pseudo_labels(checkpoint, node, out, selection, **kwargs)


def read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image)


IGNORE = 255
EXPECTED_THRESHOLD = {  # confidence >= 0.9: pure colours kept, mixed ones not
    "a": [0, IGNORE],
    "b": [2, 1],
    "c": [IGNORE],
}


def rows(name: str, values: list[int]) -> np.ndarray:
    shape = (6, 10) if name == "c" else (8, 12)
    return blocks(*shape, *[(v, v, v) for v in values])[..., 0]


def test_files_masks_confidence_report_and_folder_dataset(scene, tmp_path: Path) -> None:
    out = tmp_path / "pl"
    report = run(scene, out, Selection("threshold", threshold=0.9))
    for name, values in EXPECTED_THRESHOLD.items():
        assert np.array_equal(read(out / "masks" / f"{name}.png"), rows(name, values)), name
        original = (scene[0] / "images" / f"{name}.png").resolve()
        assert (out / "images" / f"{name}.png").resolve() == original
    confidence = read(out / "confidence" / "a.png")
    assert confidence.dtype == np.uint16 and confidence.shape == (8, 12)
    assert confidence[0, 0] == q(P_PURE) and confidence[-1, -1] == q(P_MIXED)
    assert not list(out.rglob("*.tmp"))
    # Kept: a's red rows 48, b's 96 -> 144 of 252 pixels. Truth: a's orange rows are g.
    assert (report["images"], report["pixels"], report["kept"]) == (3, 252, 144)
    assert report["classes"]["g"] == {
        "predicted": 48 + 60,
        "kept": 48,
        "coverage": pytest.approx(48 / 108),
        "truth": 48 + 48 + 60,
        "truth_kept": 48,
        "truth_coverage": pytest.approx(48 / 156),
        "iou": 1.0,
    }
    assert report["labels"]["pixel_accuracy"] == 1.0 and report["labels"]["miou"] == 1.0
    assert json.loads((out / "report.json").read_text())["kept"] == 144
    assert "mIoU 100.00" in (out / "report.md").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["counts"]["kept"] == 144
    # The output is a labeled folder dataset.
    node = merge_into_schema(DatasetConfig(), pseudo_dataset(out))
    dataset = build_dataset(node, train=False)
    assert list(dataset.label_space.class_names) == NAMES
    assert dataset[0]["label"].tolist() == rows("a", EXPECTED_THRESHOLD["a"]).tolist()


def test_resume_and_new_selection_reuse_predictions(scene, tmp_path: Path) -> None:
    out, model = tmp_path / "pl", scene[3]["model"]
    run(scene, out, Selection("threshold", threshold=0.9))
    assert model.images == 1 + 3  # the aux probe, then every image
    (out / "predictions" / "b.npz").unlink()
    (out / "masks" / "a.png").unlink()
    model.images = 0
    run(scene, out, Selection("threshold", threshold=0.9))
    assert model.images == 1 + 1  # only b predicted again
    assert np.array_equal(read(out / "masks" / "a.png"), rows("a", EXPECTED_THRESHOLD["a"]))
    model.images = 0
    # CBST p = 0.5: r: 96 pixels, rank 48 -> k_r = P_PURE (a's red rows only); g: 108 pixels,
    # rank 54 -> k_g = P_MIXED, so c's 60 teal pixels tie at k_g and are kept; b: k_b = P_PURE.
    report = run(scene, out, Selection("cbst", portion=0.5))
    assert model.images == 1
    assert report["thresholds"]["class"] == [
        q(P_PURE) / SCALE,
        q(P_MIXED) / SCALE,
        q(P_PURE) / SCALE,
    ]
    assert np.array_equal(read(out / "masks" / "c.png"), rows("c", [1]))
    assert np.array_equal(read(out / "masks" / "a.png"), rows("a", [0, IGNORE]))
    assert json.loads((out / "manifest.json").read_text())["selection"]["rule"] == "cbst"


def test_other_checkpoint_in_same_output_is_refused(scene, tmp_path: Path) -> None:
    out = tmp_path / "pl"
    run(scene, out, Selection())
    scene[1].write_bytes(b"weights v2")
    with pytest.raises(ConfigError, match="checkpoint_sha256"):
        run(scene, out, Selection())
    scene[1].write_bytes(b"weights v1")
    with pytest.raises(ConfigError, match="flip"):
        run(scene, out, Selection(), flip=True)
    run(scene, out, Selection("none"))  # the same checkpoint again is fine


def test_flip_multiscale_and_resize_give_labels_at_own_size(scene, tmp_path: Path) -> None:
    _, checkpoint, node, _ = scene
    out = tmp_path / "pl"
    data = node | {"resize": [4, 6]}
    generate_pseudo_labels(
        checkpoint,
        data,
        out,
        Selection("none"),
        flip=True,
        scales=(0.5, 1.0),
        progress=False,
        num_workers=0,
    )
    # A pointwise model on horizontal bands: flips and scales change nothing inside the bands.
    mask = read(out / "masks" / "b.png")
    assert mask.shape == (8, 12) and read(out / "masks" / "c.png").shape == (6, 10)
    assert (mask[:3] == 2).all() and (mask[-3:] == 1).all()


def kl_aux_main(main_logits: list[float], aux_logits: list[float]) -> float:
    """KL(p_aux || p_main) in nats, by hand."""
    main, aux = softmax(main_logits), softmax(aux_logits)
    return sum(pa * (math.log(pa) - math.log(pm)) for pa, pm in zip(aux, main, strict=True))


def test_uncertainty_rule_uses_fused_heads(scene, tmp_path: Path) -> None:
    scene[3]["model"] = Pointwise(aux=True)
    out = tmp_path / "pl"
    report = run(scene, out, Selection("uncertainty", max_kl=0.2))
    # Blue: main (0,0,8), aux (0,0,4): KL(aux||main) = 0.106 (the other way 0.033) -> kept;
    # fused (0,0,10). Red: main (8,0,0), aux (0,4,0): KL 7.7 -> not kept; green likewise.
    blue_kl = kl_aux_main([0, 0, GAIN], [0, 0, GAIN / 2])
    assert 0.1 < blue_kl < 0.2 and kl_aux_main([0, 0, GAIN / 2], [0, 0, GAIN]) < 0.05
    assert np.array_equal(read(out / "masks" / "b.png"), rows("b", [2, IGNORE]))
    assert (read(out / "masks" / "a.png") == 255).all()
    assert float(np.load(out / "predictions" / "b.npz")["kl"][0, 0]) == pytest.approx(
        blue_kl, rel=1e-3
    )
    stored = np.load(out / "predictions" / "a.npz")
    assert float(stored["kl"][0, 0]) == pytest.approx(
        kl_aux_main([GAIN, 0, 0], [0, GAIN / 2, 0]), rel=1e-3
    )
    assert stored["fused_probs"][0, 0, 0] == q(softmax([GAIN, GAIN / 4, 0])[0])
    assert stored["fused_classes"][0, 0, 0] == 0 and stored["classes"][0, 0, 0] == 0
    assert report["thresholds"] == {"max_kl": 0.2}
    assert read(out / "confidence" / "b.png")[0, 0] == q(softmax([0, 0, 1.25 * GAIN])[2])
    # Without max_kl, kl_portion of all pixels: blue's 48 of 252 pixels are the lowest.
    report = run(scene, out, Selection("uncertainty", kl_portion=48 / 252))
    assert report["thresholds"]["max_kl"] == pytest.approx(blue_kl, rel=1e-3)
    assert report["kept"] == 48


def test_uncertainty_without_aux_head_is_a_config_error(scene, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="auxiliary head"):
        run(scene, tmp_path / "pl", Selection("uncertainty"))


def test_same_name_twice_gets_distinct_files(scene, tmp_path: Path) -> None:
    """Two images named a (a.jpg, a.png) are written as a_jpg and a_png, as predict names
    them, instead of one overwriting the other (or failing after the teacher trained)."""
    root = scene[0]
    Image.fromarray(blocks(8, 12, RED)).save(root / "images" / "a.jpg")
    report = run(scene, tmp_path / "pl", Selection())
    assert report["images"] == 4
    masks = sorted(p.name for p in (tmp_path / "pl" / "masks").iterdir())
    assert masks == ["a_jpg.png", "a_png.png", "b.png", "c.png"]
    images = sorted(p.name for p in (tmp_path / "pl" / "images").iterdir())
    assert images == ["a_jpg.jpg", "a_png.png", "b.png", "c.png"]
    assert read(tmp_path / "pl" / "masks" / "a_jpg.png")[0, 0] == 0  # red: class 0


def test_labels_of_another_label_space_are_refused(scene, tmp_path: Path, folder_factory) -> None:
    camvid = folder_factory(tmp_path / "camvid", n=1)
    with pytest.raises(ConfigError, match="label_data: labels at .* have classes"):
        run(scene, tmp_path / "pl", Selection(), label_data=str(camvid))


def test_dataset_node_from_directory_or_config_stream(tmp_path: Path) -> None:
    config = tmp_path / "uda.yaml"
    config.write_text(
        "data:\n  streams:\n"
        "    source: {name: folder, root: /src}\n"
        "    target: {name: camvid, root: /cv, labeled: false, resize: [90, 120]}\n"
    )
    node = dataset_node(config)
    assert (node.name, node.root, list(node.resize), node.labeled) == (
        "camvid",
        "/cv",
        [90, 120],
        False,
    )
    assert dataset_node(config, "source", ["data.streams.source.root=/other"]).root == "/other"
    with pytest.raises(ConfigError, match="data.val: no such stream"):
        dataset_node(config, "val")
    node = dataset_node(tmp_path, overrides=["resize=[4,6]"])
    assert (node.name, node.root, list(node.resize)) == ("folder", str(tmp_path), [4, 6])
    with pytest.raises(ConfigError, match="neither a dataset directory nor a config file"):
        dataset_node(tmp_path / "missing")
    with pytest.raises(ConfigError, match="root"):
        dataset_node({"name": "folder"})


def test_incomplete_output_is_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a pseudo-label directory"):
        pseudo_dataset(tmp_path)
    (tmp_path / "manifest.json").write_text('{"complete": false}')
    with pytest.raises(DataError, match="incomplete"):
        pseudo_dataset(tmp_path)


# --- the command line with a trained run ----------------------------------------------------


def test_cli_pseudo_label_with_trained_run(tmp_path: Path, folder_factory, capsys) -> None:
    data = folder_factory(tmp_path / "data", n=3)
    runs = tmp_path / "runs"
    assert (
        main(
            [
                "train",
                "demo/source_only",
                f"data.streams.labeled.root={data}",
                f"data.val.root={data}",
                f"output_dir={runs}",
                "name=t",
                "train.iters=1",
                "train.eval_every=1",
                "train.ckpt_every=1",
                "data.num_workers=0",
                "data.streams.labeled.batch_size=2",
                "data.streams.labeled.crop_size=[32,32]",
                "train.progress=plain",
            ]
        )
        == 0
    )
    out = tmp_path / "pl"
    args = ["pseudo-label", "--checkpoint", str(runs / "t"), "--data", str(data), "--out", str(out)]
    assert main([*args, "--rule", "cbst", "--portion", "0.5", "--workers", "0", "--flip"]) == 0
    printed = capsys.readouterr().out
    assert "3 images" in printed and "against ground truth" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["labels"]["images"] == 3 and len(report["thresholds"]["class"]) == 11
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"img_00{i}.png" for i in range(3)]
    # A config whose streams are all labeled has no default stream to pseudo-label.
    config = str(runs / "t" / "config.yaml")
    assert (
        main(
            [
                "pseudo-label",
                "--checkpoint",
                str(runs / "t"),
                "--data",
                config,
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "data.streams.target: no such stream" in capsys.readouterr().err


# --- Seg-Uncertainty's official pseudo-labels ------------------------------------------------


class TwoHeads(nn.Module):
    """Main and auxiliary 3x3 convolutions with fixed random weights (neither flip- nor
    scale-invariant)."""

    align_corners = False

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.main, self.aux = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1)
        with torch.no_grad():
            for conv in (self.main, self.aux):
                conv.weight.copy_(4 * torch.randn(conv.weight.shape, generator=generator))
                conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.main(x), "aux": self.aux(x)}


def generator_labels(model: nn.Module, image: np.ndarray, aux_weight: float, tta: bool):
    """generate_plabel_cityscapes.py written out: argmax of the summed softmax(main + w aux) over
    {1, 1.25} x {image, flipped image} (tta), resized to the image; no threshold."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    height, width = image.shape[:2]
    total = torch.zeros(1, 3, height, width)
    with torch.no_grad():
        for scale in (1.0, 1.25) if tta else (1.0,):
            size = (round(height * scale), round(width * scale))
            scaled = x if scale == 1 else F.interpolate(x, size=size, mode="bilinear")
            for flip in (False, True) if tta else (False,):
                out = model(scaled.flip(-1) if flip else scaled)
                fused = out["out"] + aux_weight * out["aux"]
                fused = F.interpolate(
                    fused.flip(-1) if flip else fused, size=(height, width), mode="bilinear"
                )
                total += fused.softmax(dim=1)
    return total.argmax(dim=1)[0].numpy().astype(np.uint8)


def test_documented_seg_uncertainty_command_gives_the_official_labels(scene, tmp_path: Path):
    root, checkpoint, _, state = scene
    model = state["model"] = TwoHeads()
    rng = np.random.default_rng(0)
    images = {}
    for name, shape in (("a", (8, 12)), ("b", (8, 12)), ("c", (6, 10))):
        images[name] = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        Image.fromarray(images[name]).save(root / "images" / f"{name}.png")
    out = tmp_path / "pl"
    command = ["pseudo-label", "--checkpoint", str(checkpoint), "--data", str(root), "--out",
               str(out), "--rule", "none", "--head", "fused", "--aux-weight", "0.5", "--flip",
               "--scales", "1,1.25", "--workers", "0"]  # fmt: skip
    assert main(command) == 0
    plain_differs = 0
    for name, image in images.items():
        mask = read(out / "masks" / f"{name}.png")
        assert np.array_equal(mask, generator_labels(model, image, 0.5, tta=True)), name
        assert (mask != IGNORE).all()  # every pixel kept
        plain = generator_labels(model, image, 0.0, tta=False)  # the main head, no TTA
        plain_differs += int((mask != plain).sum())
    assert plain_differs > 0  # the fused head and the TTA change labels
    with pytest.raises(ConfigError, match="aux_weight"):  # stored predictions of another weight
        run(
            scene, out, Selection("none", head="fused"), flip=True, scales=(1.0, 1.25), aux_weight=1
        )
    state["model"] = Pointwise()
    with pytest.raises(ConfigError, match="head fused needs a model with an auxiliary head"):
        run(scene, tmp_path / "pl2", Selection("none", head="fused"))
    with pytest.raises(ConfigError, match="selection.head"):
        Selection("none", head="aux")
