"""The real CamVid in ../shared/data/camvid (skipped where it is not available)."""

from pathlib import Path

import numpy as np
import pytest

from segshift.data.camvid import CamVidDataset

CAMVID = Path("/work/shared/data/camvid")

pytestmark = pytest.mark.skipif(
    not (CAMVID / "train").is_dir(), reason=f"{CAMVID} is not available"
)


def test_real_camvid_sizes_and_labels():
    train, val = CamVidDataset(CAMVID, split="train"), CamVidDataset(CAMVID, split="val")
    assert (len(train), len(val)) == (367, 101)
    image, label = val.load(0)
    assert image.shape == (360, 480, 3) and label.shape == (360, 480)
    ids = set(np.unique(label).tolist())
    assert ids <= set(range(11)) | {255} and len(ids - {255}) >= 5
    sample = train[0, 0]
    assert sample["label"].shape == (360, 480)
