"""Pascal VOC 2012 (Everingham et al., IJCV 2010) with the SBD augmented labels (Hariharan et
al., ICCV 2011), as the semi-supervised segmentation papers use it (CPS, U2PL, UniMatch).

Layout (``root`` may also be the folder holding ``VOC2012`` or ``VOCdevkit/VOC2012``)::

    root/JPEGImages/<id>.jpg
    root/SegmentationClass/<id>.png          (palette PNG: index = class, 255 = boundary, ignored)
    root/SegmentationClassAug/<id>.png       (optional: SBD labels, single-channel index PNG)
    root/ImageSets/Segmentation/<split>.txt  (train: 1,464, val: 1,449, trainval; one id a line)

``split`` names a list under ``ImageSets/Segmentation``. ``train_aug`` (the 10,582 training
images of the augmented set), when that list is absent, is every id with a mask in
``SegmentationClassAug`` or listed in ``train.txt``, minus ``val.txt``. A mask is looked up in
``mask_dirs`` in order (default: the official ``SegmentationClass`` first, then
``SegmentationClassAug``), so VOC's own masks are used where they exist and SBD's elsewhere.
The published SSL splits (UniMatch's ``JPEGImages/<id>.jpg SegmentationClass/<id>.png`` lines,
CPS/U2PL's bare ids) are ``split_file`` values as they are; their ``unlabeled.txt`` lists go with
``split: train_aug``.

Example::

    data.streams.labeled: {name: voc, root: VOCdevkit/VOC2012, split: train}   # the 1,464
    data.streams.unlabeled: {name: voc, root: VOCdevkit/VOC2012, split: train_aug,
                             labeled: false, split_file: splits/pascal/1464/unlabeled.txt}
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segshift.data.base import SampleFiles, SegDataset
from segshift.data.io import read_mask
from segshift.data.label_space import LabelSpace, get_label_space
from segshift.data.splits import read_split_file
from segshift.errors import ConfigError, DataError
from segshift.registry import DATASETS

AUG_SPLIT = "train_aug"
_NESTED_ROOTS = ("VOC2012", "VOCdevkit/VOC2012")


@DATASETS.register("voc")
class VOCDataset(SegDataset):
    """Pascal VOC 2012 segmentation, 21 classes; options: ``mask_dirs`` (see the module)."""

    dataset_name = "voc"

    def __init__(
        self,
        root: str | Path,
        *,
        mask_dirs: Sequence[str] = ("SegmentationClass", "SegmentationClassAug"),
        **kwargs: Any,
    ) -> None:
        if isinstance(mask_dirs, str) or not mask_dirs:
            raise ConfigError(
                f"options.mask_dirs: expected a non-empty list of folder names, got {mask_dirs!r}"
            )
        self.mask_dirs = tuple(str(d) for d in mask_dirs)
        root = Path(root).expanduser()
        if not (root / "JPEGImages").is_dir():
            root = next(
                (root / n for n in _NESTED_ROOTS if (root / n / "JPEGImages").is_dir()), root
            )
        super().__init__(root, **kwargs)

    def build_label_space(self) -> LabelSpace:
        return get_label_space("voc")

    def find_files(self) -> list[SampleFiles]:
        image_dir = self.require_dir(self.root / "JPEGImages")
        samples = []
        for name in self._split_ids():
            image = image_dir / f"{name}.jpg"
            if not image.is_file():
                raise DataError(f"voc: split '{self.split}' lists '{name}' but {image} is missing")
            samples.append(SampleFiles(image, self._mask_of(name) if self.labeled else None, name))
        return samples

    def _split_ids(self) -> list[str]:
        lists = self.root / "ImageSets" / "Segmentation"
        listed = lists / f"{self.split}.txt"
        if listed.is_file() or self.split != AUG_SPLIT:
            return sorted(set(read_split_file(listed)))
        # The augmented training set: SBD's masks plus VOC train, never a validation image.
        aug_dir = self.root / "SegmentationClassAug"
        if not aug_dir.is_dir():
            raise DataError(
                f"voc: split '{AUG_SPLIT}' needs {listed} or the SBD masks in {aug_dir}"
            )
        ids = {p.stem for p in aug_dir.glob("*.png")}
        if (lists / "train.txt").is_file():
            ids |= set(read_split_file(lists / "train.txt"))
        return sorted(ids - set(read_split_file(lists / "val.txt")))

    def _mask_of(self, name: str) -> Path:
        candidates = [self.root / d / f"{name}.png" for d in self.mask_dirs]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise DataError(
                f"voc: no mask for image '{name}' (looked for {', '.join(map(str, candidates))})"
            )
        return found

    def read_label(self, sample: SampleFiles) -> np.ndarray:
        assert sample.mask is not None
        mask = read_mask(sample.mask, "auto")
        if mask.ndim == 3:  # a colour-rendered mask: VOC's palette, boundary colour ignored
            return self.label_space.decode_rgb(mask, sample.mask)
        return mask  # palette indices / SBD ids are train ids; the base class checks the range
