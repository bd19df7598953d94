"""A folder of images and masks for one's own domain (harbour structures, factory floors, ...).

Layout (directory names are options)::

    root/images/<name>.<jpg|png|...>
    root/masks/<name>.png            (not needed with labeled: false)
    root/<name>.<jpg|png|...>        (labeled: false only: a plain folder of images)
    root/classes.yaml                (optional, see below; options.classes_from names another
                                      folder's, e.g. a validation folder that shares the classes)
    root/train.txt, root/val.txt     (optional split files: one image name per line)

If ``root/<split>/images`` exists, ``root/<split>`` is used as the root (``classes.yaml`` may
be in either). Otherwise split files in the root choose the images: ``split: val`` reads
``val.txt``; a root with split files but not the one asked for is an error; ``split: all``,
a root without split files, or an explicit ``split_file`` use every image (``split_file`` then
selects). Classes come from ``options.classes`` (names, or ``{name, color, id, ignore}``
mappings, see ``label_space_from_classes``), ``options.label_space`` (a built-in name, e.g.
``cityscapes`` for masks of Cityscapes labelIds), or ``classes.yaml`` with the same keys::

    label_space: camvid            # reuse a built-in label space, or
    classes:
      - {name: unlabeled, id: 0, ignore: true}
      - {name: water, id: 1, color: [0, 0, 255]}
      - {name: vehicle, id: [26, 27, 28]}      # several raw ids, one class

Masks (``options.mask_format``): ``index`` (pixel = class id), ``palette`` (a "P" PNG whose
indices are class ids), ``rgb`` (pixel = class colour; ``void_colors`` are ignored),
``channel`` (one channel of a colour file holds the id, ``options.mask_channel``: 0 = R, as in
CARLA) or ``auto`` (colours for RGB files, ids otherwise). Ids of a class list without explicit
``id`` are train ids (255 = ignore, other ids out of range are an error); explicit ids and
built-in label spaces map raw ids, unknown ones to 255. See docs/DATA.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from segshift.data.base import SampleFiles, SegDataset
from segshift.data.io import IMAGE_SUFFIXES, MASK_FORMATS, list_images, read_mask
from segshift.data.label_space import LabelSpace, get_label_space, label_space_from_classes
from segshift.data.splits import keep_listed, read_split_file, split_file_of
from segshift.errors import ConfigError
from segshift.registry import DATASETS


@DATASETS.register("folder")
class FolderDataset(SegDataset):
    """Images in ``image_dir`` with same-named masks in ``mask_dir``; classes from a list or yaml."""

    dataset_name = "folder"

    def __init__(
        self,
        root: str | Path,
        *,
        image_dir: str = "images",
        mask_dir: str = "masks",
        classes: Sequence[str | dict[str, Any]] | None = None,
        label_space: str | None = None,
        mask_format: str = "auto",
        mask_channel: int | None = None,
        void_colors: Sequence[Sequence[int]] = (),
        classes_from: str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        if mask_format not in MASK_FORMATS:
            raise ConfigError(
                f"options.mask_format: expected one of {', '.join(MASK_FORMATS)}, got '{mask_format}'"
            )
        self.mask_channel = _mask_channel(mask_channel, mask_format)
        root = Path(root).expanduser()
        self._classes_files = [root / "classes.yaml"]
        split_root = root / kwargs.get("split", "train")
        # split files in the root choose the images unless a split directory or split_file does
        self._use_split_files = kwargs.get("split_file") is None
        if (split_root / image_dir).is_dir():
            root, self._use_split_files = split_root, False
            self._classes_files.insert(0, root / "classes.yaml")
        if classes_from is not None:  # another folder's classes.yaml (or that file itself)
            given = Path(classes_from).expanduser()
            given = given / "classes.yaml" if given.is_dir() else given
            if not given.is_file():
                raise ConfigError(f"options.classes_from: no classes file at {given}")
            self._classes_files.append(given)
        self.image_dir, self.mask_dir, self.mask_format = image_dir, mask_dir, mask_format
        self._classes, self._label_space_name = classes, label_space
        self._void_colors = tuple(tuple(int(c) for c in color) for color in void_colors)
        self._maps_raw_ids = False
        super().__init__(root, **kwargs)

    def build_label_space(self) -> LabelSpace:
        classes, name, where = self._classes, self._label_space_name, "options.classes"
        classes_file = next((p for p in self._classes_files if p.is_file()), None)
        if classes is None and name is None and classes_file is not None:
            spec = _read_classes_file(classes_file)
            classes, name, where = spec.get("classes"), spec.get("label_space"), str(classes_file)
        if name is not None:
            space = get_label_space(name)
            if classes is not None:
                space = _with_given_classes(
                    space, label_space_from_classes(name, classes, where), where
                )
            self._maps_raw_ids = True
        elif classes is not None:  # an empty list is an error of its own, named by its source
            space = label_space_from_classes(self.root.name, classes, where)
            self._maps_raw_ids = any(isinstance(c, Mapping) and "id" in c for c in classes)
        elif not self.labeled:
            space = LabelSpace("unlabeled", (), [], {})
        elif classes_file is not None:
            raise ConfigError(
                f"{classes_file}: lists no classes; give 'classes: [name, ...]' or "
                "'label_space: NAME'"
            )
        else:
            raise ConfigError(
                f"folder dataset {self.root}: no classes; set options.classes or options.label_space, "
                f"or write {self._classes_files[-1]}"
            )
        class_of = {**space.extra_colors, **{c: i for i, c in enumerate(space.palette)}}
        clash = [c for c in self._void_colors if c in class_of]
        if clash:
            other = space.class_names[class_of[clash[0]]]
            raise ConfigError(
                f"options.void_colors: {list(clash[0])} is the colour of class '{other}' "
                f"(classes from {where})"
            )
        return replace(space, void_colors=space.void_colors + self._void_colors)

    def find_files(self) -> list[SampleFiles]:
        image_dir = self.root / self.image_dir
        if not self.labeled and not image_dir.is_dir() and any(_images_in(self.root)):
            image_dir = self.root  # unlabeled: a plain folder of images will do
        images = list_images(self.require_dir(image_dir))
        split_file = split_file_of(self.root, self.split, required=False)
        if self._use_split_files and split_file is not None:
            names = [image.stem for image in images]
            keep = keep_listed(names, read_split_file(split_file), split_file, self.split_key)
            images = [images[i] for i in keep]
        mask_dir = self.root / self.mask_dir
        if self.labeled:
            self.require_dir(mask_dir)
        masks = {
            p.stem: p for p in sorted(mask_dir.glob("*")) if p.suffix.lower() in IMAGE_SUFFIXES
        }
        return self.pair(
            images, lambda image: masks.get(image.stem, mask_dir / f"{image.stem}.png")
        )

    def read_label(self, sample: SampleFiles) -> np.ndarray:
        assert sample.mask is not None
        mask = read_mask(sample.mask, self.mask_format, self.mask_channel)
        if mask.ndim == 3:
            return self.label_space.decode_rgb(mask, sample.mask)
        return self.label_space.encode(mask) if self._maps_raw_ids else mask


def _images_in(folder: Path) -> list[Path]:
    return [p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES]


def _read_classes_file(path: Path) -> dict[str, Any]:
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML ({error})") from error
    if not isinstance(spec, dict) or not ({"classes", "label_space"} & set(spec)):
        raise ConfigError(f"{path}: expected a mapping with 'classes' and/or 'label_space'")
    return spec


def _with_given_classes(space: LabelSpace, given: LabelSpace, where: str) -> LabelSpace:
    """``space`` with the colours of ``given``, whose class names must be the same."""
    if given.class_names != space.class_names:
        raise ConfigError(
            f"{where}: classes {list(given.class_names)} do not match label space "
            f"'{space.name}' {list(space.class_names)}"
        )
    return replace(
        space,
        palette=given.palette,
        extra_colors=given.extra_colors,
        void_colors=space.void_colors + given.void_colors,
    )


def _mask_channel(channel: Any, mask_format: str) -> int:
    """The channel holding the ids with ``mask_format: channel`` (default 0, R)."""
    if mask_format != "channel":
        if channel is not None:
            raise ConfigError(
                f"options.mask_channel: is read with mask_format: channel, not '{mask_format}'"
            )
        return 0
    if channel is None:
        return 0
    if not isinstance(channel, int) or isinstance(channel, bool) or not 0 <= channel <= 3:
        raise ConfigError(
            f"options.mask_channel: expected 0 (R), 1 (G), 2 (B) or 3 (A), got {channel!r}"
        )
    return channel
