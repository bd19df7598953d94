"""Label spaces and datasets; ``build_dataset`` turns a DatasetConfig into a SegDataset.

Example::

    >>> ds = build_dataset(cfg.data.streams["source"], train=True)
    >>> sample = ds[0, 1234]   # index 0, augmentation seed 1234
    >>> sample["image"].shape, sample["label"].dtype
    (torch.Size([3, 512, 512]), torch.int64)
"""

from __future__ import annotations

import inspect
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from segshift.data import camvid, cityscapes, folder, gta5, synthia, voc  # noqa: F401  (registers)
from segshift.data.base import SampleFiles, SegDataset
from segshift.data.concat import ConcatSegDataset, part_configs
from segshift.data.label_space import (
    LabelSpace,
    get_label_space,
    label_space_from_classes,
    label_space_names,
)
from segshift.errors import ConfigError
from segshift.registry import DATASETS
from segshift.transforms import build_transform

__all__ = [
    "ConcatSegDataset",
    "LabelSpace",
    "SampleFiles",
    "SegDataset",
    "build_dataset",
    "dataset_options",
    "get_label_space",
    "label_space_from_classes",
    "label_space_names",
]

# Constructor arguments that come from DatasetConfig fields, not from ``options``.
_CONFIG_ARGUMENTS = {"self", "root", "split", "labeled", "domain", "transform", "n_labeled",
                     "split_file", "subset_seed", "complement", "recrop_min_pixels"}  # fmt: skip


def _plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def dataset_options(cls: type[SegDataset]) -> list[str]:
    """Names accepted in ``options`` by dataset class ``cls`` (its own and the base class's)."""
    names = set()
    for klass in (cls, SegDataset):
        for parameter in inspect.signature(klass.__init__).parameters.values():
            if parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
                names.add(parameter.name)
    return sorted(names - _CONFIG_ARGUMENTS)


def _recrop_min_pixels(cfg: Any) -> float | None:
    """The crop threshold of rare-class sampling, ``rcs_min_pixels * rcs_min_crop_ratio`` (None
    when RCS is off or the ratio is 0, as in DAFormer); checks the ``rcs_*`` keys."""
    temperature = getattr(cfg, "rcs_temperature", None)
    if temperature is None:
        return None
    where = f"dataset '{cfg.name}' ({cfg.root})"
    if not cfg.labeled:
        raise ConfigError(f"{where}: rcs_temperature (rare-class sampling) needs labeled: true")
    if not float(temperature) > 0:
        raise ConfigError(f"{where}: rcs_temperature must be > 0, got {temperature}")
    for key in ("rcs_min_pixels", "rcs_min_crop_ratio"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"{where}: {key} must be >= 0, got {getattr(cfg, key)}")
    ratio = float(cfg.rcs_min_crop_ratio)
    return int(cfg.rcs_min_pixels) * ratio if ratio > 0 else None


def build_dataset(cfg: Any, train: bool) -> SegDataset:
    """Build the dataset ``cfg.name`` with the augmentation of ``train`` or evaluation.

    ``cfg`` is any object with the DatasetConfig attributes (a dataclass or an OmegaConf
    DictConfig). ``cfg.options`` holds the dataset's own keyword arguments; an unknown one is a
    ConfigError. ``cfg.domain`` defaults to the dataset name. With ``rcs_temperature`` set, keys
    that name a class re-crop towards it (rare-class sampling, see ``segshift.data.samplers``).
    With ``cfg.concat`` it is a :class:`ConcatSegDataset` of ``cfg`` and each entry's dataset
    (``segshift.data.concat``).
    """
    parts = part_configs(cfg)
    if len(parts) > 1:
        return ConcatSegDataset([_build_one(part, train) for part in parts])
    return _build_one(cfg, train)


def _build_one(cfg: Any, train: bool) -> SegDataset:
    cls = DATASETS.get(cfg.name)
    if getattr(cfg, "complement", False) and cfg.n_labeled is None:
        raise ConfigError(
            f"dataset '{cfg.name}' ({cfg.root}): complement: true keeps the samples outside the "
            "n_labeled subset, so it needs n_labeled (the labeled stream's count)"
        )
    options = dict(_plain(cfg.options) or {})
    known = dataset_options(cls)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"dataset options {unknown} are not understood by '{cfg.name}'; known: {', '.join(known)}"
        )
    try:
        transform = build_transform(
            train,
            resize=_plain(cfg.resize),
            crop_size=_plain(cfg.crop_size),
            scale_range=_plain(cfg.scale_range),
            hflip=bool(cfg.hflip),
            photometric=bool(cfg.photometric),
            interpolation=getattr(cfg, "interpolation", "bilinear"),
            policy=getattr(cfg, "policy", None),
            policy_ops=int(getattr(cfg, "policy_ops", 2)),
            policy_magnitude=float(getattr(cfg, "policy_magnitude", 9)),
            policy_geometric=bool(getattr(cfg, "policy_geometric", False)),
        )
    except ValueError as err:
        raise ConfigError(f"dataset '{cfg.name}' ({cfg.root}): {err}") from None
    return cls(
        cfg.root,
        split=cfg.split,
        labeled=bool(cfg.labeled),
        domain=cfg.domain or None,
        transform=transform,
        n_labeled=cfg.n_labeled,
        split_file=cfg.split_file,
        subset_seed=int(cfg.subset_seed),
        complement=bool(getattr(cfg, "complement", False)),
        recrop_min_pixels=_recrop_min_pixels(cfg) if train else None,
        **options,
    )
