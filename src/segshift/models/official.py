"""Released checkpoints of the official DeepLab-v2 UDA code, loaded into segshift's `DeepLabV2`.

Sources (network definitions read from the official repositories): AdaptSegNet
(wasidennis/AdaptSegNet ``model/deeplab_multi.py``, ``model/deeplab.py``), ADVENT (valeoai/ADVENT
``advent/model/deeplabv2.py``), DACS (vikolss/DACS ``model/deeplabv2.py``), FDA (YanchaoYang/FDA
``model/deeplab.py``). Backbones use torchvision's ResNet names; each classifier is a
``Classifier_Module`` whose ``conv2d_list`` stores the four ASPP convs (dilation 6, 12, 18, 24).

Key mapping, after stripping ``module.`` and unwrapping ``state_dict`` / ``model`` (N = 5 or 6):

=========================================  ==================================================
official key                               segshift ``DeepLabV2`` key
=========================================  ==================================================
``conv1.*``, ``bn1.*``, ``layer1-4.*``     ``encoder.<same name>``
``layerN.conv2d_list.{i}.*``, 2048 in-ch   ``classifier.branches.{i}.*`` (main, on layer4)
``layerN.conv2d_list.{i}.*``, 1024 in-ch   ``aux_classifier.branches.{i}.*`` (on layer3)
absent ``*.num_batches_tracked``           the model's own value (PyTorch < 0.4.1 files)
=========================================  ==================================================

The role follows the input channels, not the name: ``layer5`` is the aux classifier in
AdaptSegNet/ADVENT but the only (main) one in DACS/FDA. Files store four convs even where the
forward sums only the first two (AdaptSegNet, DACS): an ``aspp_branches=2`` model takes convs 0-1.
``Scale.``-prefixed files are DeepLab-v2 *init* files, for ``model.encoder_weights``.
See docs/OFFICIAL_CHECKPOINTS.md.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segshift.errors import CheckpointError
from segshift.models.deeplabv2 import DeepLabV2

_CLASSIFIER_KEY = re.compile(r"^(layer5|layer6)\.conv2d_list\.(\d+)\.(weight|bias)$")
_BACKBONE_PREFIXES = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")
_ROLES = {2048: "classifier", 1024: "aux_classifier"}
_DEPTHS = {6: "resnet50", 23: "resnet101"}  # blocks in layer3
_CAFFE_MEAN = (104.00698793, 116.66876762, 122.67891434)  # BGR, AdaptSegNet IMG_MEAN


def unwrap_state_dict(obj: Any) -> dict[str, torch.Tensor] | None:
    """The tensors of a state dict nested under ``state_dict`` / ``model`` (DACS), or None."""
    while isinstance(obj, Mapping) and any(
        isinstance(obj.get(k), Mapping) for k in ("state_dict", "model")
    ):
        obj = obj["state_dict"] if isinstance(obj.get("state_dict"), Mapping) else obj["model"]
    if not isinstance(obj, Mapping):
        return None
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    while state and all(k.startswith("module.") for k in state):  # DataParallel, maybe nested
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def looks_like_official_deeplabv2(state: Mapping[str, Any]) -> bool:
    """Whether `state` (a state dict, possibly wrapped) has the official DeepLab-v2 layout:
    a torchvision-named ResNet plus ``layer5``/``layer6.conv2d_list`` classifiers (a trained
    release or a ``Scale.``-prefixed init file)."""
    keys = {k.removeprefix("Scale.") for k in (unwrap_state_dict(state) or {})}
    return "conv1.weight" in keys and any(_CLASSIFIER_KEY.match(k) for k in keys)


def _untrained(weight: torch.Tensor) -> bool:
    """Still at the official N(0, 0.01) init: a conv that the forward never used is not updated."""
    std, mean = weight.float().std().item(), weight.float().mean().item()
    return abs(std - 0.01) < 3e-4 and abs(mean) < 3e-4


def _warn_branches(convs: list[tuple], branches: int, source: str) -> None:
    """Four stored convs fit a 2- and a 4-branch model: warn, judging whether convs 2-3 trained."""
    trained, unused = not _untrained(convs[0][0]), all(_untrained(convs[i][0]) for i in (2, 3))
    if branches == 4:
        hint = " Convs 2-3 of this file look untrained, as in those." if trained and unused else ""
        warnings.warn(
            f"{source} stores 4 ASPP convs: AdaptSegNet and DACS releases sum only the first two "
            f"(set model.params.aspp_branches=2 for them), ADVENT and FDA all four.{hint}",
            stacklevel=3,
        )
    elif trained and not unused:
        warnings.warn(
            f"{source}: convs 2-3 of its classifier look trained, as in ADVENT/FDA releases that "
            "sum all four: model.params.aspp_branches=2 drops them (set 4 for those)",
            stacklevel=3,
        )


def _classifiers(state: Mapping[str, torch.Tensor], source: str) -> dict[str, list[tuple]]:
    """{"classifier"/"aux_classifier": [(weight, bias) per stored conv]}, by input channels."""
    groups: dict[str, dict[int, dict[str, torch.Tensor]]] = {}
    for key, value in state.items():
        if match := _CLASSIFIER_KEY.match(key):
            name, index, kind = match.groups()
            groups.setdefault(name, {}).setdefault(int(index), {})[kind] = value
    found: dict[str, list[tuple]] = {}
    for name, convs in sorted(groups.items()):
        if sorted(convs) != list(range(len(convs))) or any(len(c) != 2 for c in convs.values()):
            raise CheckpointError(
                f"{source}: {name}.conv2d_list is incomplete (convs {sorted(convs)})"
            )
        channels = sorted({c["weight"].shape[1] for c in convs.values()})
        role = _ROLES.get(channels[0]) if len(channels) == 1 else None
        if role is None:
            raise CheckpointError(
                f"{source}: {name}.conv2d_list has input channels {channels}; expected 2048 "
                "(main classifier on layer4) or 1024 (aux classifier on layer3)"
            )
        if role in found:
            raise CheckpointError(f"{source}: layer5 and layer6 both feed on the same layer")
        found[role] = [(convs[i]["weight"], convs[i]["bias"]) for i in range(len(convs))]
    return found


def convert_official_deeplabv2(
    state: Mapping[str, Any], model: nn.Module, source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """A complete state dict for `model` (a segshift DeepLabV2) from an official checkpoint.

    `state` may be wrapped (``module.``, ``state_dict``/``model``); `source` names the file in
    errors. Raises CheckpointError on any mismatch of layout, classes, depth or branch count.
    """
    flat = unwrap_state_dict(state)
    if not flat:
        raise CheckpointError(f"{source} holds no state dict")
    if any(k.startswith("Scale.") for k in flat):
        raise CheckpointError(
            f"{source} is a DeepLab-v2 init file (keys start with 'Scale.'): its classifier is not "
            "trained for this label space; pass it as model.encoder_weights to train from it"
        )
    if not isinstance(model, DeepLabV2):
        raise CheckpointError(
            f"{source} is an official DeepLab-v2 checkpoint: set model.arch=deeplabv2"
        )
    expected = model.state_dict()
    found = _classifiers(flat, source)
    if "classifier" not in found:
        raise CheckpointError(
            f"{source} has no main classifier (layer5/layer6.conv2d_list with 2048 input channels)"
        )
    result: dict[str, torch.Tensor] = {}
    main: tuple[list[tuple], int] = ([], 0)
    for role, convs in found.items():
        module = getattr(model, role, None)
        if module is None:
            raise CheckpointError(
                f"{source} has an aux classifier (on layer3) but the model has none: set "
                "model.params.multi_level=true"
            )
        file_classes, model_classes = convs[0][0].shape[0], module.branches[0].out_channels
        if file_classes != model_classes:
            raise CheckpointError(
                f"{source}: its {role} predicts {file_classes} classes, the model (the label "
                f"space of data.val) {model_classes}"
            )
        branches, stored = len(module.branches), len(convs)
        if stored != branches and (stored, branches) != (4, 2):
            raise CheckpointError(
                f"{source} stores {stored} ASPP convs per classifier, the model has {branches}"
                + (": set model.params.aspp_branches=2" if stored == 2 else "")
            )
        if role == "classifier":
            main = (convs, branches)
        for index in range(branches):
            result[f"{role}.branches.{index}.weight"] = convs[index][0]
            result[f"{role}.branches.{index}.bias"] = convs[index][1]
    if getattr(model, "aux_classifier", None) is not None and "aux_classifier" not in found:
        raise CheckpointError(
            f"{source} has no aux classifier (1024 input channels): set model.params.multi_level=false"
        )
    extra = []
    for key, value in flat.items():
        if key.startswith(_BACKBONE_PREFIXES):
            result[f"encoder.{key}"] = value
        elif not _CLASSIFIER_KEY.match(key):
            extra.append(key)
    missing = [k for k in expected if k not in result and not k.endswith("num_batches_tracked")]
    extra += [k for k in result if k not in expected]
    if missing or extra:
        blocks = {k.split(".")[1] for k in flat if k.startswith("layer3.")}
        depth = _DEPTHS.get(len(blocks), f"{len(blocks)} layer3 blocks")
        raise CheckpointError(
            f"{source} does not fit the model (the file's backbone is {depth}: check "
            f"model.encoder); missing: {', '.join(missing[:5]) or '-'}; unexpected: "
            f"{', '.join(extra[:5]) or '-'}"
        )
    for key, value in expected.items():
        if key not in result:  # num_batches_tracked, absent from old files
            result[key] = value
        elif result[key].shape != value.shape:
            raise CheckpointError(
                f"{source}: {key} has shape {tuple(result[key].shape)}, the model "
                f"{tuple(value.shape)}"
            )
    if len(main[0]) == 4:  # warn only about a file that loads
        _warn_branches(*main, source)
    return result


def read_official_checkpoint(path: str | Path) -> dict[str, torch.Tensor] | None:
    """The unwrapped state dict in `path` if it has the official layout, else None (e.g. a
    segshift checkpoint, which holds more than weights). Reads with ``weights_only=True``."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception:  # noqa: BLE001 - not a plain weights file: the caller tries other formats
        return None
    state = unwrap_state_dict(obj)
    return state if state and looks_like_official_deeplabv2(state) else None


def load_official_deeplabv2(model: nn.Module, state: Mapping[str, Any], source: str) -> None:
    """Convert `state` and load it into `model`; warn when the model's input normalisation or
    logit resizing differs from the official releases' (Caffe BGR 0-255, align_corners=True)."""
    model.load_state_dict(convert_official_deeplabv2(state, model, source))
    norm = getattr(getattr(model, "input_norm", None), "norm", None)
    fixes = []
    if norm is not None and (
        (norm.channel_order, norm.scale, tuple(norm.std)) != ("bgr", 255.0, (1.0, 1.0, 1.0))
        or any(abs(a - b) > 1.0 for a, b in zip(norm.mean, _CAFFE_MEAN))
    ):
        fixes.append("model.normalization.preset=caffe (BGR, 0-255, mean subtracted)")
    if getattr(model, "align_corners", True) is False:
        fixes.append("model.align_corners=true")
    if fixes:
        warnings.warn(
            f"{source}: the official DeepLab-v2 releases were evaluated with {' and '.join(fixes)}",
            UserWarning,
            stacklevel=2,
        )
