"""SYNTHIA RAND-CITYSCAPES (Ros et al., CVPR 2016): 9,400 rendered frames, 16 shared classes.

Layout::

    root/RGB/0000000.png
    root/GT/LABELS/0000000.png   (16-bit 3-channel PNG: class id in the first channel,
                                  instance id in the second)

Evaluated on the 16 classes shared with Cityscapes, and on the 13-class subset (``"13"``).
Split ``all`` (or ``train``) uses every frame; another split reads ``root/<split>.txt``.
"""

from __future__ import annotations

import numpy as np

from segshift.data.base import SampleFiles, SegDataset
from segshift.data.io import list_images, read_channel_unchanged
from segshift.data.label_space import LabelSpace, get_label_space
from segshift.data.splits import named_split
from segshift.registry import DATASETS


@DATASETS.register("synthia")
class SynthiaDataset(SegDataset):
    """SYNTHIA RAND-CITYSCAPES frames with labels in the ``synthia16`` label space."""

    dataset_name = "synthia"

    def build_label_space(self) -> LabelSpace:
        return get_label_space("synthia16")

    def find_files(self) -> list[SampleFiles]:
        images = list_images(self.require_dir(self.root / "RGB"), "*.png")
        label_dir = self.root / "GT" / "LABELS"
        files = self.pair(images, lambda image: label_dir / image.name)
        return named_split(files, self.root, self.split)

    def read_label(self, sample: SampleFiles) -> np.ndarray:
        assert sample.mask is not None
        return self.label_space.encode(read_channel_unchanged(sample.mask, channel=0))
