"""ReCo: hard queries, negative sampling, the contrastive and unsupervised losses, ClassMix and
the training step, against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from segshift.errors import ConfigError
from segshift.methods.common.augment import step_generator
from segshift.methods.common.ema import ema_alpha
from segshift.methods.common.mixing import class_mix_masks
from segshift.methods.reco import (
    MIX_SALT,
    Reco,
    hard_query_mask,
    image_weights,
    negative_class_probs,
    negative_indices,
    reco_loss,
    rescale_crop,
    unsupervised_loss,
)

NUM_CLASSES = 5
NO_AUGMENT = ("augment.jitter_p=0", "augment.blur_p=0", "labeled_augment=false", "hflip=false")


def build(tiny_config, *params: str) -> Reco:
    """The fast model without dropout, so that a forward can be repeated exactly."""
    torch.manual_seed(0)
    overrides = (f"method.params.{p}" for p in params)
    cfg = tiny_config("method.name=reco", "model.params.decoder_dropout=0", *overrides)
    return Reco(cfg, NUM_CLASSES)


def batches(size: tuple[int, int] = (32, 32)) -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    label = torch.randint(0, NUM_CLASSES, (2, *size), generator=g)
    label[:, :4] = 255
    return {
        "labeled": {"image": torch.rand(2, 3, *size, generator=g), "label": label},
        "unlabeled": {"image": torch.rand(2, 3, *size, generator=g)},
    }


class FixedTeacher(nn.Module):
    """Predicts class 0 on the left half and 2 on the right, confidently on the top rows only."""

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        b, _, h, w = images.shape
        logits = torch.zeros(b, NUM_CLASSES, h, w)
        logits[:, 0, :, : w // 2] = 1.0
        logits[:, 2, :, w // 2 :] = 1.0
        logits[:, :, : h // 4] *= 20.0
        return {"out": logits}


# ---------------------------------------------------------------- the pieces


def test_hard_queries_are_the_valid_pixels_of_the_class_below_the_strong_threshold():
    label = torch.tensor([1, 1, 1, 1, 0, -1, 1])
    p1 = torch.tensor([0.50, 0.98, 0.96, 0.97, 0.10, 0.20, 0.9699])
    prob = torch.stack([1 - p1, p1, torch.zeros(7)], dim=1)
    # pixel 3 sits at the threshold (not below), 4 is another class, 5 is excluded (-1)
    assert hard_query_mask(label, prob, 1, 0.97).tolist() == [1, 0, 1, 0, 0, 0, 1]
    assert hard_query_mask(label, prob, 0, 0.97).tolist() == [0, 0, 0, 0, 1, 0, 0]


def test_only_hard_queries_carry_gradient():
    """Keys are built without gradient (official), so only sampled anchors get one."""
    feats = torch.randn(8, 4, requires_grad=True)
    label = torch.tensor([0, 0, 0, 1, 1, 1, -1, 2])
    p_true = torch.tensor([0.99, 0.5, 0.6, 0.98, 0.2, 0.99, 0.1, 0.99])
    prob = torch.full((8, 3), 0.0)
    prob[torch.arange(8), label.clamp(min=0)] = p_true
    loss = reco_loss(feats, label, prob, torch.Generator().manual_seed(0), num_queries=64)
    loss.backward()
    moved = (feats.grad.abs().sum(1) > 0).tolist()
    assert moved == [False, True, True, False, True, False, False, False]


def test_negative_class_distribution_is_the_softmax_of_prototype_cosines():
    protos = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    # class 0: cos with class 1 = 0, with class 2 = 1/sqrt(2); temperature 0.5
    e = math.exp(math.sqrt(2))  # exp((1/sqrt 2) / 0.5)
    expected_0 = [1 / (1 + e), e / (1 + e)]  # 0.1956, 0.8044
    assert negative_class_probs(protos, 0, 0.5).tolist() == pytest.approx(expected_0, abs=1e-6)
    # class 1: cos with class 0 = 0, with class 2 = 1/sqrt(2) as well
    assert negative_class_probs(protos, 1, 0.5).tolist() == pytest.approx(expected_0, abs=1e-6)
    # class 2: cos 1/sqrt(2) with both -> uniform
    assert negative_class_probs(protos, 2, 0.5).tolist() == pytest.approx([0.5, 0.5])

    # the sampled negatives of class 0 follow it; pixels of a class are drawn uniformly
    counts = torch.tensor([2, 3, 4])  # pixels 0-1 class 0, 2-4 class 1, 5-8 class 2
    probs = negative_class_probs(protos, 0, 0.5)
    index = negative_indices(probs, 0, counts, (256, 512), torch.Generator().manual_seed(0))
    assert index.shape == (256, 512)
    share = torch.bincount(index.flatten(), minlength=9).double() / index.numel()
    assert share[:2].sum() == 0  # never the query's own class
    assert share[2:5].sum().item() == pytest.approx(expected_0[0], abs=0.005)
    assert share[5:].sum().item() == pytest.approx(expected_0[1], abs=0.005)
    assert share[2:5].tolist() == pytest.approx([expected_0[0] / 3] * 3, abs=0.005)
    assert share[5:].tolist() == pytest.approx([expected_0[1] / 4] * 4, abs=0.005)


def test_reco_loss_by_hand():
    """Two classes of one pixel each: anchor = prototype, every negative the other pixel."""
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    label = torch.tensor([0, 1])
    prob = torch.tensor([[0.6, 0.4], [0.4, 0.6]])  # both hard
    k = 4
    per_class = math.log(1 + k * math.exp(-2.0))  # -log(e^2 / (e^2 + k e^0)), tau 0.5
    g = torch.Generator().manual_seed(0)
    loss = reco_loss(feats, label, prob, g, num_queries=3, num_negatives=k)
    assert loss.item() == pytest.approx(per_class, rel=1e-6)
    # class 1 all easy: no anchors, but it still counts in the mean over the classes present
    easy = torch.tensor([[0.6, 0.4], [0.01, 0.99]])
    loss = reco_loss(feats, label, easy, g, num_queries=3, num_negatives=k)
    assert loss.item() == pytest.approx(per_class / 2, rel=1e-6)


@pytest.mark.parametrize("labels", [[2, 2, -1, 2], [-1, -1, -1, -1]])
def test_reco_loss_is_zero_with_one_class_or_none(labels):
    feats = torch.randn(4, 3, requires_grad=True)
    prob = torch.full((4, 3), 1 / 3)
    loss = reco_loss(feats, torch.tensor(labels), prob, torch.Generator())
    assert loss.item() == 0.0
    loss.backward()  # still in the graph (DDP sees the head used every step)
    assert torch.equal(feats.grad, torch.zeros(4, 3))


def test_per_image_unsupervised_weight_and_loss():
    label = torch.tensor([[[0, 1], [1, 0]], [[1, 0], [0, 255]]])
    conf = torch.tensor([[[0.98, 0.5], [0.99, 0.975]], [[0.99, 0.1], [0.2, 0.0]]])
    weights = image_weights(label, conf, 0.97)
    assert weights.tolist() == pytest.approx([3 / 4, 1 / 3])  # 3 of 4 valid; 1 of 3 valid
    logits = torch.zeros(2, 2, 2, 2, requires_grad=True)  # CE = ln 2 on every valid pixel
    loss = unsupervised_loss(logits, label, conf, 0.97)
    # mean over the 7 pixels with CE > 0 (the ignored one has CE 0) of w_b * ln 2
    assert loss.item() == pytest.approx((4 * 3 / 4 + 3 * 1 / 3) / 7 * math.log(2))
    loss.backward()
    assert logits.grad[1, :, 1, 1].abs().sum() == 0


def test_rescale_crop_pads_with_ignore_and_zero_confidence():
    image = torch.rand(3, 8, 8)
    label = torch.arange(64).view(8, 8) % 3
    conf = torch.full((8, 8), 0.9)
    same = rescale_crop(image, label, conf, 1.0, torch.Generator())
    assert torch.allclose(same[0], image) and torch.equal(same[1], label)
    small, small_label, small_conf = rescale_crop(image, label, conf, 0.5, torch.Generator())
    assert small.shape == (3, 8, 8) and small_label.shape == (8, 8)
    assert (small_label[4:] == 255).all() and (small_label[:, 4:] == 255).all()
    assert torch.equal(small_label[:4, :4], label[::2, ::2])  # nearest
    assert (small_conf[4:] == 0).all() and (small_conf[:4, :4] == 0.9).all()


# ---------------------------------------------------------------- the method


@pytest.mark.parametrize(("half", "kept"), [("floor", [1, 0]), ("ceil", [2, 1])])
def test_classmix_pastes_half_of_the_classes_onto_the_next_image(tiny_config, half, kept):
    method = build(tiny_config, f"classmix_half={half}")
    label = torch.tensor([[[0, 1, 2, 2]], [[3, 3, 3, 3]]])  # 3 classes, 1 class
    mask = method.mix_mask(label, torch.Generator().manual_seed(4))
    for i in range(2):
        own = torch.unique(label[i][mask[i] == 1])
        assert len(own) == kept[i]
        assert torch.equal(mask[i], torch.isin(label[i], own).float())  # whole classes
    if half == "floor":  # the complement of a ceil(n/2) choice
        ceil = class_mix_masks(label, torch.Generator().manual_seed(4))
        assert torch.equal(mask, 1 - ceil)


def test_unlabeled_views_mix_image_i_with_image_i_plus_1(tiny_config):
    method = build(tiny_config, *NO_AUGMENT)
    method.teacher = FixedTeacher()
    batch, step = batches(), 3
    image, label, conf = method.unlabeled_views(batch["unlabeled"], step)
    pseudo = torch.zeros(2, 32, 32, dtype=torch.long)
    pseudo[..., 16:] = 2
    mask = method.mix_mask(pseudo, step_generator(method.cfg.seed, step, MIX_SALT)).bool()
    # two classes per image: floor(2/2) = one class kept from image i, the rest from i+1
    assert mask.float().mean().item() == pytest.approx(0.5)
    source = batch["unlabeled"]["image"]
    expected = torch.where(mask[:, None], source, source.roll(-1, 0))
    assert torch.equal(image, expected)
    assert torch.equal(label, pseudo)  # both images have the same pseudo-labels
    p_low = math.e / (math.e + NUM_CLASSES - 1)
    assert conf[:, 8:].flatten().tolist() == pytest.approx([p_low] * 2 * 24 * 32)
    assert (conf[:, :8] > 0.97).all()


def test_training_step_sums_the_three_losses_and_updates(tiny_config):
    method = build(tiny_config)
    assert method.streams == ("labeled", "unlabeled")
    assert method.model.training and method.head.training and not method.teacher.training
    optimizer = method.configure_optimizers()["model"]
    head_ids = {id(p) for p in method.head.parameters()}
    assert head_ids <= {id(p) for g in optimizer.param_groups for p in g["params"]}
    model0 = [p.clone() for p in method.model.parameters()]
    head0 = [p.clone() for p in method.head.parameters()]
    teacher0 = {k: v.clone() for k, v in method.teacher.state_dict().items()}
    for step in range(2):
        out = method.training_step(batches(), step)
        assert all(torch.isfinite(v) for v in out.values())
        total = out["sup"] + out["unsup"] + out["reco"]
        assert out["loss"].item() == pytest.approx(total.item(), rel=1e-6)
        assert out["reco"].item() > 0
        optimizer.zero_grad()
        out["loss"].backward()
        assert all(p.grad is None for p in method.teacher.parameters())
        optimizer.step()
        method.after_step(step)
    assert all(not torch.equal(a, b) for a, b in zip(model0, method.model.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(head0, method.head.parameters()))
    # after step 1 (alpha_1 = 0.5) the teacher is halfway between its step-0 copy and the student
    assert ema_alpha(0.99, 1) == 0.5
    moved = method.teacher.state_dict()
    assert any(not torch.equal(teacher0[k], moved[k]) for k in teacher0)


def test_the_teacher_is_evaluated_and_official_switches(tiny_config):
    method = build(tiny_config, "teacher_train_mode=true", "ema_parameters_only=true")
    assert method.eval_model() is method.teacher
    assert method.teacher.training
    buffers = {k: v.clone() for k, v in method.teacher.named_buffers()}
    method.training_step(batches(), 0)  # the train-mode teacher updates its own statistics
    method.after_step(1)
    after = dict(method.teacher.named_buffers())
    assert any(not torch.equal(buffers[k], after[k]) for k in buffers)
    with pytest.raises(ConfigError, match="classmix_half"):
        build(tiny_config, "classmix_half=round")
    with pytest.raises(ConfigError, match="mix_mask"):
        build(tiny_config, "mix_mask=cutout")


def test_crop_padding_of_the_unlabeled_stream_has_no_target(tiny_config):
    method = build(tiny_config, *NO_AUGMENT, "include_ignore=true")
    method.teacher = FixedTeacher()
    unlabeled = batches()["unlabeled"]
    unlabeled["valid"] = torch.ones(2, 32, 32, dtype=torch.bool)
    unlabeled["valid"][:, 24:] = False
    _, label, conf = method.unlabeled_views(unlabeled, 0)
    assert (label[:, 24:] == 255).all() and (conf[:, 24:] == 0).all()
    assert (label[:, :24] != 255).all()
