"""GTA5 (Richter et al., "Playing for Data", ECCV 2016): 24,966 game frames, Cityscapes labelIds.

Layout::

    root/images/00001.png
    root/labels/00001.png      (palette PNG whose indices are Cityscapes labelIds)

Split ``all`` uses every frame, as the UDA literature does; so does ``train`` unless the root
holds ``train.txt``; another split name reads the sample names from ``root/<split>.txt``.
"""

from __future__ import annotations

from segshift.data.base import SampleFiles, SegDataset
from segshift.data.io import list_images
from segshift.data.label_space import LabelSpace, get_label_space
from segshift.data.splits import named_split
from segshift.registry import DATASETS


@DATASETS.register("gta5")
class GTA5Dataset(SegDataset):
    """GTA5 frames with labels in the 19 Cityscapes classes."""

    dataset_name = "gta5"

    def build_label_space(self) -> LabelSpace:
        return get_label_space("cityscapes")

    def find_files(self) -> list[SampleFiles]:
        images = list_images(self.require_dir(self.root / "images"), "*.png")
        label_dir = self.root / "labels"
        files = self.pair(images, lambda image: label_dir / image.name)
        return named_split(files, self.root, self.split)
