"""Input normalisation that follows the pretrained weights, applied inside every segmentation model.

Batches carry RGB images in [0, 1] (``segshift.transforms``); a model turns them into what its
weights were trained on: ``(x[order] * scale - mean) / std``. Keeping this inside the model means
training, evaluation, prediction, pseudo-labelling, exported models and batch augmentation (which
works on plain [0, 1] images) cannot disagree.

Presets (mean and std in the input scale):

=========  =====  =====  ==============================  ========================================
preset     order  scale  mean / std                      used by
=========  =====  =====  ==============================  ========================================
imagenet   RGB    1      0.485 0.456 0.406 / 0.229 ...   torchvision, most smp/timm encoders
caffe      BGR    255    104.008 116.669 122.679 / 1     DeepLab-v2 inits (AdaptSegNet, ADVENT,
                                                         FDA, DACS); Caffe-converted ResNets
inception  RGB    1      0.5 / 0.5                       Inception/Xception, ``*.tf_in1k`` timm
                                                         weights, EfficientNet AdvProp
none       RGB    1      0 / 1                           raw [0, 1] input
=========  =====  =====  ==============================  ========================================

``auto`` resolves from the model config: a ``tu-`` (timm) encoder takes its pretrained config's
mean/std; an smp encoder the statistics its weights were published with; DeepLab-v2 with a local
init file ``caffe`` (every official DeepLab-v2 init is Caffe-converted), with torchvision's
``imagenet`` weights or none ``imagenet``.

Example::

    norm = resolve_normalization(cfg.model)  # Normalization(mean=(104.0..), order="bgr", ...)
    model.input_norm = InputNorm(norm)
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from segshift.errors import ConfigError

CAFFE_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)  # AdaptSegNet / ADVENT IMG_MEAN


@dataclass(frozen=True)
class Normalization:
    """Resolved values: ``(x[channels in order] * scale - mean) / std`` with x RGB in [0, 1]."""

    preset: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: str = "rgb"
    scale: float = 1.0

    def as_config(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "mean": list(self.mean),
            "std": list(self.std),
            "channel_order": self.channel_order,
            "scale": self.scale,
        }


PRESETS = {
    "imagenet": Normalization("imagenet", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "caffe": Normalization("caffe", CAFFE_MEAN_BGR, (1.0, 1.0, 1.0), "bgr", 255.0),
    "inception": Normalization("inception", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "none": Normalization("none", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}

# smp's own encoders whose published weights do not use ImageNet statistics (smp >= 0.5 keeps
# these in hub config files; they are copied here so resolution works offline and never depends
# on what happens to be cached).
_DPN = Normalization(
    "dpn",
    (124 / 255, 117 / 255, 104 / 255),
    (1 / (0.0167 * 255),) * 3,  # type: ignore[arg-type]
)
_SMP_SPECIAL = {
    ("inceptionv4", None): PRESETS["inception"],
    ("inceptionresnetv2", None): PRESETS["inception"],
    ("xception", None): PRESETS["inception"],
    ("dpn", None): _DPN,
    ("efficientnet-", "advprop"): PRESETS["inception"],
    ("timm-efficientnet-", "advprop"): PRESETS["inception"],
}


def _encoder_default(model_cfg: Any) -> Normalization:
    """What the encoder's pretrained weights expect (see the module docstring)."""
    arch, encoder, weights = model_cfg.arch, model_cfg.encoder, model_cfg.encoder_weights
    if arch == "deeplabv2":
        local_file = weights is not None and weights != "imagenet"
        return PRESETS["caffe"] if local_file else PRESETS["imagenet"]
    if encoder.startswith("tu-"):
        import timm

        try:
            pretrained = timm.get_pretrained_cfg(encoder[3:])
        except (RuntimeError, ValueError):
            pretrained = None
        if pretrained is None or not getattr(pretrained, "mean", None):
            return PRESETS["imagenet"]
        mean, std = tuple(pretrained.mean), tuple(pretrained.std)
        for preset in PRESETS.values():
            if preset.channel_order == "rgb" and (preset.mean, preset.std) == (mean, std):
                return preset
        return Normalization(f"timm:{encoder[3:]}", mean, std)  # type: ignore[arg-type]
    for (prefix, tag), norm in _SMP_SPECIAL.items():
        if encoder.startswith(prefix) and (tag is None or tag == weights):
            return norm
    return PRESETS["imagenet"]


_AUTO = SimpleNamespace(preset="auto", mean=None, std=None, channel_order=None, scale=None)


def resolve_normalization(model_cfg: Any) -> Normalization:
    """The normalisation of ``model_cfg`` (a ModelConfig): its preset, then its explicit fields."""
    cfg = getattr(model_cfg, "normalization", None) or _AUTO
    if cfg.preset == "auto":
        base = _encoder_default(model_cfg)
    elif cfg.preset in PRESETS:
        base = PRESETS[cfg.preset]
    elif None in (cfg.mean, cfg.std, cfg.channel_order, cfg.scale):
        known = ", ".join(["auto", *PRESETS])
        raise ConfigError(
            f"model.normalization.preset: unknown '{cfg.preset}' (known: {known}; any other name "
            "needs mean, std, channel_order and scale)"
        )
    else:  # "custom", or a resolved name recorded in a run's config.yaml ("timm:<model>")
        base = Normalization(cfg.preset, cfg.mean, cfg.std, cfg.channel_order, float(cfg.scale))
    mean = tuple(cfg.mean) if cfg.mean is not None else base.mean
    std = tuple(cfg.std) if cfg.std is not None else base.std
    order = cfg.channel_order if cfg.channel_order is not None else base.channel_order
    scale = float(cfg.scale) if cfg.scale is not None else base.scale
    for key, values in (("mean", mean), ("std", std)):
        if len(values) != 3:
            raise ConfigError(f"model.normalization.{key}: needs 3 values, got {list(values)}")
    if min(std) <= 0:
        raise ConfigError(f"model.normalization.std: must be positive, got {list(std)}")
    if order not in ("rgb", "bgr"):
        raise ConfigError(f"model.normalization.channel_order: 'rgb' or 'bgr', not '{order}'")
    if scale <= 0:
        raise ConfigError(f"model.normalization.scale: must be positive, got {scale}")
    same = (mean, std, order, scale) == (
        tuple(base.mean),
        tuple(base.std),
        base.channel_order,
        base.scale,
    )
    return Normalization(base.preset if same else "custom", mean, std, order, scale)  # type: ignore[arg-type]


class InputNorm(nn.Module):
    """Maps RGB [0, 1] images (B, 3, H, W) to the network's input space.

    The constants are kept outside ``state_dict`` and ``buffers()``: checkpoints (segshift's and
    the official ones) stay as they are, and EMA updates never touch them. They are cached per
    device and dtype.
    """

    def __init__(self, norm: Normalization = PRESETS["imagenet"]) -> None:
        super().__init__()
        self.norm = norm
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def _constants(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (x.device, x.dtype)
        if key not in self._cache:
            # x * (scale / std) - mean / std, folded into one multiply-add.
            norm = self.norm
            gain = torch.tensor([norm.scale / s for s in norm.std], dtype=x.dtype)
            shift = torch.tensor([m / s for m, s in zip(norm.mean, norm.std)], dtype=x.dtype)
            self._cache[key] = (
                gain.view(1, 3, 1, 1).to(x.device),
                shift.view(1, 3, 1, 1).to(x.device),
            )
        return self._cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W), got {tuple(x.shape)}")
        if self.norm.channel_order == "bgr":
            x = x.flip(1)
        gain, shift = self._constants(x)
        return torch.addcmul(-shift, x, gain)

    def extra_repr(self) -> str:
        n = self.norm
        return f"preset={n.preset}, order={n.channel_order}, scale={n.scale}, mean={n.mean}, std={n.std}"


def freeze_normalization(model_cfg: Any) -> Normalization:
    """Write the resolved normalisation into ``model_cfg.normalization`` and return it.

    Called before a run's config is saved and before ``encoder_weights`` is dropped for loading a
    checkpoint (``auto`` depends on the weights), so a trained model is always fed as it was
    trained.
    """
    norm = resolve_normalization(model_cfg)
    for key, value in norm.as_config().items():
        setattr(model_cfg.normalization, key, value)
    return norm
