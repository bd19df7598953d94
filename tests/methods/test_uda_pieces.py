"""Shared adaptation pieces against values computed by hand."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from segshift.methods.common.augment import StrongAugment, blur_kernel, step_seed, strong_augment
from segshift.methods.common.gan import adversarial_losses, build_discriminator, frozen, gan_loss
from segshift.methods.common.losses import (
    cross_entropy,
    entropy_loss,
    entropy_map,
    robust_entropy,
    self_information,
)
from segshift.methods.common.mixing import class_mix_masks, cutmix_box, cutmix_masks, mix
from segshift.methods.common.pseudo_label import ignore_margins, pseudo_label
from segshift.transforms.fourier import fda_swap, fda_window

# ---------------------------------------------------------------- entropy


def test_entropy_of_uniform_is_one_and_of_one_hot_zero():
    uniform = torch.full((2, 19, 4, 4), 1 / 19)
    assert entropy_map(uniform).mean().item() == pytest.approx(1.0, abs=1e-6)
    assert entropy_loss(torch.zeros(2, 19, 4, 4)).item() == pytest.approx(1.0, abs=1e-6)
    assert self_information(uniform)[0, :, 0, 0].tolist() == pytest.approx([1 / 19] * 19)
    one_hot = torch.zeros(1, 5, 2, 2)
    one_hot[:, 2] = 1
    assert entropy_map(one_hot).abs().max().item() < 1e-6


def test_robust_entropy_matches_the_reference_values():
    # docs/METHODS.md, "FDA": uniform over 19 classes -> (1 + 1e-8)^2; one-hot -> (1e-8)^2
    assert robust_entropy(torch.zeros(1, 19, 3, 3)).item() == pytest.approx(1.0, abs=1e-6)
    saturated = torch.full((1, 19, 2, 2), -1e4)
    saturated[:, 0] = 1e4
    assert robust_entropy(saturated).item() == pytest.approx(1e-16, abs=1e-20)
    half = torch.tensor([0.0, 0.0]).view(1, 2, 1, 1)  # entropy ln 2 / ln 2 = 1
    assert robust_entropy(half, eta=3.0).item() == pytest.approx((1 + 1e-8) ** 3)


def test_weighted_cross_entropy_over_all_pixels():
    logits = torch.zeros(1, 4, 2, 2)
    target = torch.tensor([[[0, 1], [2, 255]]])
    weight = torch.tensor([[[1.0, 0.5], [0.0, 1.0]]])
    expected = math.log(4) * (1 + 0.5 + 0) / 4  # the ignored pixel counts as 0
    assert cross_entropy(logits, target, weight=weight, average="all").item() == pytest.approx(
        expected
    )


# ---------------------------------------------------------------- GAN


def test_gan_losses_by_hand():
    logits = torch.tensor([0.0, 2.0])
    bce_to_zero = (math.log(2) + math.log(1 + math.exp(2))) / 2
    assert gan_loss(logits, 0.0).item() == pytest.approx(bce_to_zero)
    assert gan_loss(logits, 1.0, "ls").item() == pytest.approx((1 + 1) / 2)
    with pytest.raises(ValueError, match="GAN mode"):
        gan_loss(logits, 0.0, "wgan")


def test_discriminator_output_shape_and_frozen_generator_term():
    disc = build_discriminator(in_channels=5)
    assert disc(torch.rand(2, 5, 64, 96)).shape == (2, 1, 2, 3)
    pred_s = torch.rand(2, 5, 64, 64, requires_grad=True)
    pred_t = torch.rand(2, 5, 64, 64, requires_grad=True)
    g_loss, d_loss = adversarial_losses(disc, pred_s, pred_t)
    assert all(p.requires_grad for p in disc.parameters())  # restored after the frozen block
    g_grads = torch.autograd.grad(g_loss, [pred_t, *disc.parameters()], allow_unused=True)
    assert g_grads[0] is not None and all(g is None for g in g_grads[1:])  # D gets nothing
    d_grads = torch.autograd.grad(d_loss, [pred_s, pred_t], allow_unused=True)
    assert all(g is None for g in d_grads)  # the segmenter gets nothing from D's term
    with frozen(disc):
        assert not any(p.requires_grad for p in disc.parameters())


# ---------------------------------------------------------------- mixing


def test_class_mix_mask_is_one_exactly_on_the_chosen_classes():
    labels = torch.tensor([[[0, 1, 2, 3], [3, 3, 255, 1]]]).repeat(3, 1, 1)
    labels[2] = 7
    masks = class_mix_masks(labels, torch.Generator().manual_seed(0))
    for label, mask in zip(labels, masks):
        chosen = label[mask.bool()].unique().tolist()
        present = [c for c in label.unique().tolist() if c != 255]
        assert len(chosen) == math.ceil(len(present) / 2) and 255 not in chosen
        assert torch.equal(mask.bool(), torch.isin(label, torch.tensor(chosen)))
    with_ignore = class_mix_masks(
        torch.full((1, 2, 2), 255), torch.Generator().manual_seed(0), include_ignore=True
    )
    assert with_ignore.all()


def test_batch_class_mix_draws_per_image_from_the_classes_of_the_whole_batch():
    """DAFormer's get_class_masks: candidates = unique(all labels), one draw per image."""
    labels = torch.tensor([[[0, 0, 1, 1]], [[2, 2, 3, 255]]])  # (2, 1, 4): disjoint classes
    masks = class_mix_masks(labels, torch.Generator().manual_seed(3), classes_from="batch")
    generator, candidates = torch.Generator().manual_seed(3), torch.tensor([0, 1, 2, 3])
    for label, mask in zip(labels, masks):
        chosen = candidates[torch.randperm(4, generator=generator)[:2]]  # ceil(4/2) of the batch's
        assert torch.equal(mask.bool(), torch.isin(label, chosen))
    drawn = [
        class_mix_masks(labels, torch.Generator().manual_seed(s), classes_from="batch")
        for s in range(40)
    ]
    pasted = Counter(tuple(m.sum(dim=(1, 2)).int().tolist()) for m in drawn)
    # image 0 pastes 2 pixels per own class drawn, image 1 2 for class 2 and 1 for class 3; one
    # batch-wide draw of 2 classes would tie them to these four pairs
    shared_draw = {(4, 0), (2, 2), (2, 1), (0, 3)}
    assert set(pasted) <= {(a, b) for a in (0, 2, 4) for b in (0, 1, 2, 3)}
    assert set(pasted) - shared_draw
    own = class_mix_masks(labels, torch.Generator().manual_seed(3), classes_from="image")
    assert own.sum(dim=(1, 2)).tolist() == [2.0, 2.0]  # DACS: half of each image's own classes


def test_cutmix_boxes_cover_the_asked_area():
    masks = cutmix_masks(4, (32, 40), torch.Generator().manual_seed(0), area=0.5)
    for mask in masks:
        rows, cols = mask.nonzero(as_tuple=True)
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert box == mask.sum()  # one rectangle
        assert abs(mask.mean().item() - 0.5) < 0.06
    boxes = cutmix_box(200, (20, 20), torch.Generator().manual_seed(0), p=0.5)
    with_box = (boxes.flatten(1).sum(1) > 0).float().mean().item()
    assert 0.35 < with_box < 0.65 and boxes.flatten(1).mean(1).max() <= 0.41


def test_mix_images_labels_and_weights():
    mask = torch.tensor([[[1.0, 0.0]]])
    a, b = torch.ones(1, 3, 1, 2), torch.zeros(1, 3, 1, 2)
    assert mix(mask, a, b)[0, :, 0].tolist() == [[1, 0]] * 3
    labels = mix(mask, torch.tensor([[[4, 4]]]), torch.tensor([[[9, 9]]]))
    assert labels.tolist() == [[[4, 9]]] and labels.dtype == torch.int64
    assert mix(mask, torch.ones(1, 1, 2), torch.full((1, 1, 2), 0.3)).tolist() == [
        [[1.0, pytest.approx(0.3)]]
    ]


# ---------------------------------------------------------------- pseudo-labels


def test_pseudo_label_weight_is_the_share_of_confident_pixels():
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 1, 0, 0] = 10.0  # confident class 1
    logits[0, 0, 0, 1] = 10.0  # confident class 0
    pseudo = pseudo_label(logits, threshold=0.968)
    assert pseudo.label.tolist() == [[[1, 0], [0, 0]]]
    assert torch.allclose(pseudo.weight, torch.full((1, 2, 2), 0.5))
    hard = pseudo_label(logits, threshold=0.968, weighting="threshold").weight
    assert hard.tolist() == [[[1.0, 1.0], [0.0, 0.0]]]
    all_confident = pseudo_label(torch.tensor([[[[9.0]], [[-9.0]]]]), threshold=0.968)
    assert all_confident.weight.item() == 1.0
    assert pseudo_label(logits, size=(4, 4)).label.shape == (1, 4, 4)
    margins = ignore_margins(torch.ones(1, 10, 3), top=2, bottom=3)
    assert margins[0, :, 0].tolist() == [0, 0, 1, 1, 1, 1, 1, 0, 0, 0]


# ---------------------------------------------------------------- strong augmentation


def test_strong_augmentation_is_seeded_and_keeps_geometry():
    torch.manual_seed(0)
    images = torch.rand(4, 3, 24, 32)
    before = torch.get_rng_state()
    params = StrongAugment(grayscale_p=0.5)
    a = strong_augment(images, seed=step_seed(0, 5), params=params)
    assert torch.equal(torch.get_rng_state(), before)  # the global stream is untouched
    assert torch.equal(a, strong_augment(images, seed=step_seed(0, 5), params=params))
    assert not torch.equal(a, strong_augment(images, seed=step_seed(0, 6), params=params))
    assert a.shape == images.shape and a.min() >= 0 and a.max() <= 1
    # a flat image stays flat: nothing moves, so labels stay aligned
    flat = torch.full((2, 3, 16, 16), 0.4)
    out = strong_augment(flat, seed=1, params=StrongAugment(jitter_p=1.0, blur_p=1.0))
    assert torch.allclose(out, out[..., :1, :1].expand_as(out), atol=1e-5)
    assert blur_kernel(512) == 51 and blur_kernel(128) == 13


# ---------------------------------------------------------------- FDA


def test_fda_keeps_the_phase_and_is_identity_without_a_window():
    torch.manual_seed(0)
    src, tgt = torch.rand(2, 3, 20, 30), torch.rand(2, 3, 20, 30)
    assert fda_window(20, 30, 0.01) == 0 and fda_window(512, 1024, 0.09) == 46
    torch.testing.assert_close(fda_swap(src, tgt, beta=0.01), src, atol=1e-5, rtol=0)
    torch.testing.assert_close(fda_swap(src, src, beta=0.2), src, atol=1e-5, rtol=0)
    out = fda_swap(src, tgt, beta=0.1)  # b = 2: frequencies -2..1 swapped
    spec_out, spec_src, spec_tgt = (torch.fft.fft2(x) for x in (out, src, tgt))
    low = (slice(0, 2), slice(0, 2))
    torch.testing.assert_close(spec_out[..., low[0], low[1]].abs(), spec_tgt[..., :2, :2].abs())
    high = (slice(5, 15), slice(5, 25))
    torch.testing.assert_close(spec_out[..., high[0], high[1]], spec_src[..., high[0], high[1]])
    # the phase of the swapped block is the source's
    torch.testing.assert_close(
        spec_out[..., 1, 1].angle(), spec_src[..., 1, 1].angle(), atol=1e-4, rtol=0
    )
