"""The real CamVid, found as the benchmarks find it (``benchmarks.common.camvid_root``:
``$SEGSHIFT_CAMVID``, else ``shared/data/camvid`` beside the checkout); skipped, with the place
it looked, where it is not there."""

import numpy as np
import pytest
from benchmarks.common import CAMVID_ENV, camvid_root

from segshift.data.camvid import CamVidDataset

CAMVID = camvid_root()

pytestmark = pytest.mark.skipif(
    not (CAMVID / "train").is_dir(), reason=f"no CamVid at {CAMVID} (set {CAMVID_ENV})"
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
