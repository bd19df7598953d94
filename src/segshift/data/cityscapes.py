"""Cityscapes (Cordts et al., CVPR 2016): fine annotations, 19 evaluated classes.

Layout::

    root/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    root/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
    root/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png   (optional)

labelIds are mapped to the 19 train ids; a ``labelTrainIds`` file, when present, is used as is.
Split files (``split_file``) may name frames as UniMatch (``leftImg8bit/train/aachen/
aachen_000000_000019_leftImg8bit.png gtFine/...``) or CPS (``/images/train/aachen_000000_000019.png``)
do: entries are matched on ``<city>_<sequence>_<frame>``.
SYNTHIA -> Cityscapes protocols: ``label_space="cityscapes16"`` keeps SYNTHIA's 16 classes
(AdaptSegNet / ADVENT: mIoU over 16, ``miou_13`` over 13); ``"cityscapes_synthia19"`` keeps all 19
and also reports ``miou_16`` and ``miou_13`` (DACS, whose SYNTHIA source uses ``synthia19``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from segshift.data.base import SampleFiles, SegDataset
from segshift.data.io import read_mask
from segshift.data.label_space import LabelSpace, get_label_space
from segshift.errors import ConfigError
from segshift.registry import DATASETS

_IMAGE_SUFFIX = "_leftImg8bit.png"
_TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"
_LABEL_SPACES = ("cityscapes", "cityscapes16", "cityscapes_synthia19")
# <city>_<sequence>_<frame>: what every published split list names, whatever suffix follows
# (UniMatch: _leftImg8bit; CPS: none; its labels: _gtFine, _gtFine_labelTrainIds).
_FRAME_ID = re.compile(r"^(.+?_\d{6}_\d{6})(?:_.*)?$")


@DATASETS.register("cityscapes")
class CityscapesDataset(SegDataset):
    """Cityscapes ``train``/``val``/``test`` split; options: ``label_space`` (see the module)."""

    dataset_name = "cityscapes"

    def __init__(self, root: str | Path, *, label_space: str = "cityscapes", **kwargs: Any) -> None:
        if label_space not in _LABEL_SPACES:
            raise ConfigError(
                f"options.label_space: cityscapes supports {', '.join(_LABEL_SPACES)}, got '{label_space}'"
            )
        self.label_space_name = label_space
        super().__init__(root, **kwargs)

    def build_label_space(self) -> LabelSpace:
        return get_label_space(self.label_space_name)

    def find_files(self) -> list[SampleFiles]:
        image_dir = self.require_dir(self.root / "leftImg8bit" / self.split)
        label_dir = self.root / "gtFine" / self.split
        use_train_ids = self.label_space_name != "cityscapes16"  # the 19 train ids as they are

        def mask_of(image: Path) -> Path:
            stem = label_dir / image.parent.name / image.name[: -len(_IMAGE_SUFFIX)]
            train_ids = stem.with_name(stem.name + _TRAIN_IDS_SUFFIX)
            if use_train_ids and train_ids.is_file():
                return train_ids
            return stem.with_name(stem.name + "_gtFine_labelIds.png")

        return self.pair(sorted(image_dir.glob(f"*/*{_IMAGE_SUFFIX}")), mask_of)

    def split_key(self, name: str) -> str:
        """``aachen_000000_000019`` for ``aachen_000000_000019_leftImg8bit`` and the bare name, so
        the split lists of UniMatch/U2PL and of CPS (no suffix) both match."""
        match = _FRAME_ID.match(name)
        return match.group(1) if match else name

    def read_label(self, sample: SampleFiles) -> np.ndarray:
        assert sample.mask is not None
        ids = read_mask(sample.mask)
        if sample.mask.name.endswith(_TRAIN_IDS_SUFFIX):
            return ids  # already train ids; range-checked by the base class
        return self.label_space.encode(ids)
