"""SYNTHIA RAND-CITYSCAPES (Ros et al., CVPR 2016): 9,400 rendered frames, 16 shared classes.

Layout::

    root/RGB/0000000.png
    root/GT/LABELS/0000000.png   (16-bit 3-channel PNG: class id in the first channel,
                                  instance id in the second)

Two protocols (option ``label_space``): ``synthia16`` (default; AdaptSegNet, ADVENT) trains and
evaluates on the 16 classes shared with Cityscapes, reporting also the 13-class subset; with
``synthia19`` (DACS) labels are Cityscapes' 19 train ids, the model has 19 outputs, and the
target (``cityscapes`` with ``label_space: cityscapes_synthia19``) reports mIoU over 19, 16, 13.
Split ``all`` uses every frame, and so does ``train`` unless the root holds ``train.txt``;
another split reads ``root/<split>.txt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segshift.data.base import SampleFiles, SegDataset
from segshift.data.io import list_images, read_channel_unchanged
from segshift.data.label_space import LabelSpace, get_label_space
from segshift.data.splits import named_split
from segshift.errors import ConfigError
from segshift.registry import DATASETS


@DATASETS.register("synthia")
class SynthiaDataset(SegDataset):
    """SYNTHIA RAND-CITYSCAPES frames; option ``label_space``: synthia16 | synthia19."""

    dataset_name = "synthia"

    def __init__(self, root: str | Path, *, label_space: str = "synthia16", **kwargs: Any) -> None:
        if label_space not in ("synthia16", "synthia19"):
            raise ConfigError(
                f"options.label_space: synthia supports synthia16, synthia19, got '{label_space}'"
            )
        self.label_space_name = label_space
        super().__init__(root, **kwargs)

    def build_label_space(self) -> LabelSpace:
        return get_label_space(self.label_space_name)

    def find_files(self) -> list[SampleFiles]:
        images = list_images(self.require_dir(self.root / "RGB"), "*.png")
        label_dir = self.root / "GT" / "LABELS"
        files = self.pair(images, lambda image: label_dir / image.name)
        return named_split(files, self.root, self.split)

    def read_label(self, sample: SampleFiles) -> np.ndarray:
        assert sample.mask is not None
        return self.label_space.encode(read_channel_unchanged(sample.mask, channel=0))
