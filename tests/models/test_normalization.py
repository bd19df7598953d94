"""Input normalisation follows the weights, lives inside the model, and is recorded per run."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from segshift.config import load_config
from segshift.engine.trainer import Trainer
from segshift.errors import ConfigError
from segshift.methods.common.ema import ema_update, make_teacher
from segshift.models import (
    InputNorm,
    build_model,
    drop_pretrained_weights,
    freeze_normalization,
    resolve_normalization,
)
from segshift.models.normalization import PRESETS


def model_cfg(*overrides: str):
    return load_config(None, list(overrides)).model


def test_caffe_preset_by_hand():
    pixel = torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1)  # R, G, B in [0, 1]
    out = InputNorm(PRESETS["caffe"])(pixel).flatten()
    expected = [0.6 * 255 - 104.00698793, 0.4 * 255 - 116.66876762, 0.2 * 255 - 122.67891434]
    torch.testing.assert_close(out, torch.tensor(expected))  # B, G, R order


def test_imagenet_preset_by_hand():
    pixel = torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1)
    out = InputNorm(PRESETS["imagenet"])(pixel).flatten()
    expected = [(0.2 - 0.485) / 0.229, (0.4 - 0.456) / 0.224, (0.6 - 0.406) / 0.225]
    torch.testing.assert_close(out, torch.tensor(expected))


@pytest.mark.parametrize(
    ("overrides", "preset"),
    [
        (["model.arch=fast", "model.encoder=resnet18"], "imagenet"),
        (["model.arch=deeplabv2", "model.encoder=resnet101"], "imagenet"),  # random init
        (["model.arch=deeplabv2", "model.encoder_weights=imagenet"], "imagenet"),  # torchvision
        (["model.arch=deeplabv2", "model.encoder_weights=init/DeepLab_init.pth"], "caffe"),
        (["model.encoder=tu-resnet101s"], "imagenet"),  # timm pretrained config
        (["model.encoder=tu-inception_v3.tf_in1k"], "inception"),  # mean = std = 0.5
        (["model.encoder=xception"], "inception"),
        (["model.encoder=efficientnet-b0", "model.encoder_weights=advprop"], "inception"),
        (["model.encoder=efficientnet-b0", "model.encoder_weights=imagenet"], "imagenet"),
        (["model.normalization.preset=caffe"], "caffe"),
    ],
)
def test_auto_follows_the_weights(overrides, preset):
    assert resolve_normalization(model_cfg(*overrides)).preset == preset


def test_explicit_fields_win_and_make_it_custom():
    norm = resolve_normalization(
        model_cfg("model.normalization.preset=caffe", "model.normalization.std=[58.4,57.1,57.4]")
    )
    assert norm.preset == "custom" and norm.channel_order == "bgr" and norm.scale == 255.0
    assert norm.std == (58.4, 57.1, 57.4) and norm.mean == PRESETS["caffe"].mean


def test_bad_values_name_the_key():
    with pytest.raises(ConfigError, match="model.normalization.preset.*imagnet"):
        resolve_normalization(model_cfg("model.normalization.preset=imagnet"))
    with pytest.raises(ConfigError, match="model.normalization.channel_order"):
        resolve_normalization(model_cfg("model.normalization.channel_order=gbr"))
    with pytest.raises(ConfigError, match="model.normalization.std"):
        resolve_normalization(model_cfg("model.normalization.std=[1,0,1]"))


def test_freezing_is_idempotent_and_survives_dropping_the_weights():
    cfg = model_cfg("model.arch=deeplabv2", "model.encoder_weights=init/DeepLab_init.pth")
    drop_pretrained_weights(cfg)  # as eval/predict do before loading a checkpoint
    assert cfg.encoder_weights is None and cfg.normalization.preset == "caffe"
    assert resolve_normalization(cfg) == PRESETS["caffe"]
    timm_cfg = model_cfg("model.normalization.preset=custom", "model.normalization.mean=[0,0,0]")
    with pytest.raises(ConfigError, match="needs mean, std"):
        resolve_normalization(timm_cfg)
    frozen = model_cfg("model.encoder=tu-resnet101s")
    first = freeze_normalization(frozen)
    assert freeze_normalization(frozen) == first


def test_models_normalise_their_input_and_keep_state_dicts_clean():
    cfg = model_cfg("model.arch=fast", "model.encoder=resnet18", "model.normalization.preset=caffe")
    model = build_model(cfg, num_classes=3).eval()
    x = torch.rand(1, 3, 64, 64)  # FPN's GroupNorm needs more than a 1x1 top level
    with torch.no_grad():
        expected = model.net(InputNorm(PRESETS["caffe"])(x))
        torch.testing.assert_close(model(x)["out"], expected)
    assert not any("input_norm" in key for key in model.state_dict())
    teacher = make_teacher(model)
    ema_update(teacher, model, alpha=0.5, step=10)
    assert teacher.input_norm.norm == PRESETS["caffe"]


def test_align_corners_is_a_model_attribute():
    assert build_model(model_cfg("model.arch=fast", "model.align_corners=true"), 3).align_corners
    assert not build_model(model_cfg("model.arch=fast"), 3).align_corners


def test_missing_weight_file_quotes_what_to_download(tmp_path):
    cfg = model_cfg(
        "model.arch=fast",
        f"model.encoder_weights={tmp_path / 'nope.pth'}",
        "model.expected_weights=the ImageNet ResNet-18 from torchvision",
    )
    with pytest.raises(ConfigError, match="nope.pth.*ImageNet ResNet-18.*encoder_weights=null"):
        build_model(cfg, 3)


def test_run_records_the_normalisation_and_warns_without_expected_weights(tiny_config, capsys):
    cfg = tiny_config(
        "train.iters=1",
        "train.eval_every=0",
        "model.normalization.preset=inception",
        "model.expected_weights=DeepLab_init.pth from the official README",
    )
    trainer = Trainer(cfg)
    trainer.fit()
    out = capsys.readouterr().out
    assert "input normalisation: inception" in out
    assert "WARNING" in out and "DeepLab_init.pth" in out
    saved = OmegaConf.load(trainer.run_dir / "config.yaml").model.normalization
    assert saved.preset == "inception" and list(saved.mean) == [0.5, 0.5, 0.5]
    assert saved.channel_order == "rgb" and saved.scale == 1.0
