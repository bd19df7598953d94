"""adv_cutmix: the loss is exactly its three weighted terms plus the discriminator's own term."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segshift.methods.adv_cutmix import MASK_SALT, AdvCutMix
from segshift.methods.common.augment import step_generator
from segshift.methods.common.losses import resize_logits
from segshift.methods.common.mixing import cutmix_masks

NUM_CLASSES = 5
SIZE = (32, 32)  # the discriminator needs 32 pixels: five stride-2 convs


def build(tiny_config, *params: str) -> AdvCutMix:
    """The fast model without dropout and without augmentation, so every term can be recomputed."""
    torch.manual_seed(0)
    overrides = [f"method.params.{p}" for p in ("augment.jitter_p=0", "augment.blur_p=0", *params)]
    cfg = tiny_config("method.name=adv_cutmix", "model.params.decoder_dropout=0", *overrides)
    return AdvCutMix(cfg, NUM_CLASSES)


def batches() -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(2)
    label = torch.randint(0, NUM_CLASSES, (2, *SIZE), generator=g)
    label[:, 0] = 255
    return {
        "source": {"image": torch.rand(2, 3, *SIZE, generator=g), "label": label},
        "target": {"image": torch.rand(2, 3, *SIZE, generator=g)},
    }


def bce(logits: torch.Tensor, value: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, value))


def test_loss_is_the_three_weighted_terms_plus_the_discriminator_term(tiny_config):
    method = build(tiny_config, "lambda_adv=0.3", "lambda_cm=0.7")
    assert method.params.mix_mask == "cut"
    batch, step = batches(), 4
    out = method.training_step(batch, step)

    source, target = batch["source"], batch["target"]
    with torch.no_grad():
        source_logits = resize_logits(method.model(source["image"])["out"], SIZE)
        target_logits = resize_logits(method.model(target["image"])["out"], SIZE)
        seg = F.cross_entropy(source_logits, source["label"], ignore_index=255)
        d_source = method.discriminator(torch.softmax(source_logits, 1))
        d_target = method.discriminator(torch.softmax(target_logits, 1))
        adv = bce(d_target, 0.0)  # target outputs pushed to the source label
        d_loss = (bce(d_source, 0.0) + bce(d_target, 1.0)) / 2

        confidence, pseudo = torch.softmax(method.teacher(target["image"])["out"], 1).max(1)
        omega = (confidence >= 0.968).float().mean()
        mask = cutmix_masks(2, SIZE, step_generator(method.cfg.seed, step, MASK_SALT)).bool()
        image = torch.where(mask.unsqueeze(1), source["image"], target["image"])
        label = torch.where(mask, source["label"], pseudo)
        weight = torch.where(mask, torch.ones_like(confidence), omega)
        mixed_logits = resize_logits(method.model(image)["out"], SIZE)
        per_pixel = F.cross_entropy(mixed_logits, label, ignore_index=255, reduction="none")
        mixed = (per_pixel * weight).mean()

    for name, value in (("seg", seg), ("adv", adv), ("d", d_loss), ("mixed", mixed)):
        assert out[name].item() == pytest.approx(value.item(), rel=1e-5), name
    assert out["pseudo_weight"].item() == pytest.approx(omega.item())
    total = seg + 0.3 * adv + 0.7 * mixed + d_loss
    assert out["loss"].item() == pytest.approx(total.item(), rel=1e-5)


def test_generator_term_gives_no_gradient_to_the_discriminator(tiny_config):
    method = build(tiny_config)

    def gradients(lambda_adv: float) -> tuple[list[torch.Tensor], torch.Tensor]:
        method.params.lambda_adv = lambda_adv
        method.zero_grad(set_to_none=True)
        method.training_step(batches(), 1)["loss"].backward()
        assert all(p.grad is None for p in method.teacher.parameters())
        head = [p for n, p in method.model.named_parameters() if "segmentation_head" in n][0]
        return [p.grad.clone() for p in method.discriminator.parameters()], head.grad.clone()

    d_without, head_without = gradients(0.0)
    d_with, head_with = gradients(100.0)
    for a, b in zip(d_without, d_with, strict=True):
        torch.testing.assert_close(a, b)  # only D's own term reaches D
    assert not torch.allclose(head_without, head_with)  # the generator term reaches the student


def test_optimizers_and_evaluated_model(tiny_config):
    method = build(tiny_config, "d_lr=0.0003")
    optimizers = method.configure_optimizers()
    assert set(optimizers) == {"model", "discriminator"}
    adam = optimizers["discriminator"]
    assert isinstance(adam, torch.optim.Adam)
    assert adam.param_groups[0]["lr"] == 0.0003 and adam.param_groups[0]["betas"] == (0.9, 0.99)
    d_params = {id(p) for p in method.discriminator.parameters()}
    assert {id(p) for g in adam.param_groups for p in g["params"]} == d_params
    model_params = {id(p) for g in optimizers["model"].param_groups for p in g["params"]}
    assert model_params == {id(p) for p in method.model.parameters() if p.requires_grad}
    assert method.eval_model() is method.model and not method.teacher.training
