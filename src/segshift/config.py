"""Run configuration: dataclass schemas, YAML files with one level of ``base:``, dotted overrides.

Example::

    cfg = load_config("configs/demo/source_only.yaml", ["train.iters=2000", "model.encoder=resnet18"])
    cfg.train.iters  # 2000

Unknown keys and wrong types raise :class:`ConfigError` naming the key's full path, with a
did-you-mean suggestion. ``save_config`` writes the resolved config into a run directory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from segshift.errors import ConfigError
from segshift.fileio import atomic_write_bytes
from segshift.registry import did_you_mean


@dataclass
class DatasetConfig:
    """One dataset: where it is, which part of it, and how its samples are augmented."""

    name: str = "folder"
    root: str = "???"
    split: str = "train"
    labeled: bool = True
    domain: str = ""
    n_labeled: int | None = None
    split_file: str | None = None
    subset_seed: int = 0
    batch_size: int = 8
    resize: list[int] | None = None
    crop_size: list[int] | None = None
    scale_range: list[float] = field(default_factory=lambda: [1.0, 1.0])
    hflip: bool = False
    photometric: bool = False
    # Image resampling for resize and random scale: bilinear | bicubic | area | nearest.
    interpolation: str = "bilinear"
    # Image-level augmentation policy (off by default): "randaugment" draws `policy_ops`
    # photometric ops of strength `policy_magnitude` (0-10) on the image only; with
    # `policy_geometric` also joint geometric ops (affine) on image and mask.
    policy: str | None = None
    policy_ops: int = 2
    policy_magnitude: int = 9
    policy_geometric: bool = False
    # Rare-class sampling (DAFormer): draw a class c with softmax((1 - f_c) / T), then an image
    # with > rcs_min_pixels pixels of c; re-crop until c covers rcs_min_pixels * min_crop_ratio.
    rcs_temperature: float | None = None
    rcs_min_pixels: int = 3000
    rcs_min_crop_ratio: float = 0.5
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Training streams by name (source, target, labeled, unlabeled) and the validation set."""

    streams: dict[str, DatasetConfig] = field(default_factory=dict)
    val: DatasetConfig | None = None
    num_workers: int = 2


@dataclass
class NormalizationConfig:
    """How an image enters the network: ``(x[channel_order] * scale - mean) / std``.

    Batches hold RGB images in [0, 1]; the model normalises them itself, so training, evaluation,
    prediction and pseudo-labelling all use the same values. ``preset: auto`` follows the pretrained
    weights of the encoder (timm/smp publish their statistics; DeepLab-v2 init files are Caffe BGR
    0-255 with mean subtraction); ``imagenet``, ``caffe``, ``inception`` (0.5/0.5) and ``none`` are
    fixed presets. Fields given explicitly win over the preset's. A run's config.yaml records the
    resolved values.
    """

    preset: str = "auto"
    mean: list[float] | None = None
    std: list[float] | None = None
    channel_order: str | None = None  # rgb | bgr
    scale: float | None = None  # 1.0: pixels in [0, 1]; 255.0: pixels in [0, 255]


@dataclass
class ModelConfig:
    arch: str = "deeplabv3plus"
    encoder: str = "resnet50"
    encoder_weights: str | None = None
    # What the recipe's paper initialises from and where to get it: with it set, training from
    # random weights (encoder_weights null) warns loudly, and a missing file's error quotes it.
    expected_weights: str | None = None
    normalization: NormalizationConfig = field(default_factory=NormalizationConfig)
    # Resizing logits to the label/input size: True in the DeepLab-v2 UDA line (AdaptSegNet,
    # ADVENT, FDA, DACS), False in mmseg/DAFormer and smp.
    align_corners: bool = False
    # Start from a trained segshift model: a run directory (its export/), an export directory or
    # a model.safetensors, loaded into the whole network after it is built (a student starting
    # from its teacher). Resuming the run loads its own checkpoint over it.
    init_from: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class MethodConfig:
    """The training method by registry name; ``params`` is checked against the method's schema."""

    name: str = "supervised"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    name: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    head_lr_mult: float = 1.0
    clip_grad_norm: float | None = None
    # The official DeepLab-v2 trainers (AdaptSegNet, ADVENT, DACS, FDA) list each backbone
    # parameter once per module that contains it, so SGD updates it 3-4 times per step.
    official_param_repeats: bool = False


@dataclass
class ScheduleConfig:
    """Poly decay ``(1 - t/T)^power`` after a linear warmup from ``warmup_ratio * lr``."""

    name: str = "poly"
    power: float = 0.9
    warmup_iters: int = 0
    warmup_ratio: float = 1e-6
    min_lr: float = 0.0


@dataclass
class TrainConfig:
    iters: int = 1000
    stop_at: int | None = None  # checkpoint and stop early (time-limited jobs); resume goes on
    eval_every: int = 500
    ckpt_every: int = 500
    log_every: int = 20
    precision: str = "32-true"
    accelerator: str = "auto"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    sync_batchnorm: bool = False  # BatchNorm statistics across processes (UniMatch, U2PL, CPS)
    max_nonfinite: int = 3
    deterministic: bool = False
    resume: bool = True
    progress: str = "auto"


@dataclass
class EvalConfig:
    mode: str = "whole"  # whole | slide (mmseg: windows averaged) | slide_unimatch
    crop_size: list[int] | None = None
    stride: list[int] | None = None
    flip: bool = False
    scales: list[float] = field(default_factory=lambda: [1.0])
    subset: str | None = None


@dataclass
class Config:
    name: str = "run"
    output_dir: str = "runs"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def packaged_configs() -> Path:
    """Directory of the YAML configs shipped with the package."""
    return Path(str(resources.files("segshift") / "configs"))


def resolve_config_path(path: str | Path) -> Path:
    """A config path as given, or a name under the packaged configs (``demo/source_only``)."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    for name in (str(path), f"{path}.yaml"):
        packaged = packaged_configs() / name
        if packaged.is_file():
            return packaged
    raise ConfigError(f"config file not found: {path} (neither a file nor a packaged config)")


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def _schema_keys(schema: Any, dotted: str) -> list[str]:
    """The valid keys beside ``dotted`` in the schema (for did-you-mean)."""
    node: Any = schema
    for part in dotted.split(".")[:-1]:
        if dataclasses.is_dataclass(node):
            hints = {f.name: f for f in dataclasses.fields(node)}
            if part not in hints:
                return []
            value = getattr(node, part) if not isinstance(node, type) else None
            node = value if value is not None else hints[part].default_factory()  # type: ignore[misc]
        elif isinstance(node, dict):
            node = node.get(part, DatasetConfig())
        else:
            return []
    return [f.name for f in dataclasses.fields(node)] if dataclasses.is_dataclass(node) else []


def _wrap_omegaconf_error(err: OmegaConfBaseException, schema: Any, origin: str) -> ConfigError:
    key = getattr(err, "full_key", "") or ""
    message = str(err).splitlines()[0]
    if "Key" in type(err).__name__ or "not in struct" in message or "Missing key" in message:
        leaf = key.split(".")[-1]
        hint = did_you_mean(leaf, _schema_keys(schema, key))
        return ConfigError(f"{origin}: unknown config key '{key}'{hint}")
    return ConfigError(f"{origin}: bad value for config key '{key}': {message}")


def merge_into_schema(schema: Any, *layers: Any, origin: str = "config") -> DictConfig:
    """Merge plain mappings onto a structured schema, turning OmegaConf errors into ConfigError."""
    try:
        merged = OmegaConf.structured(schema)
        for layer in layers:
            merged = OmegaConf.merge(merged, layer)
    except OmegaConfBaseException as err:
        raise _wrap_omegaconf_error(err, schema, origin) from None
    return merged  # type: ignore[return-value]


def is_pipeline_config(path: str | Path) -> bool:
    """True for a config with a top-level ``pipeline:`` key (``segshift pipeline``'s, not a run's)."""
    return "pipeline" in read_yaml(resolve_config_path(path))


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> DictConfig:
    """Read a YAML config (with at most one level of ``base:``) and apply dotted overrides."""
    layers: list[Any] = []
    origin = "overrides"
    if path is not None:
        file = resolve_config_path(path)
        origin = str(file)
        data = read_yaml(file)
        base = data.pop("base", None)
        if base is not None:
            base_file = (file.parent / base) if not Path(base).is_absolute() else Path(base)
            if not base_file.is_file():
                base_file = resolve_config_path(base)
            base_data = read_yaml(base_file)
            if "base" in base_data:
                raise ConfigError(
                    f"{base_file}: a base config cannot have its own 'base:' (one level at most)"
                )
            layers.append(merge_into_schema(Config(), base_data, origin=str(base_file)))
        layers.append(data)
    merged = merge_into_schema(Config(), *layers, origin=origin)
    if overrides:
        for item in overrides:
            if "=" not in item:
                raise ConfigError(
                    f"override '{item}' must look like key=value (e.g. train.iters=100)"
                )
        try:
            dotlist = OmegaConf.from_dotlist(list(overrides))
        except (OmegaConfBaseException, yaml.YAMLError) as err:
            raise ConfigError(f"bad override: {' '.join(str(err).split())}") from None
        merged = merge_into_schema(Config(), merged, dotlist, origin="command line")
    return merged


def check_required(cfg: DictConfig, skip: tuple[str, ...] = ()) -> None:
    """Fail with the key's path if a required value ('???') was never given.

    ``skip``: key prefixes not needed here (evaluation does not read ``data.streams``).
    """
    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith(skip))
    if missing:
        raise ConfigError(f"missing required config value(s): {', '.join(missing)}")


def to_dataclass(params: dict[str, Any] | DictConfig, schema: type, prefix: str) -> Any:
    """Validate a free-form ``params`` mapping against a dataclass schema (e.g. a method's)."""
    raw = OmegaConf.to_container(params, resolve=True) if isinstance(params, DictConfig) else params
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), raw or {})
    except OmegaConfBaseException as err:
        key = f"{prefix}.{getattr(err, 'full_key', '')}".rstrip(".")
        leaf = key.split(".")[-1]
        if "Key" in type(err).__name__:
            names = [f.name for f in dataclasses.fields(schema)]
            raise ConfigError(f"unknown config key '{key}'{did_you_mean(leaf, names)}") from None
        raise ConfigError(f"bad value for config key '{key}': {str(err).splitlines()[0]}") from None
    return OmegaConf.to_object(merged)


def save_config(cfg: DictConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (temp file + rename)."""
    atomic_write_bytes(path, OmegaConf.to_yaml(cfg, resolve=True).encode())


def config_diff(old: Any, new: Any) -> list[str]:
    """Dotted keys whose values differ between two configs (added or removed keys included)."""

    def flat(node: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(node, dict):
            items: dict[str, Any] = {}
            for key, value in node.items():
                items.update(flat(value, f"{prefix}{key}."))
            return items
        return {prefix.rstrip("."): node}

    a = flat(OmegaConf.to_container(old, resolve=True) if isinstance(old, DictConfig) else old)
    b = flat(OmegaConf.to_container(new, resolve=True) if isinstance(new, DictConfig) else new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
