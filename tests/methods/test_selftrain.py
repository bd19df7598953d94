"""DAFormer / MIC self-training (``selftrain``) against values worked out by hand."""

from __future__ import annotations

import pytest
import torch

import segshift.methods.selftrain as selftrain
from helpers import assert_resume_exact, every_stream, read_log
from segshift.config import load_config
from segshift.errors import ConfigError
from segshift.methods.common.augment import step_generator
from segshift.methods.common.mixing import mixed_batch
from segshift.methods.selftrain import SelfTrain, block_mask, downscale_label_ratio

NUM_CLASSES = 11  # camvid, the tiny folder dataset's label space
CAR, PEDESTRIAN, ROAD = 8, 9, 3


def build(*overrides: str) -> SelfTrain:
    torch.manual_seed(0)
    cfg = load_config(
        None, ["model.arch=fast", "model.encoder=resnet18", "method.name=selftrain", *overrides]
    )
    return SelfTrain(cfg, NUM_CLASSES)


def batches(labels: torch.Tensor) -> dict:
    b, h, w = labels.shape
    g = torch.Generator().manual_seed(1)
    return {
        "source": {"image": torch.rand(b, 3, h, w, generator=g), "label": labels},
        "target": {"image": torch.rand(b, 3, h, w, generator=g)},
    }


@pytest.fixture
def spy_mix(monkeypatch) -> list:
    """Records the (pseudo-label, mask) pairs that the method hands to ``mixed_batch``."""
    calls = []

    def spy(source, target, pseudo, mask):
        calls.append((pseudo, mask))
        return mixed_batch(source, target, pseudo, mask)

    monkeypatch.setattr(selftrain, "mixed_batch", spy)
    return calls


def test_classmix_draws_per_image_from_the_classes_of_the_whole_source_batch(spy_mix) -> None:
    """DAFormer's get_class_masks: for every image, ceil(n/2) of the n classes of the whole
    source batch, drawn anew (so an image can draw classes it does not hold)."""
    labels = torch.zeros(2, 16, 16, dtype=torch.long)
    labels[0, :8], labels[0, 8:] = 0, 1  # image 0 holds {0, 1}, image 1 holds {2, 3}
    labels[1, :8], labels[1, 8:] = 2, 3
    method = build("method.params.fd_lambda=0")
    union = torch.tensor([0, 1, 2, 3])
    for step in range(12):
        method.training_step(batches(labels), step)
        _, mask = spy_mix[step]
        generator = step_generator(method.cfg.seed, step, selftrain.MIX_SALT)
        for image in range(2):  # the draws the method makes, in its order
            chosen = union[torch.randperm(4, generator=generator)[:2]]
            expected = torch.isin(labels[image], chosen).float()
            assert torch.equal(mask[image], expected)
    # one image pasted whole while the other also pastes something: impossible with one shared
    # draw of 2 classes (both of image 0's classes leave none of image 1's)
    shares = [tuple(m.mean().item() for m in mask) for _, mask in spy_mix]
    assert any(max(a, b) == 1.0 and min(a, b) > 0 for a, b in shares)


def test_margins_zero_the_pseudo_weight_and_source_pixels_keep_one(spy_mix) -> None:
    labels = torch.full((2, 16, 16), ROAD)
    method = build(
        "method.params.fd_lambda=0",
        "method.params.threshold=0.0",  # every pixel confident: omega = 1
        "method.params.ignore_margins=[2,3]",
    )
    out = method.training_step(batches(labels), 0)
    assert out["pseudo_weight"].item() == 1.0
    pseudo, mask = spy_mix[0]
    expected = torch.ones(2, 16, 16)
    expected[:, :2], expected[:, 13:] = 0, 0
    assert torch.equal(pseudo.weight, expected)
    data = batches(labels)
    _, _, mixed_weight = mixed_batch(data["source"], data["target"], pseudo, mask)
    assert torch.equal(mixed_weight, torch.maximum(expected, mask))  # pasted pixels weigh 1


def test_block_label_rule_keeps_a_75_percent_class_and_ignores_a_tie() -> None:
    label = torch.full((1, 8, 8), ROAD)
    label[0, :4, :4] = CAR
    label[0, 0, :4] = PEDESTRIAN  # top-left block: 12/16 car -> car
    label[0, :4, 4:6] = CAR  # top-right block: 8 car / 8 road -> tie at 50% -> ignore
    label[0, 4:, 4:] = 255
    label[0, 7, 4:] = CAR  # bottom-right: 12 ignore, 4 car -> ignore wins -> ignore
    blocks = downscale_label_ratio(label, (2, 2), 0.75, NUM_CLASSES)
    assert blocks.tolist() == [[[CAR, 255], [ROAD, 255]]]
    loose = downscale_label_ratio(label, (2, 2), 0.5, NUM_CLASSES)
    assert loose[0, 0].tolist() == [CAR, ROAD]  # 50% is enough at 0.5; a tie takes the lower id


def test_feature_distance_is_off_without_pretrained_weights() -> None:
    method = build()
    assert method.params.fd_lambda == 0.005 and method.imagenet_model is None
    out = method.training_step(batches(torch.full((2, 32, 32), ROAD)), 0)
    assert "feature_distance" not in out
    assert not any(k.startswith("imagenet_model") for k in method.state_dict())


def test_feature_distance_with_pretrained_weights(tmp_path, tiny_folder) -> None:
    weights = tmp_path / "encoder.pth"
    torch.save(build().model.encoder.state_dict(), weights)
    method = build(
        f"model.encoder_weights={weights}",
        f"data.val.root={tiny_folder}",
        "method.params.fd_classes=[car,pedestrian]",
    )
    assert method.fd_class_ids == [CAR, PEDESTRIAN]
    image = torch.rand(2, 3, 64, 64)
    reference = method.imagenet_model.encode(image)  # (2, 512, 2, 2): stride 32
    offset = torch.zeros_like(reference)
    offset[:, :2] = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)  # L2 norm 5 in every cell
    label = torch.full((2, 64, 64), ROAD)
    label[0, :32, :32] = CAR  # one car cell in image 0
    label[1, 32:, 32:] = PEDESTRIAN
    label[1, :32, 32:] = 255
    assert method._feature_distance(image, label, reference + offset).item() == pytest.approx(5.0)
    offset[0, 0, 0, 0] = 13.0  # the car cell: sqrt(13^2 + 4^2); the pedestrian cell stays 5
    expected = ((13**2 + 4**2) ** 0.5 + 5.0) / 2
    assert method._feature_distance(image, label, reference + offset).item() == pytest.approx(
        expected
    )
    road = torch.full((2, 64, 64), ROAD)  # no thing cell: 0, not NaN
    assert method._feature_distance(image, road, reference + offset).item() == 0.0

    method.eval()  # the hooked student features are what encode() returns
    with selftrain._last_stage(method.model.encoder) as captured:
        method.model(image)
    assert torch.allclose(captured[-1], method.model.encode(image))
    method.train()
    out = method.training_step(batches(label), 0)
    assert torch.isfinite(out["feature_distance"]) and out["feature_distance"] > 0
    state = method.state_dict()  # the frozen copy is rebuilt from the weights, not saved
    assert not any(k.startswith("imagenet_model") for k in state)
    method.load_state_dict(state)


def test_mic_mask_keeps_about_30_percent_of_whole_blocks_and_paints_the_mean() -> None:
    images = torch.rand(4, 3, 128, 128)
    fill = (0.485, 0.456, 0.406)
    masked = block_mask(images, 8, 0.7, fill, torch.Generator().manual_seed(0))
    hidden = (masked == torch.tensor(fill).view(1, 3, 1, 1)).all(dim=1)  # (4, 128, 128)
    blocks = hidden.view(4, 16, 8, 16, 8).permute(0, 1, 3, 2, 4).flatten(3).float()
    assert ((blocks == 0) | (blocks == 1)).all() and (blocks.amin(3) == blocks.amax(3)).all()
    assert 1 - hidden.float().mean().item() == pytest.approx(0.3, abs=0.05)  # 1024 cells
    kept = ~hidden.unsqueeze(1).expand_as(images)
    assert torch.equal(masked[kept], images[kept])


@pytest.mark.parametrize("preset", ["imagenet", "caffe"])
def test_mic_fill_colour_normalises_to_zero(preset) -> None:
    method = build(f"model.normalization.preset={preset}")
    colour = torch.tensor(method.fill_colour()).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert method.model.input_norm(colour).abs().max().item() < 1e-5
    out = build("method.params.mic_lambda=1", "method.params.mic_block_size=8").training_step(
        batches(torch.full((2, 32, 32), ROAD)), 0
    )
    assert torch.isfinite(out["masked"])


def fill(modules, values) -> None:
    with torch.no_grad():
        for module, value in zip(modules, values):
            for tensor in [*module.parameters(), *module.buffers()]:
                if tensor.is_floating_point():
                    tensor.fill_(value)


@pytest.mark.parametrize("parameters_only", [False, True])
def test_teacher_ema_warm_up_follows_daformer(parameters_only) -> None:
    method = build(f"method.params.ema_parameters_only={parameters_only}")
    bn = "net.encoder.bn1.running_mean"
    fill((method.teacher, method.model), (0.0, 1.0))
    method.after_step(0)  # 1 optimizer step taken: alpha_1 = min(1 - 1/2, 0.999) = 0.5
    assert all(torch.allclose(t, torch.full_like(t, 0.5)) for t in method.teacher.parameters())
    assert method.teacher.state_dict()[bn].unique().tolist() == [0.0 if parameters_only else 0.5]
    fill((method.teacher,), (0.0,))
    method.after_step(8)  # 9 steps taken: alpha_9 = 0.9 -> 0.9 * 0 + 0.1 * 1
    assert all(torch.allclose(t, torch.full_like(t, 0.1)) for t in method.teacher.parameters())
    method.after_step(5000)  # the warm-up ends at alpha = 0.999
    assert all(
        torch.allclose(t, torch.full_like(t, 0.1 * 0.999 + 0.001))
        for t in method.teacher.parameters()
    )


def test_teacher_predicts_in_eval_mode_unless_asked() -> None:
    method = build()
    method.train()
    assert method.model.training and not method.teacher.training
    official = build("method.params.teacher_train_mode=true")
    official.train()
    assert official.teacher.training  # BatchNorm on target-batch statistics, as DAFormer


def test_typos_and_bad_choices_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="mix_classes_fro"):
        build("method.params.mix_classes_fro=batch")
    with pytest.raises(ConfigError, match="loss_average"):
        build("method.params.loss_average=mean")


def test_resume_is_exact_with_mic_and_feature_distance(tiny_config, tiny_folder, tmp_path) -> None:
    weights = tmp_path / "encoder.pth"
    torch.save(build().model.encoder.state_dict(), weights)
    straight, _ = assert_resume_exact(
        tiny_config,
        tmp_path,
        "method.name=selftrain",
        f"model.encoder_weights={weights}",
        "method.params.fd_classes=[car,pedestrian,sky]",
        "method.params.mic_lambda=1",
        "method.params.mic_block_size=8",
        "method.params.ignore_margins=[2,3]",
        *every_stream(tiny_folder),
    )
    train = [r for r in read_log(straight.run_dir) if r["kind"] == "train"]
    assert all({"feature_distance", "masked", "mixed", "source"} <= set(r) for r in train)


@pytest.mark.parametrize(
    ("arch", "encoder"), [("fast", "resnet18"), ("segformer", "mit_b0"), ("deeplabv2", "resnet50")]
)
def test_encode_gives_the_last_stage_that_forward_computes(arch, encoder) -> None:
    model = build(f"model.arch={arch}", f"model.encoder={encoder}").model.eval()
    image = torch.rand(1, 3, 40, 56)  # not a multiple of 32: smp pads in both
    with selftrain._last_stage(model.encoder) as captured, torch.no_grad():
        model(image)
        features = model.encode(image)
    assert torch.equal(captured[0], features)
    assert features.shape[1] == {"fast": 512, "segformer": 256, "deeplabv2": 2048}[arch]
