"""Run configuration: dataclass schemas, YAML files with ``base:`` chains, dotted overrides.

Example::

    cfg = load_config("configs/demo/source_only.yaml", ["train.iters=2000", "model.encoder=resnet18"])
    cfg.train.iters  # 2000

Unknown keys and wrong types raise :class:`ConfigError` naming the key's full path, with a
did-you-mean suggestion. ``save_config`` writes the resolved config into a run directory.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from segshift.errors import ConfigError
from segshift.fileio import atomic_write_bytes
from segshift.registry import did_you_mean

# --- value checks ------------------------------------------------------------------------------
# Each schema field may carry a Check in its metadata; ``validate`` walks any schema (a run's
# Config, a pipeline's, a DatasetConfig) and applies them, so a new key declared with
# ``checked(...)`` is validated wherever configs are loaded, with no code elsewhere.

MAX_SIDE = 8192  # pixels: larger crops/windows only end in an allocation failure


@dataclass(frozen=True)
class Check:
    """A predicate on a field's plain value and the valid range it stands for (for messages)."""

    ok: Callable[[Any], bool]
    expected: str


def checked(default: Any = dataclasses.MISSING, *, check: Check, factory: Any = None) -> Any:
    """A dataclass field whose value must pass ``check``."""
    if factory is not None:
        return field(default_factory=factory, metadata={"check": check})
    return field(default=default, metadata={"check": check})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def at_least(low: int, optional: bool = False) -> Check:
    text = f"an integer >= {low}" + (" or null" if optional else "")
    return Check(lambda v: (optional and v is None) or (_is_int(v) and v >= low), text)


def number_at_least(low: float, optional: bool = False, above: bool = False) -> Check:
    text = f"a number {'>' if above else '>='} {low}" + (" or null" if optional else "")

    def ok(v: Any) -> bool:
        if v is None:
            return optional
        return _is_number(v) and (v > low if above else v >= low)

    return Check(ok, text)


def number_between(low: float, high: float) -> Check:
    return Check(lambda v: _is_number(v) and low <= v <= high, f"a number in [{low}, {high}]")


def one_of(*choices: Any, optional: bool = False) -> Check:
    text = "one of " + ", ".join(str(c) for c in choices) + (" or null" if optional else "")
    return Check(lambda v: (optional and v is None) or v in choices, text)


def size_pair(optional: bool = True) -> Check:
    """``[height, width]``: two integers in 1..MAX_SIDE (crop sizes, windows, resizes)."""
    text = f"[height, width] with each in 1..{MAX_SIDE}" + (" or null" if optional else "")

    def ok(v: Any) -> bool:
        if v is None:
            return optional
        return (
            isinstance(v, list)
            and len(v) == 2
            and all(_is_int(s) and 1 <= s <= MAX_SIDE for s in v)
        )

    return Check(ok, text)


def _scale_range_ok(v: Any) -> bool:
    return (
        isinstance(v, list)
        and len(v) == 2
        and all(_is_number(s) for s in v)
        and 0 < v[0] <= v[1] <= 10
    )


def _scales_ok(v: Any) -> bool:
    return isinstance(v, list) and len(v) > 0 and all(_is_number(s) and 0 < s <= 10 for s in v)


def _betas_ok(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(_is_number(b) and 0 <= b < 1 for b in v)


def _rgb_ok(v: Any) -> bool:
    return v is None or (isinstance(v, list) and len(v) == 3 and all(_is_number(x) for x in v))


def _std_ok(v: Any) -> bool:
    return _rgb_ok(v) and (v is None or all(x > 0 for x in v))


def _devices_ok(v: Any) -> bool:
    """Lightning's ``devices``: a count >= 1, -1 (all), "auto", "0,1" or a list of indices."""
    if _is_int(v):
        return v >= 1 or v == -1
    if isinstance(v, str):
        text = v.strip()
        if text == "auto":
            return True
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if len(parts) == 1:
            return parts[0].lstrip("-").isdigit() and (int(parts[0]) >= 1 or int(parts[0]) == -1)
        return bool(parts) and all(p.isdigit() for p in parts)
    if isinstance(v, list):
        return bool(v) and all(_is_int(i) and i >= 0 for i in v) and len(set(v)) == len(v)
    return False


def _threads_ok(v: Any) -> bool:
    return v == "auto" or (_is_int(v) and v >= 1)


PRECISIONS = (
    "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true",
    "transformer-engine", "transformer-engine-float16", "32", "16", "bf16", "64",
)  # fmt: skip
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
EVAL_MODES = ("whole", "slide", "slide_unimatch")
# The label-free scores of segshift.evaluation.scores (named here, below it, so that configs can
# be checked at load time): higher = better predicted target mIoU.
SCORE_NAMES = ("entropy", "infomax", "agreement", "class_shift", "snd", "mixval", "atc")


# Keys of a dataset node that belong to its stream: a `concat` part cannot set them.
STREAM_KEYS = (
    "batch_size", "resize", "crop_size", "scale_range", "hflip", "photometric", "interpolation",
    "policy", "policy_ops", "policy_magnitude", "policy_geometric", "rcs_temperature",
    "rcs_min_pixels", "rcs_min_crop_ratio",
)  # fmt: skip


@dataclass
class DatasetConfig:
    """One dataset: where it is, which part of it, and how its samples are augmented."""

    name: str = "folder"
    root: str = "???"
    split: str = "train"
    labeled: bool = True
    domain: str = ""
    n_labeled: int | None = checked(None, check=at_least(1, optional=True))
    split_file: str | None = None
    subset_seed: int = checked(0, check=at_least(0))
    # Keep the samples *not* in the n_labeled subset: the unlabeled rest of a semi-supervised
    # split (the same n_labeled and subset_seed as the labeled stream give disjoint halves).
    complement: bool = False
    batch_size: int = checked(8, check=at_least(1))
    resize: list[int] | None = checked(None, check=size_pair())
    crop_size: list[int] | None = checked(None, check=size_pair())
    scale_range: list[float] = checked(
        check=Check(_scale_range_ok, "[low, high] with 0 < low <= high <= 10"),
        factory=lambda: [1.0, 1.0],
    )
    hflip: bool = False
    photometric: bool = False
    # Image resampling for resize and random scale: bilinear | bicubic | area | nearest.
    interpolation: str = checked("bilinear", check=one_of("bilinear", "bicubic", "area", "nearest"))
    # Image-level augmentation policy (off by default): "randaugment" draws `policy_ops`
    # photometric ops of strength `policy_magnitude` (0-10) on the image only; with
    # `policy_geometric` also joint geometric ops (affine) on image and mask. "autoaugment":
    # torchvision's ImageNet AutoAugment policy, its shear/translate/rotate on the mask too.
    policy: str | None = checked(None, check=one_of("randaugment", "autoaugment", optional=True))
    policy_ops: int = checked(2, check=at_least(0))
    policy_magnitude: int = checked(9, check=number_between(0, 10))
    policy_geometric: bool = False
    # Rare-class sampling (DAFormer): draw a class c with softmax((1 - f_c) / T), then an image
    # with > rcs_min_pixels pixels of c; re-crop until c covers rcs_min_pixels * min_crop_ratio.
    rcs_temperature: float | None = checked(
        None, check=number_at_least(0, optional=True, above=True)
    )
    rcs_min_pixels: int = checked(3000, check=at_least(0))
    rcs_min_crop_ratio: float = checked(0.5, check=number_at_least(0))
    options: dict[str, Any] = field(default_factory=dict)
    # More datasets read as part of this one (e.g. GTA5 + its CycleGAN translation): each entry's
    # keys replace this node's (`- {root: /data/cyclegta}` reads the same dataset type, split and
    # options from another root); augmentation and batching stay this node's.
    concat: Any = None  # checked by _concat_part_problem


@dataclass
class DataConfig:
    """Training streams by name (source, target, labeled, unlabeled) and the validation set."""

    streams: dict[str, DatasetConfig] = field(default_factory=dict)
    val: DatasetConfig | None = None
    num_workers: int = checked(2, check=at_least(0))


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
    mean: list[float] | None = checked(None, check=Check(_rgb_ok, "[r, g, b] numbers or null"))
    std: list[float] | None = checked(None, check=Check(_std_ok, "[r, g, b] numbers > 0 or null"))
    channel_order: str | None = checked(None, check=one_of("rgb", "bgr", optional=True))
    scale: float | None = checked(
        None, check=number_at_least(0, optional=True, above=True)
    )  # 1.0: pixels in [0, 1]; 255.0: pixels in [0, 255]


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
    # Noisy Student's model noise (Xie et al., CVPR 2020: dropout 0.5 before the classifier):
    # dropout on the features the segmentation head reads, in training only. It adds no
    # parameters, so a student with dropout starts from a teacher without (model.init_from).
    dropout: float = checked(0.0, check=number_between(0, 0.99))
    params: dict[str, Any] = field(default_factory=dict)
    # Written by segshift, not read: the file, SHA-256 and package version of ImageNet weights
    # that came from an installed package (segshift.models.packaged_weights).
    weights_provenance: dict[str, Any] | None = None


@dataclass
class MethodConfig:
    """The training method by registry name; ``params`` is checked against the method's schema."""

    name: str = "supervised"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    name: str = checked(
        "sgd",
        check=Check(lambda v: str(v).lower() in ("sgd", "adamw", "adam"), "sgd, adamw or adam"),
    )
    lr: float = checked(0.01, check=number_at_least(0))
    momentum: float = checked(0.9, check=number_between(0, 1))
    nesterov: bool = False
    weight_decay: float = checked(5e-4, check=number_at_least(0))
    betas: list[float] = checked(
        check=Check(_betas_ok, "[beta1, beta2] in [0, 1)"), factory=lambda: [0.9, 0.999]
    )
    head_lr_mult: float = checked(1.0, check=number_at_least(0))
    clip_grad_norm: float | None = checked(
        None, check=number_at_least(0, optional=True, above=True)
    )
    # The official DeepLab-v2 trainers (AdaptSegNet, ADVENT, DACS, FDA) list each backbone
    # parameter once per module that contains it, so SGD updates it 3-4 times per step.
    official_param_repeats: bool = False


@dataclass
class ScheduleConfig:
    """Poly decay ``(1 - t/T)^power`` after a linear warmup from ``warmup_ratio * lr``;
    ``constant``; ``linear_decay`` (CycleGAN): the base rate for ``constant_iters`` steps (null:
    half of ``train.iters``), then linear decay to zero (`segshift.engine.schedules`)."""

    name: str = checked("poly", check=one_of("poly", "constant", "linear_decay"))
    power: float = checked(0.9, check=number_at_least(0))
    warmup_iters: int = checked(0, check=at_least(0))
    warmup_ratio: float = checked(1e-6, check=number_between(0, 1))
    min_lr: float = checked(0.0, check=number_at_least(0))
    constant_iters: int | None = checked(None, check=at_least(0, optional=True))


@dataclass
class TrainConfig:
    iters: int = checked(1000, check=at_least(1))
    # checkpoint and stop early (time-limited jobs); resume goes on
    stop_at: int | None = checked(None, check=at_least(1, optional=True))
    eval_every: int = checked(500, check=at_least(0))  # 0: never evaluate during training
    ckpt_every: int = checked(500, check=at_least(1))
    log_every: int = checked(20, check=at_least(1))
    precision: str = checked("32-true", check=one_of(*PRECISIONS))
    accelerator: str = checked("auto", check=one_of(*ACCELERATORS))
    devices: Any = checked(
        1, check=Check(_devices_ok, 'a count >= 1, -1 (all), "auto" or a list of device indices')
    )
    num_nodes: int = checked(1, check=at_least(1))
    strategy: str = "auto"
    sync_batchnorm: bool = False  # BatchNorm statistics across processes (UniMatch, U2PL, CPS)
    # also keep the model of every N-th step as checkpoints/step_XXXXXX.pt (weights, config,
    # label space: what eval / predict / score read), for choosing a checkpoint; 0: none
    keep_checkpoints_every: int = checked(0, check=at_least(0))
    max_nonfinite: int = checked(3, check=at_least(0))
    deterministic: bool = False
    resume: bool = True
    # CPU threads of each training process: "auto" keeps PyTorch's count (OMP_NUM_THREADS or the
    # physical cores) capped at the cores per process, or a number; SEGSHIFT_THREADS overrides it
    threads: Any = checked("auto", check=Check(_threads_ok, 'an integer >= 1 or "auto"'))
    # off/none/false (YAML reads off and no as False) mean plain lines, as plain does
    progress: str = checked(
        "auto",
        check=Check(
            lambda v: str(v).lower() in ("auto", "bar", "plain", "off", "none", "false"),
            "auto, bar or plain (off: plain lines)",
        ),
    )


@dataclass
class EvalConfig:
    # whole | slide (mmseg: windows averaged) | slide_unimatch
    mode: str = checked("whole", check=one_of(*EVAL_MODES))
    crop_size: list[int] | None = checked(None, check=size_pair())
    stride: list[int] | None = checked(None, check=size_pair())
    flip: bool = False
    scales: list[float] = checked(
        check=Check(_scales_ok, "a non-empty list of numbers in (0, 10]"), factory=lambda: [1.0]
    )
    subset: str | None = None
    # also report miou_per_image: the mean over images of each image's mIoU (classes absent from
    # an image's label and prediction skipped), beside the dataset-level miou
    per_image_miou: bool = False
    # label-free scores (segshift.evaluation.scores, names in SCORE_NAMES) of the eval model on
    # a fixed subset of at most `unlabeled_images` images of the method's unlabeled stream
    # (`unlabeled_stream`, null: the first unlabeled stream it reads), logged at every
    # evaluation as score.<name> (log.jsonl, TensorBoard); higher = better adapted
    unlabeled_scores: list[str] = field(default_factory=list)  # checked by _unknown_score
    unlabeled_stream: str | None = None
    unlabeled_images: int = checked(32, check=at_least(2))


@dataclass
class Config:
    name: str = "run"
    output_dir: str = "runs"
    seed: int = checked(0, check=at_least(0))
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


def _merge(schema: Any, *layers: Any, origin: str) -> DictConfig:
    try:
        merged = OmegaConf.structured(schema)
        for layer in layers:
            merged = OmegaConf.merge(merged, layer)
    except OmegaConfBaseException as err:
        raise _wrap_omegaconf_error(err, schema, origin) from None
    return merged  # type: ignore[return-value]


def merge_into_schema(
    schema: Any, *layers: Any, origin: str = "config", overridden: tuple[str, ...] = ()
) -> DictConfig:
    """Merge plain mappings onto a structured schema, turning OmegaConf errors into ConfigError.

    The result is validated (:func:`validate`): a value outside its field's range is a
    ConfigError naming the key and the range (and the command line for ``overridden`` keys).
    """
    merged = _merge(schema, *layers, origin=origin)
    validate(merged, origin, overridden)
    return merged


def _plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _eval_needs_window(node: DictConfig) -> tuple[str, str] | None:
    if node.mode != "whole" and node.crop_size is None:
        return "mode", f"'{node.mode}' needs a window: set eval.crop_size=[h,w] (or --crop HxW)"
    return None


def unknown_score(names: Any) -> str | None:
    """Why ``names`` is not a list of label-free score names (with a did-you-mean), or None."""
    if not isinstance(names, list):
        return f"expected a list of score names ({', '.join(SCORE_NAMES)}), got {names!r}"
    for name in names:
        if name not in SCORE_NAMES:
            hint = did_you_mean(str(name), list(SCORE_NAMES))
            return f"unknown score '{name}'{hint}; known: {', '.join(SCORE_NAMES)}"
    return None


def _eval_problem(node: DictConfig) -> tuple[str, str] | None:
    problem = unknown_score(_plain(node.unlabeled_scores)) if "unlabeled_scores" in node else None
    return ("unlabeled_scores", problem) if problem else _eval_needs_window(node)


def _output_dir_not_a_file(node: DictConfig) -> tuple[str, str] | None:
    # The nearest existing ancestor must be a directory, or the run fails after loading data.
    path = Path(str(node.output_dir)).expanduser()
    for candidate in (path / str(node.name), path, *path.parents):
        if candidate.exists():
            if candidate.is_dir():
                return None
            return "output_dir", f"{candidate} exists and is not a directory"
    return None


def _part_key_problem(key: str, part_keys: list[str]) -> str | None:
    """Why ``key`` cannot be set in a ``concat`` entry, or None."""
    if key in STREAM_KEYS:
        return (
            f"augmentation, batching and sampling keys are the stream's: set '{key}' on the "
            f"stream itself (a part says where its data is and what it is: {', '.join(part_keys)})"
        )
    if key == "concat":
        return "a part has no parts: list every part in the stream's concat"
    return None if key in part_keys else f"not a dataset key{did_you_mean(key, part_keys)}"


def _concat_part_problem(node: DictConfig) -> tuple[str, str] | None:
    """The first bad key of a ``concat`` entry: a key the stream owns (``STREAM_KEYS``), an
    unknown key, a value of the wrong type or out of range, a ``labeled`` unlike the stream's."""
    if "concat" not in node or OmegaConf.is_interpolation(node, "concat"):
        return None
    try:
        entries = _plain(node.concat)
    except OmegaConfBaseException:  # an interpolation to a value not given yet
        return None
    if entries is None:
        return None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        return "concat", f"expected a list of dataset mappings or null, got {entries!r}"
    fields = {f.name: f for f in dataclasses.fields(DatasetConfig)}
    part_keys = [name for name in fields if name not in (*STREAM_KEYS, "concat")]
    for i, entry in enumerate(entries):
        for key in entry:
            problem = _part_key_problem(str(key), part_keys)
            if problem:
                return f"concat[{i}].{key}", problem
        try:
            part = OmegaConf.merge(OmegaConf.structured(DatasetConfig), entry)
        except OmegaConfBaseException as err:
            return f"concat[{i}].{getattr(err, 'full_key', '')}", str(err).splitlines()[0]
        for key, value in entry.items():
            check = fields[key].metadata.get("check")
            if check is not None and not check.ok(value):
                return f"concat[{i}].{key}", f"expected {check.expected}, got {value!r}"
        if "labeled" in entry and part.labeled != node.labeled:
            return f"concat[{i}].labeled", "every part is labeled, or unlabeled, as the stream is"
    return None


# Checks that involve several keys of one schema node; (key, message) when they fail.
_NODE_CHECKS: dict[type, Callable[[DictConfig], tuple[str, str] | None]] = {
    EvalConfig: _eval_problem,
    Config: _output_dir_not_a_file,
    DatasetConfig: _concat_part_problem,
}


def validate(cfg: DictConfig, origin: str = "config", overridden: tuple[str, ...] = ()) -> None:
    """Check every value against its schema field's :class:`Check` (and the cross-key checks).

    Walks nested nodes of any structured config, so streams, ``data.val`` and pipeline schemas
    are covered. Raises ConfigError ``"<origin>: bad value for config key 'k': expected ..."``;
    keys in (or under) ``overridden`` are reported as coming from the command line.
    """

    def where(key: str) -> str:
        return (
            "command line"
            if any(key == o or key.startswith((f"{o}.", f"{o}[")) for o in overridden)
            else origin
        )

    _validate_node(cfg, "", where)


def _validate_node(node: DictConfig, prefix: str, where: Callable[[str], str]) -> None:
    schema = OmegaConf.get_type(node)
    if dataclasses.is_dataclass(schema):
        for spec in dataclasses.fields(schema):
            check = spec.metadata.get("check")
            if check is None or spec.name not in node or OmegaConf.is_missing(node, spec.name):
                continue
            value = _plain(node[spec.name])
            if not check.ok(value):
                key = prefix + spec.name
                raise ConfigError(
                    f"{where(key)}: bad value for config key '{key}': expected {check.expected}, "
                    f"got {value!r}"
                )
        node_check = _NODE_CHECKS.get(schema)
        failure = node_check(node) if node_check else None
        if failure:
            raise ConfigError(
                f"{where(prefix + failure[0])}: bad value for config key "
                f"'{prefix}{failure[0]}': {failure[1]}"
            )
    for key in node:
        # an interpolation is checked where it points (it may point at a value still missing)
        if not OmegaConf.is_missing(node, key) and not OmegaConf.is_interpolation(node, key):
            child = node[key]
            if isinstance(child, DictConfig):
                _validate_node(child, f"{prefix}{key}.", where)


def is_pipeline_config(path: str | Path) -> bool:
    """True for a config with a top-level ``pipeline:`` key (``segshift pipeline``'s, not a run's)."""
    return "pipeline" in read_yaml(resolve_config_path(path))


def _base_chain(file: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(file, mapping without ``base:``) of ``file`` and its bases, the furthest base first.

    ``base:`` is a path relative to the file, an absolute path or a packaged name; a base may
    have its own (``my/dacs.yaml`` -> ``my/uda.yaml`` -> ``own/uda``); a cycle is an error."""
    chain: list[tuple[Path, dict[str, Any]]] = []
    seen: list[Path] = []
    while True:
        if file.resolve() in seen:
            loop = " -> ".join(str(p) for p in [*seen, file.resolve()])
            raise ConfigError(f"{seen[-1]}: 'base:' makes a cycle: {loop}")
        seen.append(file.resolve())
        data = read_yaml(file)
        base = data.pop("base", None)
        chain.insert(0, (file, data))
        if base is None:
            return chain
        if not isinstance(base, str):
            raise ConfigError(f"{file}: 'base:' must be a config path or name, got {base!r}")
        candidate = Path(base).expanduser()
        candidate = candidate if candidate.is_absolute() else file.parent / candidate
        file = candidate if candidate.is_file() else resolve_config_path(base)


DROP_STREAM = re.compile(r"data\.streams\.[A-Za-z0-9_]+=(null|~|None)")


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> DictConfig:
    """Read a YAML config (and its chain of ``base:`` configs) and apply dotted overrides."""
    layers: list[Any] = []
    origin = "overrides"
    if path is not None:
        file = resolve_config_path(path)
        origin = str(file)
        chain = _base_chain(file)  # the furthest base first, ``file`` last
        for base_file, data in chain[:-1]:
            _merge(Config(), data, origin=str(base_file))  # its keys checked, naming its file
        # Raw mappings, so that a later file's unset keys do not reset an earlier one's values.
        layers += [data for _, data in chain]
    # Values are validated once, on the final config: an override may fix a file's value.
    merged = _merge(Config(), *layers, origin=origin)
    if overrides:
        for item in overrides:
            if "=" not in item:
                raise ConfigError(
                    f"override '{item}' must look like key=value (e.g. train.iters=100)"
                )
        # data.streams.NAME=null removes a stream a config (a base, a template) defines
        dropped = [i.split("=")[0][13:] for i in overrides if DROP_STREAM.fullmatch(i.strip())]
        kept = [i for i in overrides if not DROP_STREAM.fullmatch(i.strip())]
        try:
            dotlist = OmegaConf.from_dotlist(kept)
        except (OmegaConfBaseException, yaml.YAMLError) as err:
            raise ConfigError(f"bad override: {' '.join(str(err).split())}") from None
        merged = _merge(Config(), merged, dotlist, origin="command line")
        for name in dropped:
            merged.data.streams.pop(name, None)
    keys = tuple(item.split("=", 1)[0].strip() for item in overrides or [])
    validate(merged, origin, overridden=keys)
    return merged


def check_required(cfg: DictConfig, skip: tuple[str, ...] = ()) -> None:
    """Fail with the key's path if a required value ('???') was never given.

    ``skip``: key prefixes not needed here (evaluation does not read ``data.streams``).
    """
    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith(skip))
    if missing:
        raise ConfigError(f"missing required config value(s): {', '.join(missing)}")


def _field_names(schema: type, path: list[str]) -> list[str]:
    """The field names of the dataclass nested in ``schema`` at ``path`` (for did-you-mean)."""
    for part in path:
        hints = typing.get_type_hints(schema)
        if not dataclasses.is_dataclass(hints.get(part)):
            return []
        schema = hints[part]
    return [f.name for f in dataclasses.fields(schema)]


def to_dataclass(params: dict[str, Any] | DictConfig, schema: type, prefix: str) -> Any:
    """Validate a free-form ``params`` mapping against a dataclass schema (e.g. a method's)."""
    raw = OmegaConf.to_container(params, resolve=True) if isinstance(params, DictConfig) else params
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), raw or {})
    except OmegaConfBaseException as err:
        key = f"{prefix}.{getattr(err, 'full_key', '')}".rstrip(".")
        leaf = key.split(".")[-1]
        if "Key" in type(err).__name__:
            names = _field_names(schema, getattr(err, "full_key", "").split(".")[:-1])
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
