"""CycleGAN: generator and PatchGAN shapes, loss terms against hand-computed values, the image
pool, one training step, exact resume with a swapping pool, CyCADA's semantic term."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from helpers import assert_resume_exact
from segshift.config import Config, load_config
from segshift.engine.checkpoint import export_weights
from segshift.errors import ConfigError
from segshift.methods.common.gan import ImagePool, gan_loss
from segshift.models import build_model
from segshift.models.cyclegan import ResnetGenerator
from segshift.models.discriminators import patchgan
from segshift.registry import METHODS

TINY = {"ngf": 8, "n_blocks": 1, "ndf": 8}


def method_config(**params):
    optim = {"name": "adam", "lr": 2e-4, "betas": [0.5, 0.999], "weight_decay": 0.0}
    method = {"name": "cyclegan", "params": {**TINY, **params}}
    return OmegaConf.merge(OmegaConf.structured(Config()), {"method": method, "optim": optim})


def build(**params):
    return METHODS.build("cyclegan", cfg=method_config(**params), num_classes=0).train()


def batches(size=(32, 32), labels=False):
    g = torch.Generator().manual_seed(0)
    source = {"image": torch.rand(2, 3, *size, generator=g)}
    if labels:
        source["label"] = torch.randint(0, 11, (2, *size), generator=g)
    return {"source": source, "target": {"image": torch.rand(2, 3, *size, generator=g)}}


@pytest.mark.parametrize("size", [(60, 76), (61, 75), (32, 32)])
def test_generator_keeps_the_input_size(size) -> None:
    g = ResnetGenerator(ngf=8, n_blocks=1)
    out = g(torch.rand(2, 3, *size) * 2 - 1)
    assert out.shape == (2, 3, *size)
    assert out.abs().max() <= 1.0  # tanh


def test_generator_is_the_official_resnet_9blocks() -> None:
    g = ResnetGenerator(ngf=64, n_blocks=9)
    assert sum(p.numel() for p in g.parameters()) == 11_378_179  # the official count
    norms = [m for m in g.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(norms) == 2 * 9 + 5 and not any(n.affine or n.track_running_stats for n in norms)
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in g.modules()) == 2 + 2 * 9


def test_patchgan_shape_and_70_pixel_receptive_field() -> None:
    d = patchgan(3, ndf=4)
    assert d(torch.rand(1, 3, 256, 256)).shape == (1, 1, 30, 30)
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in d) == 3
    for i, m in enumerate(d):  # the convs alone (instance norm mixes the whole image)
        if isinstance(m, nn.InstanceNorm2d):
            d[i] = nn.Identity()
        elif isinstance(m, nn.Conv2d):
            nn.init.constant_(m.weight, 0.01)
    x = torch.rand(1, 3, 128, 128, requires_grad=True)
    out = d(x)
    out[0, 0, 7, 7].backward()
    rows = x.grad[0].abs().sum(dim=(0, 2)).nonzero()
    assert int(rows.max() - rows.min() + 1) == 70


def test_lsgan_targets() -> None:
    logits = torch.tensor([[0.5, 2.0]])
    assert gan_loss(logits, 1.0, "ls").item() == pytest.approx((0.25 + 1.0) / 2)
    assert gan_loss(logits, 0.0, "ls").item() == pytest.approx((0.25 + 4.0) / 2)


class Shift(nn.Module):
    """A 'generator' that adds a learnable constant."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.tensor(value))

    def forward(self, x):
        return x + self.value


def constant_discriminator(value: float) -> nn.Conv2d:
    conv = nn.Conv2d(3, 1, 1)
    nn.init.zeros_(conv.weight)
    nn.init.constant_(conv.bias, value)
    return conv


def test_loss_terms_match_hand_computed_values() -> None:
    method = build(pool_size=0)
    method.source_to_target, method.target_to_source = Shift(0.1), Shift(-0.3)
    method.target_discriminator = constant_discriminator(0.25)
    method.source_discriminator = constant_discriminator(0.5)
    out = method.training_step(batches(), step=0)
    # cycle: 10 * (|x + 0.1 - 0.3 - x| + |x - 0.3 + 0.1 - x|); identity: 10 * 0.5 * (0.1 + 0.3)
    assert out["cycle"].item() == pytest.approx(4.0, rel=1e-5)
    assert out["identity"].item() == pytest.approx(2.0, rel=1e-5)
    assert out["g_gan"].item() == pytest.approx((0.25 - 1) ** 2 + (0.5 - 1) ** 2)
    assert out["d_target"].item() == pytest.approx(0.5 * ((0.25 - 1) ** 2 + 0.25**2))
    assert out["d_source"].item() == pytest.approx(0.5 * ((0.5 - 1) ** 2 + 0.5**2))
    assert out["loss"].item() == pytest.approx(0.8125 + 4.0 + 2.0 + 0.3125 + 0.25, rel=1e-5)
    out["loss"].backward()
    # D's bias gets d/db of its own loss only, 0.5 * (2(b - 1) + 2b) = 2b - 1: frozen in G's term
    assert method.target_discriminator.bias.grad.item() == pytest.approx(2 * 0.25 - 1)
    assert method.source_discriminator.bias.grad.item() == pytest.approx(2 * 0.5 - 1)


def test_identity_weight_zero_drops_the_term() -> None:
    method = build(pool_size=0, lambda_identity=0.0)
    method.source_to_target, method.target_to_source = Shift(0.1), Shift(-0.3)
    assert method.training_step(batches(), step=0)["identity"].item() == 0.0


def test_pool_fills_then_swaps_half_from_the_generator() -> None:
    pool = ImagePool(size=2)
    first = torch.arange(2.0).view(2, 1, 1, 1).expand(2, 3, 4, 4)
    assert torch.equal(pool.query(first, torch.Generator().manual_seed(1)), first)
    assert int(pool.count) == 2
    new = torch.full((6, 3, 4, 4), 10.0) + torch.arange(6.0).view(6, 1, 1, 1)
    stored = pool.images.clone()
    returned = pool.query(new, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)  # the same draws, replayed
    coins, slots = torch.rand(6, generator=g).tolist(), torch.randint(2, (6,), generator=g).tolist()
    for k, (coin, slot) in enumerate(zip(coins, slots)):
        if coin > 0.5:  # an older image comes back and the new one takes its slot
            assert torch.equal(returned[k], stored[slot])
            stored[slot] = new[k]
        else:
            assert torch.equal(returned[k], new[k])
    assert torch.equal(pool.images, stored)
    swaps = sum(coin > 0.5 for coin in coins)
    assert 0 < swaps < 6  # both branches taken with this seed


def test_pool_state_round_trips_and_sizes_are_checked() -> None:
    pool = ImagePool(size=3)
    pool.query(torch.rand(4, 3, 8, 8), torch.Generator().manual_seed(0))
    fresh = ImagePool(size=3)
    fresh.load_state_dict(pool.state_dict())  # allocated to the stored shape on load
    probe = torch.rand(5, 3, 8, 8)
    a = pool.query(probe, torch.Generator().manual_seed(3))
    b = fresh.query(probe, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and torch.equal(pool.images, fresh.images)
    with pytest.raises(ValueError, match="one size"):
        pool.query(torch.rand(1, 3, 16, 8), torch.Generator())
    assert torch.equal(ImagePool(size=0).query(probe, torch.Generator()), probe)


def test_one_step_changes_generators_and_discriminators() -> None:
    method = build()
    before = {k: v.clone() for k, v in method.state_dict().items()}
    optimizers = method.configure_optimizers()
    assert set(optimizers) == {"generators", "discriminators"}
    assert optimizers["generators"].defaults["betas"] == (0.5, 0.999)
    method.training_step(batches(), step=0)["loss"].backward()
    for optimizer in optimizers.values():
        optimizer.step()
    for net in ("source_to_target", "target_to_source", "target_discriminator"):
        changed = [
            not torch.equal(v, before[k])
            for k, v in method.state_dict().items()
            if k.startswith(net) and k.endswith("weight")
        ]
        assert changed and all(changed), net
    assert int(method.target_pool.count) == 2 and method.eval_model() is None
    assert set(method.export_model().state_dict()) == {
        k for k in before if k.startswith(("source_to_target.", "target_to_source."))
    }


def test_bad_params_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="method.params.gan_mode"):
        build(gan_mode="wgan")
    with pytest.raises(ConfigError, match="method.params.pool_size"):
        build(pool_size=-1)
    with pytest.raises(ConfigError, match="method.params.semantic.checkpoint"):
        build(semantic={"checkpoint": "/nonexistent/run"})


def translation_config(root, out):
    """translate/synthcity shrunk to tiny images; unlabeled streams, no data.val."""

    def make(*extra):
        overrides = [f"data.streams.{s}.root={root}" for s in ("source", "target")]
        overrides += [f"data.streams.{s}.crop_size=[32,32]" for s in ("source", "target")]
        overrides += [f"data.streams.{s}.batch_size=2" for s in ("source", "target")]
        overrides += [f"output_dir={out}", "name=tiny", "data.num_workers=0", "train.iters=4"]
        overrides += ["train.eval_every=2", "train.ckpt_every=2", "train.log_every=1"]
        overrides += ["train.progress=plain", *(f"method.params.{k}={v}" for k, v in TINY.items())]
        return load_config("translate/synthcity", [*overrides, *extra])

    return make


def test_resume_is_exact_with_a_swapping_pool(tiny_folder, tmp_path) -> None:
    make = translation_config(tiny_folder, tmp_path / "runs")
    straight, resumed = assert_resume_exact(make, tmp_path, "method.params.pool_size=1")
    assert straight.label_space is None  # unlabeled streams, no data.val
    assert int(resumed.method.source_pool.count) == 1


def write_segmenter_export(directory, tiny_folder):
    """export/ of an untrained fast segmenter with 11 classes, as a finished run writes it."""
    cfg = load_config("demo/source_only", [f"data.streams.labeled.root={tiny_folder}"])
    torch.manual_seed(0)
    model = build_model(cfg.model, 11)
    space = {"name": "camvid", "class_names": [f"c{i}" for i in range(11)]}
    config = OmegaConf.to_container(cfg, resolve=True)
    export_weights(directory, model, {"config": config, "label_space": space})
    return directory


@pytest.mark.parametrize("use_labels", [False, True])
def test_semantic_consistency_uses_a_frozen_segmenter(use_labels, tiny_folder, tmp_path) -> None:
    write_segmenter_export(tmp_path / "seg" / "export", tiny_folder)
    semantic = {"checkpoint": str(tmp_path / "seg"), "weight": 1.0, "use_labels": use_labels}
    method = build(semantic=semantic)
    assert method.segmenter is not None and not method.segmenter.training
    frozen_state = {k: v.clone() for k, v in method.segmenter.state_dict().items()}
    out = method.training_step(batches(labels=True), step=0)
    assert torch.isfinite(out["semantic"]) and out["semantic"] > 0
    out["loss"].backward()
    assert all(p.grad is None for p in method.segmenter.parameters())
    assert method.source_to_target.model[1].weight.grad is not None
    for optimizer in method.configure_optimizers().values():
        optimizer.step()
    for key, value in method.segmenter.state_dict().items():
        assert torch.equal(value, frozen_state[key]), key
