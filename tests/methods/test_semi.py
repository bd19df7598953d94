"""FixMatch, UniMatch, CPS, Mean Teacher and their shared pieces, against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from helpers import every_stream
from segshift.config import DatasetConfig
from segshift.data import build_dataset
from segshift.engine.trainer import Trainer
from segshift.errors import ConfigError
from segshift.methods.common.augment import StrongAugment, strong_augment
from segshift.methods.common.consistency import Targets, sigmoid_rampup, softmax_mse, valid_mask
from segshift.methods.common.mixing import box_masks
from segshift.methods.common.semi import Labeled, labeled_batch, semi_streams
from segshift.methods.cps import Cps
from segshift.methods.fixmatch import FixMatch
from segshift.methods.mean_teacher import MeanTeacher
from segshift.methods.unimatch import UniMatch

C = 4


class Constant(nn.Module):
    """A stand-in network: the same (C,) logits at every pixel of every image (4x downsampled)."""

    align_corners = False

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits = torch.tensor(logits)
        self.weight = nn.Parameter(torch.zeros(()))  # something for an optimizer

    def forward(self, x: torch.Tensor, perturb=None, return_feat=False) -> dict:
        b, _, h, w = x.shape
        if perturb is not None:
            b *= 2  # [clean; perturbed], as channel_dropout(keep_clean=True)
        out = self.logits.view(1, C, 1, 1).expand(b, C, h // 4, w // 4) + self.weight
        return {"out": out}


def batch(labeled: int = 2, unlabeled: int = 2, size: int = 16) -> dict:
    g = torch.Generator().manual_seed(0)
    label = torch.randint(0, C, (labeled, size, size), generator=g)
    label[:, 0] = 255
    valid = torch.ones(unlabeled, size, size, dtype=torch.bool)
    valid[:, -4:] = False  # padded rows
    u = {"image": torch.rand(unlabeled, 3, size, size, generator=g), "valid": valid}
    return {
        "labeled": {"image": torch.rand(labeled, 3, size, size, generator=g), "label": label},
        "unlabeled": u,
        "unlabeled_mix": {"image": torch.rand(unlabeled, 3, size, size, generator=g)},
    }


def build(cls, tiny_config, *params: str):
    torch.manual_seed(0)
    cfg = tiny_config(
        f"method.name={cls.__name__.lower()}",
        "model.params.decoder_dropout=0",
        *(f"method.params.{p}" for p in params),
    )
    return cls(cfg, C)


# --- shared pieces ----------------------------------------------------------------------------


def test_unimatch_normaliser_counts_every_valid_pixel_not_only_confident_ones() -> None:
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 0, 0, 0] = 10.0  # one confident pixel (class 0); the rest uniform
    valid = torch.tensor([[[True, True], [True, False]]])
    targets = Targets.from_logits(logits, (2, 2), valid)
    pred = torch.zeros(1, 2, 2, 2)  # CE = ln 2 at every pixel
    # tau = 0.9: only the confident pixel counts, but the normaliser is the 3 valid pixels
    assert targets.loss(pred, 0.9).item() == pytest.approx(math.log(2) / 3)
    # tau = 0: the mean CE over non-padding pixels (docs/METHODS.md, "FixMatch and UniMatch")
    assert targets.loss(pred, 0.0).item() == pytest.approx(math.log(2))


def test_pasted_targets_take_the_mix_image_inside_the_box() -> None:
    base = Targets(
        torch.zeros(1, 2, 2, dtype=torch.long),
        torch.full((1, 2, 2), 0.5),
        torch.ones(1, 2, 2, dtype=torch.bool),
    )
    other = Targets(
        torch.ones(1, 2, 2, dtype=torch.long),
        torch.full((1, 2, 2), 0.9),
        torch.zeros(1, 2, 2, dtype=torch.bool),
    )
    box = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    out = base.pasted(box, other)
    assert out.label.tolist() == [[[1, 0], [0, 0]]]
    assert torch.allclose(out.confidence, torch.tensor([[[0.9, 0.5], [0.5, 0.5]]]))
    assert out.valid.tolist() == [[[False, True], [True, True]]]


def test_strong_view_keeps_labels_aligned() -> None:
    """Photometric only: a left/right two-colour image keeps its edge where it was."""
    image = torch.zeros(2, 3, 16, 16)
    image[..., 8:] = 1.0
    params = StrongAugment(jitter=0.5, hue=0.25, jitter_p=1.0, grayscale_p=0.5, blur_p=0.0)
    strong = strong_augment(image, seed=3, params=params)
    for view in strong:
        left, right = view[..., :8], view[..., 8:]
        assert torch.allclose(left, left[..., :1, :1].expand_as(left), atol=1e-5)
        assert torch.allclose(right, right[..., :1, :1].expand_as(right), atol=1e-5)
        assert not torch.allclose(left[..., 0, 0], right[..., 0, 0])


def test_cps_box_masks_toggle_overlaps_and_cover_their_share() -> None:
    g = torch.Generator().manual_seed(0)
    masks = box_masks(64, (32, 32), g)
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    # 3 boxes of total area share U(0.25, 0.5) (each a third): overlaps only lower the cover
    share = masks.mean(dim=(1, 2))
    assert share.max() <= 0.5 + 0.05 and share.mean() > 0.2
    one = box_masks(1, (8, 8), torch.Generator().manual_seed(5), prop_range=(0.5, 0.5), n_boxes=1)
    assert one.sum() == pytest.approx(32, abs=4)  # half of 64 pixels, rounded box sides
    again = box_masks(64, (32, 32), torch.Generator().manual_seed(0))
    assert torch.equal(masks, again)


def test_softmax_mse_bounds() -> None:
    a = torch.randn(2, C, 3, 3)
    assert softmax_mse(a, a).item() == 0.0
    hot = torch.full((1, C, 1, 1), -50.0)
    other = hot.clone()
    hot[0, 0] = 50.0
    other[0, 1] = 50.0
    assert softmax_mse(hot, other).item() == pytest.approx(2 / C)


def test_labeled_streams_and_padding_mask(folder_factory, tmp_path) -> None:
    assert semi_streams(Labeled(streams=["labeled", "source"])) == (
        "labeled",
        "source",
        "unlabeled",
    )
    with pytest.raises(ConfigError, match="labeled.streams"):
        semi_streams(Labeled(streams=["unlabeled"]))
    two = {k: {"image": torch.zeros(1, 3, 4, 4), "label": torch.zeros(1, 4, 4)} for k in "ab"}
    assert labeled_batch(two, ["a", "b"])["image"].shape == (2, 3, 4, 4)
    root = folder_factory(tmp_path / "f", n=2, size=(10, 12))
    ds = build_dataset(
        DatasetConfig(name="folder", root=str(root), labeled=False, crop_size=[16, 16]), train=True
    )
    sample = ds[0, 1]
    valid = sample["valid"]
    assert valid.shape == (16, 16)
    assert valid[:10, :12].all() and not valid[10:].any() and not valid[:, 12:].any()
    assert valid_mask({"image": torch.zeros(2, 3, 5, 5)}).all()


# --- methods ----------------------------------------------------------------------------------


def test_unimatch_total_weights_its_four_losses(tiny_config, tiny_folder) -> None:
    method = build(UniMatch, tiny_config, "threshold=0.0")
    method.model = Constant([0.0] * C)  # uniform: every CE is ln C
    out = method.training_step(batch(), 0)
    assert out["sup"].item() == pytest.approx(math.log(C))
    for key in ("s1", "s2", "fp"):
        assert out[key].item() == pytest.approx(math.log(C), rel=1e-5)
    assert out["loss"].item() == pytest.approx(math.log(C), rel=1e-5)  # (1+.25+.25+.5)/2
    method.params.threshold = 0.95  # uniform confidence 1/C: nothing is confident
    out = method.training_step(batch(), 1)
    assert out["s1"].item() == 0.0 and out["fp"].item() == 0.0
    assert out["loss"].item() == pytest.approx(math.log(C) / 2, rel=1e-5)


def test_fixmatch_halves_the_sum(tiny_config) -> None:
    method = build(FixMatch, tiny_config, "threshold=0.0")
    method.model = Constant([0.0] * C)
    out = method.training_step(batch(), 0)
    assert out["loss"].item() == pytest.approx(math.log(C), rel=1e-5)  # (ln C + ln C) / 2


@pytest.mark.parametrize("cutmix", [False, True])
def test_cps_gives_each_network_the_others_argmax(tiny_config, cutmix) -> None:
    method = build(Cps, tiny_config, f"cutmix={str(cutmix).lower()}", "weight=1.0")
    left, right = [2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0]  # argmax: class 0 vs class 2
    method.model, method.model_r = Constant(left), Constant(right)
    data = batch()
    out = method.training_step(data, 0)
    ce_l_vs_2 = -F.log_softmax(torch.tensor(left), 0)[2].item()  # left learns right's class 2
    ce_r_vs_0 = -F.log_softmax(torch.tensor(right), 0)[0].item()
    assert out["cps"].item() == pytest.approx(ce_l_vs_2 + ce_r_vs_0, rel=1e-5)
    assert out["agree"].item() == 0.0
    valid = data["labeled"]["label"] != 255
    label = data["labeled"]["label"][valid]
    expected_l = (-F.log_softmax(torch.tensor(left), 0)[label]).mean().item()
    assert out["sup_l"].item() == pytest.approx(expected_l, rel=1e-5)
    assert out["loss"].item() == pytest.approx(
        out["sup_l"].item() + out["sup_r"].item() + out["cps"].item(), rel=1e-5
    )
    assert set(method.configure_optimizers()) == {"model", "model_r"}


def test_cps_networks_start_different(tiny_config) -> None:
    method = build(Cps, tiny_config)
    a = torch.cat([p.flatten() for p in method.model.parameters()])
    b = torch.cat([p.flatten() for p in method.model_r.parameters()])
    assert not torch.equal(a, b)
    assert method.eval_model() is method.model


def test_mean_teacher_consistency_weight_and_ema(tiny_config) -> None:
    assert sigmoid_rampup(0, 0) == 1.0
    assert sigmoid_rampup(0, 10) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(5, 10) == pytest.approx(math.exp(-1.25))
    assert sigmoid_rampup(12, 10) == 1.0
    method = build(MeanTeacher, tiny_config)
    method.train()
    assert not method.teacher.training  # eval-mode teacher by default
    data = batch(size=32)
    method.model.eval()  # same statistics as the teacher copy: identical predictions
    out = method.training_step(data, 0)
    assert out["consistency"].item() == pytest.approx(0.0, abs=1e-10)
    assert out["weight"].item() == 100.0
    # constant decay 0.99, no warm-up: one update moves the teacher 1% of the way
    before = [t.clone() for t in method.teacher.parameters()]
    with torch.no_grad():
        for p in method.model.parameters():
            p.add_(1.0)
    method.after_step(0)
    for b, t in zip(before, method.teacher.parameters(), strict=True):
        assert torch.allclose(t, b + 0.01, atol=1e-6)


def test_mean_teacher_separate_passes_give_each_batch_its_own_statistics(tiny_config) -> None:
    """TorchSemiSeg's train.py runs x and u through student and teacher one by one
    (``separate_passes``); the default is one pass over cat(x, u)."""

    class Recorder(Constant):
        def __init__(self, logits: list[float], sizes: list[int]) -> None:
            super().__init__(logits)
            self.sizes = sizes

        def forward(self, x: torch.Tensor, perturb=None, return_feat=False) -> dict:
            self.sizes.append(len(x))
            return super().forward(x)

    data = batch(labeled=2, unlabeled=3, size=32)
    losses = {}
    for separate in (False, True):
        method = build(MeanTeacher, tiny_config, f"separate_passes={str(separate).lower()}")
        sizes: list[int] = []
        method.model = Recorder([1.0, 0.0, 0.0, 0.0], sizes)
        method.teacher = Recorder([0.0, 1.0, 0.0, 0.0], sizes)
        losses[separate] = method.training_step(data, 0)["loss"]
        assert sizes == ([2, 3, 2, 3] if separate else [5, 5])
    # these stand-ins ignore the batch: the same loss either way
    assert torch.allclose(losses[False], losses[True])

    # a BatchNorm network in train mode: the labeled logits are those of the labeled batch alone
    data = batch(labeled=2, unlabeled=2, size=32)
    alone = build(MeanTeacher, tiny_config).model.train()(data["labeled"]["image"])["out"]
    for separate in (False, True):
        method = build(MeanTeacher, tiny_config, f"separate_passes={str(separate).lower()}")
        seen: list[torch.Tensor] = []
        method.model.register_forward_hook(lambda m, i, o, seen=seen: seen.append(o["out"]))
        method.train()
        method.training_step(data, 0)
        assert torch.allclose(seen[0][:2], alone, atol=1e-5) == separate


def test_methods_train_two_steps(tiny_config) -> None:
    for cls in (UniMatch, FixMatch, Cps, MeanTeacher):
        method = build(cls, tiny_config)
        optimizers = method.configure_optimizers()
        before = [p.detach().clone() for p in method.model.parameters()]
        for step in range(2):
            out = method.training_step(batch(size=32), step)
            assert torch.isfinite(out["loss"])
            for o in optimizers.values():
                o.zero_grad()
            out["loss"].backward()
            for o in optimizers.values():
                o.step()
            method.after_step(step)
        changed = any(
            not torch.equal(b, p) for b, p in zip(before, method.model.parameters(), strict=True)
        )
        assert changed, cls.__name__


def test_unlabeled_images_need_no_masks(tmp_path) -> None:
    """An unlabeled folder stream (images only) feeds these methods."""
    (tmp_path / "u").mkdir()
    for i in range(2):
        Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(tmp_path / "u" / f"{i}.png")
    ds = build_dataset(
        DatasetConfig(
            name="folder",
            root=str(tmp_path / "u"),
            labeled=False,
            crop_size=[16, 16],
            options={"label_space": "camvid"},
        ),
        train=True,
    )
    assert "label" not in ds[0, 0] and ds[1, 0]["valid"].all()


def test_synthetic_source_as_an_extra_labeled_stream(tiny_config, tiny_folder, capsys) -> None:
    """Semi-supervised domain adaptation: sim (source) + a few real labels + unlabeled real."""
    cfg = tiny_config(
        "method.name=fixmatch",
        "method.params.labeled.streams=[labeled,source]",
        "train.iters=2",
        *every_stream(tiny_folder),
    )
    trainer = Trainer(cfg)
    assert trainer.method.streams == ("labeled", "source", "unlabeled", "unlabeled_mix")
    trainer.fit()
    out = capsys.readouterr().out
    assert "data.streams.source: 6 labeled images" in out
    assert "data.streams.unlabeled_mix: 6 unlabeled images" in out
