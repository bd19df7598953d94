"""Seg-Uncertainty's rectified pseudo-label learning against values computed by hand.

A tiny two-level segmenter (logits at half resolution, "out" and "aux" heads) stands in for the
multi-level DeepLab-v2; the smp ``fast`` model covers the method's own auxiliary classifier.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from helpers import assert_resume_exact, every_stream, read_log, two_level
from segshift.config import load_config
from segshift.engine.checkpoint import load_checkpoint
from segshift.errors import ConfigError
from segshift.methods.common.losses import cross_entropy, resize_logits
from segshift.methods.uncertainty import class_weights, prediction_variance, rectified_loss
from segshift.registry import METHODS, MODELS

C = 3  # classes
LN2 = math.log(2.0)
# Two heads at one pixel: p_a = (1/2, 1/2) (logits 0, 0) and p_b = (3/4, 1/4) (logits ln 3, 0).
V_AB = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # KL(p_b || p_a) = 0.1308
V_BA = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)  # KL(p_a || p_b) = 0.1438


def one_level(num_classes, encoder=None, encoder_weights=None):
    return two_level(num_classes, multi_level=False)


@pytest.fixture
def make(monkeypatch):
    """build(*overrides, arch="two_level") -> a method in train mode (C classes)."""
    monkeypatch.setitem(MODELS._builders, "two_level", two_level)

    def build(*overrides: str, arch: str = "two_level"):
        model = ["model.arch=two_level", "model.normalization.preset=none"]
        if arch == "fast":
            model = ["model.arch=fast", "model.encoder=resnet18"]
        cfg = load_config(
            None, ["method.name=uncertainty", "model.align_corners=true", *model, *overrides]
        )
        torch.manual_seed(0)
        return METHODS.build("uncertainty", cfg=cfg, num_classes=C).train()

    return build


def heads(*pixels: tuple[list[float], list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(1,2,1,P) logits of heads a and b from per-pixel (a logits, b logits)."""
    a = torch.tensor([p[0] for p in pixels]).T.reshape(1, 2, 1, len(pixels))
    b = torch.tensor([p[1] for p in pixels]).T.reshape(1, 2, 1, len(pixels))
    return a, b


def target_batch(seed: int = 0, labeled: bool = True) -> dict:
    g = torch.Generator().manual_seed(seed)
    data = {"image": torch.rand(2, 3, 16, 20, generator=g)}
    if labeled:
        label = torch.randint(0, C, (2, 16, 20), generator=g)
        label[:, 0] = 255
        data["label"] = label
    return data


# --- the loss ---------------------------------------------------------------------------------


def test_variance_is_the_kl_of_the_other_head_from_this_one() -> None:
    a, b = heads(([0.0, 0.0], [math.log(3.0), 0.0]))
    assert prediction_variance(a, b).shape == (1, 1, 1)
    assert prediction_variance(a, b).item() == pytest.approx(V_AB, rel=1e-5)
    assert prediction_variance(b, a).item() == pytest.approx(V_BA, rel=1e-5)  # not symmetric
    assert prediction_variance(a, a).item() == pytest.approx(0.0, abs=1e-7)


def test_rectified_loss_by_hand() -> None:
    # pixel 0: heads disagree (V_AB), label 0, CE = ln 2; pixel 1: heads agree (V = 0)
    a, b = heads(([0.0, 0.0], [math.log(3.0), 0.0]), ([0.0, 0.0], [0.0, 0.0]))
    ignored = torch.tensor([[[0, 255]]])
    loss, variance = rectified_loss(a, b, ignored)
    assert variance.flatten().tolist() == pytest.approx([V_AB, 0.0], abs=1e-6)
    # means over both pixels: the ignored one adds 0 to the CE term but still its V
    assert loss.item() == pytest.approx(LN2 * math.exp(-V_AB) / 2 + V_AB / 2, rel=1e-5)

    labeled = torch.tensor([[[0, 1]]])
    loss, _ = rectified_loss(a, b, labeled)
    assert loss.item() == pytest.approx((LN2 * math.exp(-V_AB) + LN2) / 2 + V_AB / 2, rel=1e-5)

    weighted, _ = rectified_loss(a, b, labeled, class_weight=torch.tensor([2.0, 3.0, 1.0]))
    expected = (2 * LN2 * math.exp(-V_AB) + 3 * LN2) / 2 + V_AB / 2
    assert weighted.item() == pytest.approx(expected, rel=1e-5)


def test_identical_heads_reduce_to_cross_entropy_over_all_pixels() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, C, 4, 5, generator=g)
    label = torch.randint(0, C, (2, 4, 5), generator=g)
    label[0, 0] = 255
    loss, variance = rectified_loss(logits, logits.clone(), label)
    assert variance.abs().max().item() < 1e-6
    plain = F.cross_entropy(logits, label, ignore_index=255, reduction="none").mean()
    assert loss.item() == pytest.approx(plain.item(), rel=1e-5)


def test_logits_are_upsampled_to_the_labels() -> None:
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(1, C, 3, 4, generator=g), torch.randn(1, C, 3, 4, generator=g)
    label = torch.randint(0, C, (1, 6, 8), generator=g)
    loss, variance = rectified_loss(a, b, label, align_corners=True)
    big_a, big_b = (resize_logits(x, (6, 8), align_corners=True) for x in (a, b))
    same, _ = rectified_loss(big_a, big_b, label)
    assert variance.shape == (1, 6, 8)
    assert loss.item() == pytest.approx(same.item(), rel=1e-6)


def test_gradients_flow_into_both_heads() -> None:
    g = torch.Generator().manual_seed(3)
    a = torch.randn(1, C, 2, 2, generator=g).requires_grad_()
    b = torch.randn(1, C, 2, 2, generator=g).requires_grad_()
    label = torch.full((1, 2, 2), 255)  # all ignored: only the variance term is left
    loss, variance = rectified_loss(a, b, label)
    assert loss.item() == pytest.approx(variance.mean().item())
    loss.backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0  # V is not detached on either side


# --- class weights ----------------------------------------------------------------------------


def hand_made_labels() -> torch.Tensor:
    """2 images of 4x4: class 0 on 24 pixels, class 1 on 6, class 2 absent, 2 ignored."""
    label = torch.zeros(2, 4, 4, dtype=torch.long)
    label[0, 0, :4] = 1
    label[1, 0, :2] = 1
    label[1, 3, 2:] = 255
    return label


def test_class_weights_by_hand() -> None:
    counts = torch.tensor([24.0, 6.0, 0.0])
    often = torch.ones(3)
    # small: counts < 4 * 2 images -> classes 1, 2 get 7; often: class 2 absent -> 0.9 + 0.1 * 7
    weight, often = class_weights(counts, 2, often, max_weight=7.0, small_class_pixels=4)
    assert often.tolist() == pytest.approx([1.0, 1.0, 1.6])
    assert weight.tolist() == pytest.approx([1.0, 7.0, 11.2])
    weight, often = class_weights(counts, 2, often, max_weight=7.0, small_class_pixels=4)
    assert often.tolist() == pytest.approx([1.0, 1.0, 0.9 * 1.6 + 0.7])
    assert weight.tolist() == pytest.approx([1.0, 7.0, 7.0 * 2.14])
    weight, often = class_weights(
        counts, 2, torch.ones(3), small_class_pixels=4, often_balance=False
    )
    assert weight.tolist() == pytest.approx([1.0, 7.0, 7.0]) and often.tolist() == [1, 1, 1]


def test_method_keeps_the_running_often_weights(make) -> None:
    method = make("method.params.small_class_pixels=4")
    label = hand_made_labels()
    assert method.update_class_weights(label).tolist() == pytest.approx([1.0, 7.0, 11.2])
    assert method.update_class_weights(label).tolist() == pytest.approx([1.0, 7.0, 14.98])
    assert method.state_dict()["often_weight"].tolist() == pytest.approx([1.0, 1.0, 2.14])
    off = make("method.params.class_balance=false")
    assert off.update_class_weights(label) is None
    assert off.often_weight.tolist() == [1.0, 1.0, 1.0]


# --- the method -------------------------------------------------------------------------------


def test_step_with_the_models_aux_head(make) -> None:
    method = make("method.params.small_class_pixels=4")
    assert method.aux_head is None and method.teacher is None
    assert method.streams == ("target",)
    target = target_batch()
    out = method.training_step({"target": target}, step=0)

    outputs = method.model(target["image"])  # train-mode BatchNorm: the same batch statistics
    weight, _ = class_weights(
        torch.bincount(target["label"][target["label"] < C], minlength=C), 2, torch.ones(C),
        small_class_pixels=4,
    )  # fmt: skip
    kwargs = {"class_weight": weight, "align_corners": True}
    main, _ = rectified_loss(outputs["out"], outputs["aux"], target["label"], **kwargs)
    aux, _ = rectified_loss(outputs["aux"], outputs["out"], target["label"], **kwargs)
    assert out["rectified"].item() == pytest.approx(main.item(), rel=1e-5)
    assert out["rectified_aux"].item() == pytest.approx(aux.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(main.item() + 0.5 * aux.item(), rel=1e-5)
    assert out["kept"].item() == pytest.approx(1 - 20 / (16 * 20))  # row 0 ignored

    out["loss"].backward()
    model = method.model
    assert model.classifier.weight.grad.abs().sum() > 0
    assert model.aux_classifier.weight.grad.abs().sum() > 0


def test_source_stream_adds_cross_entropy_on_both_heads(make) -> None:
    target, source = target_batch(0), target_batch(1)
    alone = make().training_step({"target": target}, step=0)
    method = make("method.params.source_weight=2.0")
    assert method.streams == ("target", "source")
    out = method.training_step({"target": target, "source": source}, step=0)
    outputs = method.model(source["image"])
    ce = cross_entropy(outputs["out"], source["label"], align_corners=True)
    ce_aux = cross_entropy(outputs["aux"], source["label"], align_corners=True)
    assert out["ce_source"].item() == pytest.approx(ce.item() + 0.5 * ce_aux.item(), rel=1e-5)
    expected = alone["loss"].item() + 2.0 * out["ce_source"].item()
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)


def test_own_aux_classifier_on_the_encoder_stage_before_the_last(make) -> None:
    method = make(arch="fast").eval()
    assert method.aux_head is not None and method.aux_head[0].in_channels == 256  # resnet18 layer3
    image = torch.rand(2, 3, 30, 40)
    main, aux = method.predict(image)
    assert main.shape == (2, C, 30, 40)
    # padded to 32 x 64 for the stride-32 encoder: layer3 (stride 16) is 2 x 4, of which the
    # cells over the real 30 x 40 image are ceil(30 * 2 / 32) = 2 rows, ceil(40 * 4 / 64) = 3 cols
    assert aux.shape == (2, C, 2, 3)
    model = method.model
    features = model.net.encoder(F.pad(model.input_norm(image), (0, 24, 0, 2)))
    expected = method.aux_head(features[-2])[..., :2, :3]
    assert torch.allclose(aux, expected, atol=1e-6)


def test_aux_classifier_is_trained_by_the_model_optimizer(make) -> None:
    method = make("optim.lr=0.01", "optim.head_lr_mult=10", arch="fast")
    optimizer = method.configure_optimizers()["model"]
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["aux_head"]["lr"] == pytest.approx(0.1)
    listed = [id(p) for g in optimizer.param_groups for p in g["params"]]
    trained = [id(p) for p in method.parameters() if p.requires_grad]
    assert sorted(listed) == sorted(trained)


def test_bad_aux_stage_and_params_are_config_errors(make, monkeypatch) -> None:
    with pytest.raises(ConfigError, match=r"method\.params\.aux_feature: 9"):
        make("method.params.aux_feature=9", arch="fast")
    monkeypatch.setitem(MODELS._builders, "one_level", one_level)
    with pytest.raises(ConfigError, match=r"aux_feature.*model.arch=one_level"):
        make("model.arch=one_level")
    with pytest.raises(ConfigError, match=r"method\.params\.max_weight"):
        make("method.params.max_weight=0.5")
    with pytest.raises(ConfigError, match=r"method\.params\.lambda_aux"):
        make("method.params.lambda_aux=-1")


def test_unlabeled_target_is_labeled_by_the_frozen_initial_network(make, caplog) -> None:
    method = make("data.streams.target.labeled=false")
    teacher = method.teacher
    assert teacher is not None and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    target = target_batch(labeled=False)
    with torch.no_grad():
        outputs = teacher(target["image"])
        fused = resize_logits(outputs["out"] + 0.5 * outputs["aux"], (16, 20), align_corners=True)
    expected = fused.argmax(dim=1)
    assert torch.equal(method.online_pseudo_labels(target["image"]), expected)

    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    with caplog.at_level("WARNING", logger="segshift.methods.uncertainty"):
        optimizer = method.configure_optimizers()["model"]
    assert "without model.init_from" in caplog.text  # a random network labels the target
    method.training_step({"target": target}, step=0)["loss"].backward()
    optimizer.step()
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert not torch.equal(method.model.classifier.weight, teacher.classifier.weight)
    assert torch.equal(method.online_pseudo_labels(target["image"]), expected)


def test_trainer_runs_and_resumes_exactly_on_pseudo_labels(tiny_config, tiny_folder, tmp_path):
    straight, _ = assert_resume_exact(
        tiny_config,
        tmp_path,
        "method.name=uncertainty",
        *every_stream(tiny_folder),
        "data.streams.target.labeled=true",
        "method.params.small_class_pixels=16",
    )
    method = straight.method
    assert method.teacher is None and method.aux_head is not None
    # camvid has 11 classes and each fixture crop holds at most 3: absent classes pile up weight
    assert method.often_weight.max().item() > 1.5 and method.often_weight.min().item() == 1.0
    state, _ = load_checkpoint(straight.run_dir / "checkpoints" / "latest.pt")
    assert torch.equal(state["method"]["often_weight"], method.often_weight)
    train = [r for r in read_log(straight.run_dir) if r["kind"] == "train"]
    assert all(r["variance"] >= 0 and "rectified_aux" in r for r in train)
