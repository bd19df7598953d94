"""CCT: consistency losses, ramp-up, abCE, the feature perturbations and the training step, against
hand computations (docs/METHODS.md, "CCT", the checks)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from segshift.errors import ConfigError
from segshift.methods.cct import (
    AuxDecoder,
    Cct,
    abce_loss,
    abce_threshold,
    consistency_loss,
    consistency_weight,
    cutout_mask,
    feature_dropout,
    feature_noise,
    guided_masking,
    vat_noise,
)
from segshift.methods.common.semi import supervised_loss

NUM_CLASSES = 5


def build(tiny_config, *params: str) -> Cct:
    """The fast model (feat stride 4) without dropout, so that a forward can be repeated exactly."""
    torch.manual_seed(0)
    overrides = (f"method.params.{p}" for p in ("upscale=4", *params))
    cfg = tiny_config("method.name=cct", "model.params.decoder_dropout=0", *overrides)
    return Cct(cfg, NUM_CLASSES)


def batches() -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    label = torch.randint(0, NUM_CLASSES, (2, 32, 32), generator=g)
    label[:, :3] = 255
    return {
        "labeled": {"image": torch.rand(2, 3, 32, 32, generator=g), "label": label},
        "unlabeled": {"image": torch.rand(2, 3, 32, 32, generator=g)},
    }


# ---------------------------------------------------------------- (a) consistency losses


def test_consistency_of_identical_predictions_is_zero():
    logits = torch.randn(2, 21, 3, 4, generator=torch.Generator().manual_seed(0))
    target = torch.softmax(logits, dim=1)
    assert consistency_loss("mse", logits, target).item() == pytest.approx(0.0, abs=1e-12)
    assert consistency_loss("kl", logits, target).item() == pytest.approx(0.0, abs=1e-7)
    assert consistency_loss("js", logits, target).item() == pytest.approx(0.0, abs=1e-5)


def test_mse_of_disjoint_saturated_predictions_is_two_over_c():
    classes = 21
    aux = torch.full((1, classes, 2, 2), -100.0)
    aux[:, 3] = 100.0  # softmax: one-hot on class 3
    target = torch.zeros(1, classes, 2, 2)
    target[:, 7] = 1.0  # one-hot on class 7
    # per pixel (1 - 0)^2 + (0 - 1)^2 = 2 over C elements
    loss = consistency_loss("mse", aux, target).item()
    assert loss == pytest.approx(2 / 21) and loss == pytest.approx(0.0952, abs=1e-4)


# ---------------------------------------------------------------- (b) ramp-up, (c) abCE


def test_consistency_weight_ramp():
    total = 72_960  # 80 epochs x 912: T_r = 7,296 (8 epochs)
    assert consistency_weight(0, total) == pytest.approx(30 * math.exp(-5))  # 0.2021
    assert consistency_weight(0, total) == pytest.approx(0.2021, abs=1e-4)
    assert consistency_weight(3_648, total) == pytest.approx(30 * math.exp(-1.25))  # 8.595
    assert consistency_weight(3_648, total) == pytest.approx(8.595, abs=1e-3)
    assert consistency_weight(7_296, total) == 30.0
    assert consistency_weight(50_000, total) == 30.0
    assert consistency_weight(0, total, ramp_up=0.0) == 30.0


def test_abce_threshold_ramp():
    total = 72_960  # T = 0.4 x total = 29,184
    assert abce_threshold(0, total, 21) == pytest.approx(1 / 21)
    end = 1 / 21 + (1 - math.exp(-5)) * (0.9 - 1 / 21)
    assert abce_threshold(29_184, total, 21) == pytest.approx(end)
    assert abce_threshold(29_184, total, 21) == pytest.approx(0.8943, abs=1e-4)
    assert abce_threshold(60_000, total, 21) == pytest.approx(end)


def test_abce_loss_by_hand():
    # one image, 4 pixels; true-class probabilities e^a / (e^a + 1) for two classes
    logits = torch.zeros(1, 2, 1, 4)
    logits[0, 0, 0] = torch.tensor([2.0, 0.0, -1.0, 3.0])
    label = torch.tensor([[[0, 0, 0, 255]]])
    ce = F.cross_entropy(logits, label, ignore_index=255, reduction="none")[0, 0]
    # true probs 0.881, 0.5, 0.269; sorted[min(B=1, 2)] = 0.5, so the floor is 0.5
    assert abce_loss(logits, label, 0.1).item() == pytest.approx(ce[2].item())  # p < 0.5
    kept = ce[1:3].mean().item()  # threshold 0.7 > floor: p = 0.5 and 0.269 kept
    assert abce_loss(logits, label, 0.7).item() == pytest.approx(kept)
    assert abce_loss(logits, torch.full_like(label, 255), 0.7).item() == 0.0


# ---------------------------------------------------------------- (d) perturbations


def test_all_background_prediction_guided_perturbations():
    z = torch.randn(2, 4, 5, 6)
    background = torch.zeros(2, 20, 24, dtype=torch.bool)  # M_fg = 0 everywhere
    assert torch.equal(guided_masking(z, background, "background"), z)  # object masking
    assert torch.equal(guided_masking(z, background, "foreground"), torch.zeros_like(z))
    assert torch.equal(cutout_mask(background, 0.4, torch.Generator()), torch.ones(2, 20, 24))


def test_guided_perturbations_through_the_method(tiny_config):
    method = build(tiny_config)
    z = torch.randn(2, 32, 8, 8)
    fg = torch.zeros(2, 32, 32, dtype=torch.bool)
    decoder = method.aux_decoders[0]
    assert torch.equal(method.perturb("object_masking", z, decoder, fg, 3), z)
    assert torch.equal(method.perturb("cutout", z, decoder, fg, 3), z)
    assert not method.perturb("context_masking", z, decoder, fg, 3).any()
    fg[:, :16] = True  # top half foreground: context keeps it, object masking the bottom
    context = method.perturb("context_masking", z, decoder, fg, 3)
    assert torch.equal(context[..., :4, :], z[..., :4, :]) and not context[..., 4:, :].any()
    objects = method.perturb("object_masking", z, decoder, fg, 3)
    assert torch.equal(objects, z - context)


def test_cutout_erases_a_box_inside_large_contours_only():
    fg = torch.zeros(1, 32, 40, dtype=torch.bool)
    fg[0, 4:28, 4:28] = True
    fg[0, 4:28:2, 4:6] = False  # notches on both sides: > 50 contour points
    fg[0, 4:28:2, 26:28] = False
    fg[0, 10:20, 32:38] = True  # a rectangle: 4 points (CHAIN_APPROX_SIMPLE), never cut
    for seed in range(5):
        mask = cutout_mask(fg, 0.4, torch.Generator().manual_seed(seed))[0]
        zeros = (mask == 0).nonzero()
        # contour bbox x, y in [4, 27]: 23 wide, box int(0.4 * 23) = 9 per side
        assert len(zeros) == 81
        assert zeros.min().item() >= 4 and zeros.max().item() <= 27
        assert zeros[:, 0].max() - zeros[:, 0].min() == 8


def test_feature_noise_keeps_shape_and_is_shared_over_the_batch(tiny_config):
    z = torch.ones(1, 3, 2, 2)
    noise = torch.tensor([0.1, -0.2, 0.3]).view(3, 1, 1).expand(3, 2, 2)
    assert torch.allclose(feature_noise(z, noise)[0, :, 0, 0], torch.tensor([1.1, 0.8, 1.3]))
    method = build(tiny_config)
    same = torch.rand(1, 32, 8, 8).expand(3, -1, -1, -1)
    out = method.perturb("feature_noise", same, None, None, 7)
    assert out.shape == same.shape
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])
    ratio = out / same
    assert ratio.min() >= 0.7 - 1e-6 and ratio.max() <= 1.3 + 1e-6 and ratio.std() > 0.05


def test_feature_dropout_by_hand():
    z = torch.zeros(1, 2, 2, 2)
    z[0, 0] = torch.tensor([[1.0, 3.0], [5.0, 7.0]])
    z[0, 1] = torch.tensor([[1.0, 3.0], [5.0, 9.0]])  # channel means [[1, 3], [5, 8]], max 8
    out = feature_dropout(z, 0.7)  # keep means < 5.6
    assert torch.equal(out[0, :, 0], z[0, :, 0]) and out[0, 0, 1].tolist() == [5.0, 0.0]
    out = feature_dropout(z, 0.5)  # keep means < 4
    assert out[0, 1].tolist() == [[1.0, 3.0], [0.0, 0.0]]


def test_channel_dropout_drops_whole_channels(tiny_config):
    method = build(tiny_config)
    z = torch.rand(2, 32, 8, 8) + 0.1
    out = method.perturb("drop", z, None, None, 5)
    ratio = (out / z).flatten(2)
    assert set(ratio.unique().tolist()) == {0.0, 2.0}  # p 0.5: survivors x 2
    assert (ratio.amin(dim=2) == ratio.amax(dim=2)).all()  # one coin per channel
    assert torch.equal(method.perturb("drop", z, None, None, 5), out)  # seeded


def test_vat_noise_has_norm_eps_and_leaves_parameters_alone():
    torch.manual_seed(0)
    decoder = AuxDecoder(8, 3, upscale=2)
    z = torch.randn(2, 8, 4, 4, requires_grad=True)
    d = torch.rand(2, 8, 4, 4) - 0.5
    r = vat_noise(z, decoder, d, xi=1.0, eps=2.0, iterations=1)
    assert r.shape == z.shape and not r.requires_grad
    assert r.flatten(1).norm(dim=1).tolist() == pytest.approx([2.0, 2.0], rel=1e-5)
    assert all(p.grad is None for p in decoder.parameters()) and z.grad is None
    # the adversarial direction raises the KL more than the random start does
    with torch.no_grad():
        target = torch.softmax(decoder(z), dim=1)

        def kl(step):
            logp = torch.log_softmax(decoder(z + step), dim=1)
            return F.kl_div(logp, target, reduction="batchmean").item()

        unit = d / d.flatten(1).norm(dim=1).view(2, 1, 1, 1)
        assert kl(0.01 * r) > kl(0.02 * unit)


def test_aux_decoder_upsamples_with_non_negative_icnr_outputs():
    torch.manual_seed(0)
    decoder = AuxDecoder(6, 4, upscale=8)
    out = decoder(torch.randn(1, 6, 3, 5))
    assert out.shape == (1, 4, 24, 40) and (out >= 0).all()
    weight = decoder[1].weight.view(4, 4, 4)  # ICNR: the 4 sub-pixels of a class share weights
    assert torch.equal(weight, weight[:, :1].expand(4, 4, 4)) and weight.std() > 0


# ---------------------------------------------------------------- the method


def test_counts_build_the_paper_decoders_and_bad_values_fail(tiny_config):
    method = build(tiny_config)
    assert len(method.aux_decoders) == 30
    assert method.kinds[:3] == ["vat", "vat", "drop"] and method.kinds[-1] == "feature_noise"
    optimizer = method.configure_optimizers()["model"]
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert all(id(p) in in_optimizer for p in method.aux_decoders.parameters())
    with pytest.raises(ConfigError, match="background_class"):
        build(tiny_config, "background_class=5")
    build(tiny_config, "background_class=5", "cutout=0", "context_masking=0", "object_masking=0")
    zero = ("vat", "drop", "cutout", "context_masking", "object_masking", "feature_drop")
    with pytest.raises(ConfigError, match="not all 0"):
        build(tiny_config, *(f"{k}=0" for k in zero), "feature_noise=0")
    with pytest.raises(ConfigError, match="upscale"):
        build(tiny_config, "upscale=3")


def test_loss_is_sup_plus_ramped_mean_consistency(tiny_config):
    zero = ("drop=0", "vat=0", "cutout=0", "feature_drop=0", "feature_noise=0")
    method = build(tiny_config, "ramp_up=0.5", *zero)  # only the 4 masking decoders: no draws
    batch, step = batches(), 1
    out = method.training_step(batch, step)
    weight = 30 * math.exp(-5 * 0.5**2)  # train.iters = 4: T_r = 2, halfway at step 1
    assert out["unsup_weight"].item() == pytest.approx(weight)
    with torch.no_grad():
        sup = supervised_loss(
            method.model(batch["labeled"]["image"])["out"],
            batch["labeled"]["label"],
            method.params.labeled,
        )
        model_out = method.model(batch["unlabeled"]["image"], return_feat=True)
        target = torch.softmax(model_out["out"], dim=1)
        fg = model_out["out"].argmax(1) != 0
        losses = []
        for kind, decoder in zip(method.kinds, method.aux_decoders, strict=True):
            keep = "foreground" if kind == "context_masking" else "background"
            aux = decoder(guided_masking(model_out["feat"], fg, keep))
            losses.append(F.mse_loss(torch.softmax(aux, dim=1), target))
    unsup = sum(losses) / 4
    assert out["sup"].item() == pytest.approx(sup.item(), rel=1e-5)
    assert out["unsup"].item() == pytest.approx(unsup.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(sup.item() + weight * unsup.item(), rel=1e-5)


def test_main_decoder_gets_no_gradient_from_unlabeled_data(tiny_config):
    method = build(tiny_config)
    batch = batches()
    method.training_step(batch, 2)["loss"].backward()
    head = list(method.model.net.segmentation_head.parameters())
    with_unlabeled = [p.grad.clone() for p in head]
    encoder_grad = next(method.model.encoder.parameters()).grad.clone()
    method.zero_grad()
    labeled = batch["labeled"]
    logits = method.model(labeled["image"])["out"]
    supervised_loss(logits, labeled["label"], method.params.labeled).backward()
    for grad, p in zip(with_unlabeled, head, strict=True):
        assert torch.allclose(grad, p.grad, atol=1e-7)
    assert not torch.allclose(encoder_grad, next(method.model.encoder.parameters()).grad)


def test_training_step_twice_is_finite_updates_and_is_seeded(tiny_config):
    method = build(tiny_config, "sup_loss=abce")
    optimizer = method.configure_optimizers()["model"]
    before = [p.detach().clone() for p in method.parameters()]
    rng = torch.get_rng_state()
    losses = []
    for step in range(2):
        optimizer.zero_grad()
        out = method.training_step(batches(), step)
        assert torch.isfinite(out["loss"])
        out["loss"].backward()
        optimizer.step()
        losses.append(out["loss"].item())
    assert torch.equal(torch.get_rng_state(), rng)  # no draw from the global RNG
    changed = [not torch.equal(b, p) for b, p in zip(before, method.parameters(), strict=True)]
    assert all(changed)  # model and every aux decoder moved
    with torch.no_grad():
        again = method.training_step(batches(), 1)["loss"].item()
        assert again == method.training_step(batches(), 1)["loss"].item()
