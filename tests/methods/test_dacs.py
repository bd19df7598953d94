"""DACS: the mixed sample, its weights and loss, and the EMA teacher, against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segshift.errors import ConfigError
from segshift.methods.common.augment import step_generator
from segshift.methods.common.ema import ema_alpha
from segshift.methods.common.losses import resize_logits
from segshift.methods.common.mixing import (
    class_mix_masks,
    cutmix_masks,
    mix_masks,
    mixed_batch,
)
from segshift.methods.common.pseudo_label import pseudo_label
from segshift.methods.dacs import MASK_SALT, Dacs

NUM_CLASSES = 5
NO_AUGMENT = ("augment.jitter_p=0", "augment.blur_p=0")


def build(tiny_config, *params: str) -> Dacs:
    """The fast model without dropout, so that a forward can be repeated exactly."""
    torch.manual_seed(0)
    overrides = (f"method.params.{p}" for p in params)
    cfg = tiny_config("method.name=dacs", "model.params.decoder_dropout=0", *overrides)
    return Dacs(cfg, NUM_CLASSES)


def batches(size: tuple[int, int] = (16, 16)) -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    label = torch.randint(0, NUM_CLASSES, (2, *size), generator=g)
    label[:, ::2] = 255  # every other row ignored: any pasted box holds ignored pixels
    return {
        "source": {"image": torch.rand(2, 3, *size, generator=g), "label": label},
        "target": {"image": torch.rand(2, 3, *size, generator=g)},
    }


class FixedTeacher(nn.Module):
    """Predicts class 1 everywhere: confidently on the top ``confident`` rows, barely elsewhere."""

    def __init__(self, confident: int) -> None:
        super().__init__()
        self.confident = confident

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        b, _, h, w = images.shape
        logits = torch.zeros(b, NUM_CLASSES, h, w)
        logits[:, 1] = 0.1
        logits[:, 1, : self.confident] = 20.0
        return {"out": logits}


# ---------------------------------------------------------------- shared pieces


def test_mixed_batch_by_hand():
    logits = torch.zeros(1, 3, 2, 3)
    logits[0, 2, 0, 0] = 10.0  # confident class 2 (p = e^10 / (e^10 + 2) > 0.968)
    logits[0, 0, 1, 2] = 10.0  # confident class 0
    logits[0, 1, 0, 1] = logits[0, 1, 0, 2] = logits[0, 1, 1, 0] = logits[0, 1, 1, 1] = 1.0
    pseudo = pseudo_label(logits, threshold=0.968)
    assert pseudo.label.tolist() == [[[2, 1, 1], [1, 1, 0]]]
    omega = 2 / 6  # two of the six pixels are confident (the others: e / (e + 2) = 0.58)
    mask = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]])
    source = {"image": torch.ones(1, 3, 2, 3), "label": torch.tensor([[[4, 4, 4], [255, 3, 3]]])}
    target = {"image": torch.zeros(1, 3, 2, 3)}
    image, label, weight = mixed_batch(source, target, pseudo, mask)
    assert torch.equal(image, mask.unsqueeze(1).expand(1, 3, 2, 3))
    assert label.tolist() == [[[4, 1, 1], [1, 3, 3]]]  # source where M = 1, pseudo elsewhere
    assert label.dtype == torch.int64
    assert weight[0].tolist() == [
        [1.0, pytest.approx(omega), pytest.approx(omega)],
        [pytest.approx(omega), 1.0, 1.0],
    ]


def test_mixed_batch_refuses_batches_of_different_sizes():
    pseudo = pseudo_label(torch.zeros(1, 3, 4, 4))
    source = {"image": torch.zeros(1, 3, 4, 4), "label": torch.zeros(1, 4, 4, dtype=torch.long)}
    with pytest.raises(ConfigError, match="crop_size"):
        mixed_batch(source, {"image": torch.zeros(1, 3, 4, 6)}, pseudo, torch.ones(1, 4, 4))


def test_mix_masks_by_name():
    labels = batches()["source"]["label"]
    assert torch.equal(
        mix_masks("class", labels, torch.Generator().manual_seed(3)),
        class_mix_masks(labels, torch.Generator().manual_seed(3)),
    )
    assert torch.equal(
        mix_masks("cut", labels, torch.Generator().manual_seed(3)),
        cutmix_masks(2, (16, 16), torch.Generator().manual_seed(3)),
    )
    with pytest.raises(ValueError, match="mix mask"):
        mix_masks("box", labels, torch.Generator())


# ---------------------------------------------------------------- the method


@pytest.mark.parametrize("confident_rows", [16, 4])
def test_mixed_loss_is_the_weighted_mean_over_all_pixels(tiny_config, confident_rows):
    method = build(tiny_config, "mix_mask=cut", *NO_AUGMENT)
    method.teacher = FixedTeacher(confident_rows)
    batch, step = batches(), 3
    out = method.training_step(batch, step)
    omega = confident_rows / 16
    assert out["pseudo_weight"].item() == pytest.approx(omega)

    source, target = batch["source"], batch["target"]
    mask = cutmix_masks(2, (16, 16), step_generator(method.cfg.seed, step, MASK_SALT)).bool()
    image = torch.where(mask.unsqueeze(1), source["image"], target["image"])
    label = torch.where(mask, source["label"], torch.ones_like(source["label"]))
    weight = torch.where(mask, 1.0, omega)
    with torch.no_grad():
        logits = resize_logits(method.model(image)["out"], (16, 16))
        per_pixel = F.cross_entropy(logits, label, ignore_index=255, reduction="none")
        source_logits = resize_logits(method.model(source["image"])["out"], (16, 16))
        source_ce = F.cross_entropy(source_logits, source["label"], ignore_index=255)
    assert (label == 255).any()  # pasted ignored pixels count as 0 over B*H*W
    expected = (per_pixel * weight).mean()
    assert out["mixed"].item() == pytest.approx(expected.item(), rel=1e-5)
    if confident_rows == 16:  # docs/METHODS.md, "DACS": omega = 1 -> mean CE over all pixels
        assert expected.item() == pytest.approx(per_pixel.mean().item())
        valid_mean = per_pixel[label != 255].mean().item()
        assert not math.isclose(expected.item(), valid_mean, rel_tol=1e-3)
    assert out["source"].item() == pytest.approx(source_ce.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(out["source"].item() + out["mixed"].item())


def test_teacher_moves_with_its_buffers_and_gets_no_gradient(tiny_config):
    method = build(tiny_config)
    assert method.model.training and not method.teacher.training  # eval-mode teacher
    before = {k: v.clone() for k, v in method.teacher.state_dict().items()}
    optimizer = method.configure_optimizers()["model"]
    method.training_step(batches(), 0)["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in method.teacher.parameters())
    assert all(p.grad is not None for p in method.model.parameters() if p.requires_grad)
    optimizer.step()
    step = 5
    method.after_step(step)
    alpha = ema_alpha(0.99, step)
    assert alpha == pytest.approx(5 / 6)
    student = method.model.state_dict()
    for key, value in method.teacher.state_dict().items():
        if value.is_floating_point():
            expected = alpha * before[key] + (1 - alpha) * student[key]
            torch.testing.assert_close(value, expected, msg=key)
    means = [k for k in before if k.endswith("running_mean")]
    assert means and all(not torch.equal(before[k], method.teacher.state_dict()[k]) for k in means)


def test_official_switches_keep_buffers_and_train_mode(tiny_config):
    method = build(tiny_config, "ema_parameters_only=true", "teacher_train_mode=true")
    assert method.teacher.training
    buffers = {k: v.clone() for k, v in method.teacher.named_buffers()}
    method.training_step(batches(), 0)  # a train-mode teacher updates its own statistics
    moved = {k: v.clone() for k, v in method.teacher.named_buffers()}
    assert any(not torch.equal(buffers[k], moved[k]) for k in buffers)
    method.after_step(5)
    assert all(torch.equal(moved[k], v) for k, v in method.teacher.named_buffers())


def test_the_student_is_evaluated_and_params_are_checked(tiny_config):
    method = build(tiny_config)
    assert method.eval_model() is method.model
    assert method.streams == ("source", "target")
    with pytest.raises(ConfigError, match="mix_mask"):
        build(tiny_config, "mix_mask=box")
    with pytest.raises(ConfigError, match="threshhold"):
        build(tiny_config, "threshhold=0.9")
