"""CamVid (Brostow et al., 2009) in the 11-class SegNet version; id 11 (void) is ignored.

Two layouts are detected automatically::

    root/<split>/images/*.jpg   root/<split>/labels/*.png     (the copy the benchmarks use)
    root/<split>/*.png          root/<split>annot/*.png        (SegNet's original release)
"""

from __future__ import annotations

from segshift.data.base import SampleFiles, SegDataset
from segshift.data.io import list_images
from segshift.data.label_space import LabelSpace, get_label_space
from segshift.errors import DataError
from segshift.registry import DATASETS


@DATASETS.register("camvid")
class CamVidDataset(SegDataset):
    """CamVid ``train``/``val``/``test`` split, 480x360 street scenes, 11 classes."""

    dataset_name = "camvid"

    def build_label_space(self) -> LabelSpace:
        return get_label_space("camvid")

    def find_files(self) -> list[SampleFiles]:
        split_dir = self.root / self.split
        if (split_dir / "images").is_dir():
            image_dir, label_dir = split_dir / "images", split_dir / "labels"
        elif split_dir.is_dir():
            image_dir, label_dir = split_dir, self.root / f"{self.split}annot"
        else:
            raise DataError(
                f"camvid: neither {split_dir / 'images'} nor {split_dir} (SegNet layout) exists"
            )
        return self.pair(list_images(image_dir), lambda image: label_dir / f"{image.stem}.png")
