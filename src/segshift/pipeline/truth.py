"""Ground-truth masks for ``segshift predict --masks``, read as the run's validation set reads
its masks: the same dataset type and options (``label_space``, ``classes`` with raw ids,
``mask_format``, ``mask_channel``, ``remap``, ``fit_masks``), so KITTI labelIds or CARLA's
id-in-R masks work as they do in training. Without the run's ``data.val`` on this machine (or
with ``--masks-as train-ids``), masks are read as train ids (255 = ignore; what predict writes in
``masks/``) or legend colours.

Example::

    >>> reader = TruthReader(cfg, label_space)        # cfg: the run's config
    >>> reader.how
    'as data.val reads its masks (folder, options {mask_format: channel})'
    >>> truth = reader.read(Path("gt/000001.png"), Path("img/000001.png"))   # (H, W) train ids
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from segshift.data.base import SampleFiles, SegDataset
from segshift.data.concat import part_configs
from segshift.data.io import image_size, read_mask
from segshift.data.label_space import LabelSpace
from segshift.errors import ConfigError, DataError
from segshift.registry import DATASETS


def _legend_space(label_space: dict) -> LabelSpace:
    """The checkpoint's classes and colours; black is ignore unless it is a class's colour."""
    palette = [tuple(int(c) for c in colour) for colour in label_space["palette"]]
    names = tuple(label_space["class_names"])
    void = () if (0, 0, 0) in palette else ((0, 0, 0),)
    return LabelSpace(
        "predict", names, palette, {i: i for i in range(len(names))}, void_colors=void
    )


def _dataset_reader(node: Any) -> SegDataset:
    """A dataset of ``node``'s type and options that reads single masks (no file listing)."""
    options = node.options
    options = (
        OmegaConf.to_container(options, resolve=True)
        if isinstance(options, DictConfig)
        else options
    )

    class MaskReader(DATASETS.get(node.name)):  # type: ignore[misc]
        def find_files(self) -> list[SampleFiles]:
            return [SampleFiles(Path(), None, "")]

    return MaskReader(node.root, split=node.split, labeled=True, **(options or {}))


class TruthReader:
    """Reads ground-truth masks as train ids of the checkpoint's classes (module docstring).

    Args:
        cfg: the run's config (its ``data.val`` says how masks are read).
        label_space: the checkpoint's ``{class_names, palette}``.
        as_data: read as ``data.val`` does when its root exists here (else train ids/colours).
    """

    def __init__(self, cfg: DictConfig, label_space: dict, as_data: bool = True) -> None:
        self.names = list(label_space["class_names"])
        self.legend = _legend_space(label_space)
        self.dataset: SegDataset | None = None
        self.how = "as train ids (255 = ignore) or legend colours"
        val = cfg.data.val if as_data else None
        node = part_configs(val)[0] if val is not None else None
        here = node is not None and not OmegaConf.is_missing(node, "root")
        if here and Path(str(node.root)).expanduser().is_dir():
            try:
                self.dataset = _dataset_reader(node)
            except (ConfigError, DataError) as error:
                raise ConfigError(f"--masks: cannot read masks as data.val does: {error}") from None
            found = list(self.dataset.label_space.class_names)
            if found != self.names:
                raise ConfigError(
                    f"--masks: data.val ({node.root}) reads the classes {found}, the checkpoint "
                    f"has {self.names}; pass --masks-as train-ids for masks of train ids"
                )
            options = OmegaConf.to_container(node.options) if node.options else {}
            self.how = f"as data.val reads its masks ({node.name}, options {options or '{}'})"

    def read(self, mask: Path, image: Path) -> np.ndarray:
        """Train ids (H, W) uint8 of ``mask``, the size of ``image``; a DataError naming the
        file for a mask that cannot be read or has another size."""
        size = image_size(image)
        if self.dataset is not None:
            sample = SampleFiles(image, mask, image.stem)
            return self.dataset.fit_label(self.dataset._train_ids(sample), size, sample)
        raw = read_mask(mask, "auto")
        if raw.ndim == 3:
            truth = self.legend.decode_rgb(raw, mask)
        else:
            truth = self.legend.check_train_ids(raw, mask)
        if truth.shape != size:
            raise DataError(
                f"{mask}: mask size {truth.shape[1]}x{truth.shape[0]} does not match its image's "
                f"{size[1]}x{size[0]} (width x height)"
            )
        return truth
