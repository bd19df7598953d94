"""Released official DeepLab-v2 checkpoints (AdaptSegNet, ADVENT, DACS, FDA) load into DeepLabV2.

The "official" state dicts are made by renaming a small segshift DeepLabV2's keys into each
repository's layout (torchvision backbone names; ``layer5``/``layer6.conv2d_list.{i}``
classifiers), so a converted model must reproduce the original's outputs exactly.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from segshift.cli import main
from segshift.engine.checkpoint import capture_rng, save_checkpoint
from segshift.engine.restore import eval_output_dir, read_eval_checkpoint
from segshift.errors import CheckpointError
from segshift.models import MODELS
from segshift.models.official import (
    convert_official_deeplabv2,
    load_official_deeplabv2,
    looks_like_official_deeplabv2,
    read_official_checkpoint,
)
from segshift.models.weights import load_encoder_weights

# The "4 stored convs fit 2 or 4 branches" warning is asserted where it matters.
pytestmark = pytest.mark.filterwarnings("ignore:.*stores 4 ASPP convs:UserWarning")

NUM_CLASSES = 5
# layout: (main classifier name, aux classifier name or None, model params)
LAYOUTS = {
    "adaptsegnet": ("layer6", "layer5", {"multi_level": True, "aspp_branches": 2}),
    "advent": ("layer6", "layer5", {"multi_level": True, "aspp_branches": 4}),
    "dacs": ("layer5", None, {"multi_level": False, "aspp_branches": 2}),
    "fda": ("layer5", None, {"multi_level": False, "aspp_branches": 4}),
}


def build(seed: int = 0, num_classes: int = NUM_CLASSES, **params) -> torch.nn.Module:
    torch.manual_seed(seed)
    return MODELS.build("deeplabv2", num_classes=num_classes, encoder="resnet50", **params).eval()


def randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Give every tensor a random value (BN statistics and affine included) so that a key mapped
    to the wrong place changes the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            noise = torch.rand(tensor.shape, generator=generator)
            if name.endswith(("running_var", "bn1.weight", "bn2.weight", "bn3.weight")) or (
                "downsample.1.weight" in name
            ):
                tensor.copy_(0.5 + noise)
            elif tensor.dim() == 1:  # BN means/biases, classifier biases
                tensor.copy_(noise - 0.5)
            elif "classifier" in name:
                tensor.normal_(0.0, 0.05, generator=generator)
    return model


def to_official(state: dict[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    """Rename a segshift DeepLabV2 state dict into `layout`; 2-branch classifiers get the two
    unused convs the official files store (still at the N(0, 0.01) init)."""
    main_name, aux_name, _ = LAYOUTS[layout]
    names = {"classifier": main_name, "aux_classifier": aux_name}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head == "encoder":
            out[rest] = value.clone()
        else:  # <role>.branches.<i>.<kind>
            _, index, kind = rest.split(".")
            out[f"{names[head]}.conv2d_list.{index}.{kind}"] = value.clone()
    for name in filter(None, names.values()):
        weight = out[f"{name}.conv2d_list.0.weight"]
        for index in range(4):
            if f"{name}.conv2d_list.{index}.weight" not in out:
                out[f"{name}.conv2d_list.{index}.weight"] = torch.randn(weight.shape) * 0.01
                out[f"{name}.conv2d_list.{index}.bias"] = torch.zeros(weight.shape[0])
    return out


@pytest.fixture(scope="module")
def sources() -> dict[str, tuple[torch.nn.Module, dict[str, torch.Tensor]]]:
    """Per layout: a randomised source model and its state dict in that official layout."""
    result = {}
    for seed, (layout, (_, _, params)) in enumerate(LAYOUTS.items()):
        model = randomise(build(seed, **params), seed)
        result[layout] = (model, to_official(model.state_dict(), layout))
    return result


def outputs(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    x = torch.rand(1, 3, 33, 33, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        return model(x)


def assert_same_outputs(a: torch.nn.Module, b: torch.nn.Module) -> None:
    out_a, out_b = outputs(a), outputs(b)
    assert out_a.keys() == out_b.keys()
    for key in out_a:
        torch.testing.assert_close(out_a[key], out_b[key], rtol=0, atol=0)


def load(state, params: dict, seed: int = 99, **kw) -> torch.nn.Module:
    model = build(seed, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 4-stored-convs ambiguity warning
        model.load_state_dict(convert_official_deeplabv2(state, model, "released.pth", **kw))
    return model


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_each_layout_converts_and_reproduces_the_outputs(sources, layout) -> None:
    source, state = sources[layout]
    params = LAYOUTS[layout][2]
    fresh = build(99, **params)
    assert not torch.equal(outputs(fresh)["out"], outputs(source)["out"])
    assert looks_like_official_deeplabv2(state)
    assert_same_outputs(load(state, params), source)


def test_main_and_aux_are_told_apart_by_input_channels(sources) -> None:
    _, state = sources["advent"]
    converted = convert_official_deeplabv2(state, build(**LAYOUTS["advent"][2]), "x.pth")
    assert converted["classifier.branches.0.weight"] is state["layer6.conv2d_list.0.weight"]
    assert converted["aux_classifier.branches.3.bias"] is state["layer5.conv2d_list.3.bias"]
    _, dacs = sources["dacs"]
    converted = load(dacs, LAYOUTS["dacs"][2]).state_dict()
    assert torch.equal(
        converted["classifier.branches.1.weight"], dacs["layer5.conv2d_list.1.weight"]
    )


def test_dataparallel_prefix_and_nesting(sources) -> None:
    source, state = sources["dacs"]
    prefixed = {f"module.{k}": v for k, v in state.items()}
    dacs_file = {"iteration": 10, "model": prefixed, "ema_model": {}, "config": {"a": 1}}
    params = LAYOUTS["dacs"][2]
    assert looks_like_official_deeplabv2(dacs_file)
    assert_same_outputs(load(dacs_file, params), source)
    assert_same_outputs(load({"state_dict": prefixed}, params), source)


def test_missing_num_batches_tracked_is_filled_from_the_model(sources) -> None:
    source, state = sources["fda"]
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert len(old) < len(state)
    model = build(**LAYOUTS["fda"][2])
    converted = convert_official_deeplabv2(old, model, "old.pth")
    assert converted.keys() == model.state_dict().keys()
    model.load_state_dict(converted)
    assert_same_outputs(model, source)


def test_four_stored_convs_into_two_branches_drops_convs_2_and_3(sources) -> None:
    _, state = sources["advent"]  # four trained-looking convs, as ADVENT/FDA store
    model = build(**LAYOUTS["adaptsegnet"][2])
    with pytest.warns(UserWarning, match="aspp_branches=2 drops them"):
        converted = convert_official_deeplabv2(state, model, "advent.pth")
    assert "classifier.branches.2.weight" not in converted
    model.load_state_dict(converted)


def test_ambiguous_four_convs_warn_and_spot_untrained_ones(sources) -> None:
    _, state = sources["adaptsegnet"]  # convs 2-3 still at the N(0, 0.01) init
    with pytest.warns(UserWarning, match="aspp_branches=2 for them.*look untrained"):
        convert_official_deeplabv2(state, build(**LAYOUTS["advent"][2]), "adaptsegnet.pth")


def test_error_missing_main_classifier(sources) -> None:
    _, state = sources["advent"]
    no_main = {k: v for k, v in state.items() if not k.startswith("layer6.")}
    with pytest.raises(CheckpointError, match="no main classifier"):
        convert_official_deeplabv2(no_main, build(**LAYOUTS["advent"][2]), "r.pth")


def test_error_num_classes_names_both_numbers(sources) -> None:
    _, state = sources["fda"]
    model = build(num_classes=7, **LAYOUTS["fda"][2])
    with pytest.raises(CheckpointError, match=r"r\.pth: its classifier predicts 5 classes.* 7"):
        convert_official_deeplabv2(state, model, "r.pth")


def test_error_aux_in_file_but_model_single_level(sources) -> None:
    _, state = sources["advent"]
    model = build(multi_level=False, aspp_branches=4)
    with pytest.raises(CheckpointError, match="model.params.multi_level=true"):
        convert_official_deeplabv2(state, model, "r.pth")


def test_error_model_multi_level_but_file_has_no_aux(sources) -> None:
    _, state = sources["fda"]
    model = build(multi_level=True, aspp_branches=4)
    with pytest.raises(CheckpointError, match="no aux classifier.*multi_level=false"):
        convert_official_deeplabv2(state, model, "r.pth")


def test_error_branch_count(sources) -> None:
    _, state = sources["fda"]
    two = {
        k: v for k, v in state.items() if ".conv2d_list.2." not in k and ".conv2d_list.3." not in k
    }
    with pytest.raises(CheckpointError, match="stores 2 ASPP convs.*aspp_branches=2"):
        convert_official_deeplabv2(two, build(**LAYOUTS["fda"][2]), "r.pth")
    gap = {k: v for k, v in state.items() if ".conv2d_list.2." not in k}
    with pytest.raises(CheckpointError, match="incomplete"):
        convert_official_deeplabv2(gap, build(**LAYOUTS["fda"][2]), "r.pth")


def test_error_backbone_mismatch_and_wrong_model(sources) -> None:
    _, state = sources["fda"]
    short = {k: v for k, v in state.items() if not k.startswith("layer3.5.")}
    with pytest.raises(CheckpointError, match="missing: encoder.layer3.5"):
        convert_official_deeplabv2(short, build(**LAYOUTS["fda"][2]), "r.pth")
    with pytest.raises(CheckpointError, match="model.arch=deeplabv2"):
        convert_official_deeplabv2(state, torch.nn.Linear(2, 2), "r.pth")


def test_init_file_is_refused_for_eval_but_loads_as_encoder_weights(
    sources, tmp_path, caplog
) -> None:
    source, state = sources["fda"]
    init = {f"Scale.{k}": v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    for index in range(4):  # the init's classifier: 21 (VOC) classes
        init[f"Scale.layer5.conv2d_list.{index}.weight"] = torch.randn(21, 2048, 3, 3)
        init[f"Scale.layer5.conv2d_list.{index}.bias"] = torch.zeros(21)
    assert looks_like_official_deeplabv2(init)
    with pytest.raises(CheckpointError, match="init file.*model.encoder_weights"):
        convert_official_deeplabv2(init, build(**LAYOUTS["fda"][2]), "init.pth")
    path = tmp_path / "DeepLab_resnet_pretrained_init.pth"
    torch.save(init, path)
    model = build(5, **LAYOUTS["fda"][2])
    classifier = model.classifier.state_dict()
    with caplog.at_level(logging.WARNING):
        load_encoder_weights(model.encoder, path)
    assert "keep their initial values" not in caplog.text  # only num_batches_tracked is absent
    assert "8 keys of" in caplog.text and "layer5.conv2d_list.0.weight" in caplog.text
    for key, value in source.encoder.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(model.encoder.state_dict()[key], value), key
    for key, value in model.classifier.state_dict().items():
        assert torch.equal(classifier[key], value)


def test_read_official_checkpoint_tells_formats_apart(sources, tmp_path) -> None:
    _, state = sources["adaptsegnet"]
    legacy = tmp_path / "legacy.pth"
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    read = read_official_checkpoint(legacy)
    assert read is not None and read.keys() == state.keys()
    segshift = tmp_path / "segshift.pt"
    torch.save(
        {"step": 1, "method": {"model.x": torch.zeros(1)}, "rng": np.random.get_state()}, segshift
    )
    assert read_official_checkpoint(segshift) is None
    plain = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, plain)
    assert read_official_checkpoint(plain) is None


def _cli_checkpoint(path: Path, layout: str, params: dict) -> None:
    """A 19-class official file whose main classifier predicts class 0 (road) everywhere."""
    model = build(3, num_classes=19, **params)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if "classifier" in name:
                tensor.zero_()
        model.classifier.branches[0].bias[0] = 10.0
    state = to_official(model.state_dict(), layout)
    for key in [k for k in state if k.endswith("num_batches_tracked")]:
        del state[key]  # as saved by PyTorch 0.3/0.4.0
    torch.save(state, path, _use_new_zipfile_serialization=False)


def cli_args(config: str, cityscapes: Path, checkpoint: Path, out: Path, *extra: str) -> list[str]:
    return [
        "eval",
        config,
        f"data.streams.source.root={cityscapes}",
        f"data.val.root={cityscapes}",
        f"output_dir={out.parent / 'runs'}",
        "data.num_workers=0",
        "data.val.resize=null",
        "model.encoder=resnet50",
        "model.normalization.preset=caffe",
        "model.align_corners=true",
        *extra,
        "--checkpoint",
        str(checkpoint),
        "--out",
        str(out),
    ]


def test_cli_eval_config_with_official_checkpoint(make_cityscapes, tmp_path, capsys) -> None:
    cityscapes = make_cityscapes()
    released = tmp_path / "GTA2Cityscapes_multi.pth"
    _cli_checkpoint(released, "adaptsegnet", LAYOUTS["adaptsegnet"][2])
    out = tmp_path / "eval"
    config = "recipes/gta5_cityscapes_source_only.yaml"
    args = cli_args(config, cityscapes, released, out, "model.params.aspp_branches=2")
    assert main(args) == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    iou = {c["class_name"]: c["iou"] for c in metrics["classes"]}
    # val mask rows: road 7, ignored 7, car 6, bicycle 6, sidewalk 6; all predicted road
    assert iou["road"] == pytest.approx(7 / 25)
    assert iou["car"] == 0.0 and iou["sidewalk"] == 0.0
    # the single-level file does not fit the multi-level recipe: a clear error, exit status 2
    single = tmp_path / "fda.pth"
    _cli_checkpoint(single, "fda", {"multi_level": False, "aspp_branches": 4})
    assert main(cli_args(config, cityscapes, single, out)) == 2
    assert "model.params.multi_level=false" in capsys.readouterr().err


def test_load_warns_when_normalisation_or_resizing_differ(sources) -> None:
    _, state = sources["fda"]
    model = build(**LAYOUTS["fda"][2])  # built directly: ImageNet normalisation, no align_corners
    with pytest.warns(UserWarning, match="preset=caffe.*align_corners=true"):
        load_official_deeplabv2(model, state, "fda.pth")


def test_read_eval_checkpoint_keeps_segshift_checkpoints(sources, tmp_path) -> None:
    path = tmp_path / "run" / "checkpoints" / "best.pt"
    path.parent.mkdir(parents=True)
    save_checkpoint(path, {"step": 3, "method": {"model.w": torch.ones(2)}, "rng": capture_rng()})
    state, origin = read_eval_checkpoint(tmp_path / "run")
    assert origin == path and state["step"] == 3 and "official" not in state
    assert eval_output_dir(state, origin) == tmp_path / "run" / "eval"
    released = tmp_path / "fda_gta2city.pth"
    torch.save(sources["fda"][1], released)
    state, origin = read_eval_checkpoint(released)
    assert state["official"].keys() == sources["fda"][1].keys()
    assert eval_output_dir(state, origin) == tmp_path / "fda_gta2city_eval"


def test_error_classifier_on_an_unknown_layer(sources) -> None:
    _, state = sources["fda"]
    odd = dict(state)
    for index in range(4):
        odd[f"layer6.conv2d_list.{index}.weight"] = torch.zeros(NUM_CLASSES, 512, 3, 3)
        odd[f"layer6.conv2d_list.{index}.bias"] = torch.zeros(NUM_CLASSES)
    with pytest.raises(CheckpointError, match=r"layer6.conv2d_list has input channels \[512\]"):
        convert_official_deeplabv2(odd, build(**LAYOUTS["fda"][2]), "r.pth")
