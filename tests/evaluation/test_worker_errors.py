"""An error raised in a validation DataLoader worker keeps its one-line message."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from segshift.errors import DataError
from segshift.evaluation import evaluate
from segshift.evaluation.evaluate import worker_error_message


class BadSecondImage(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> dict:
        if index == 1:
            raise DataError("/data/val/b.png: cannot read image (truncated)")
        return {"image": torch.zeros(3, 4, 4), "label": torch.zeros(4, 4, dtype=torch.int64)}


class Constant(nn.Module):
    def forward(self, x: torch.Tensor) -> dict:
        return {"out": torch.zeros(x.shape[0], 2, *x.shape[-2:])}


@pytest.mark.parametrize("workers", [0, 1])
def test_worker_error_is_one_line(workers: int) -> None:
    loader = DataLoader(BadSecondImage(), batch_size=1, num_workers=workers)
    with pytest.raises(DataError) as caught:
        evaluate(Constant(), loader, 2, device="cpu")
    assert str(caught.value) == "/data/val/b.png: cannot read image (truncated)"


def test_worker_error_message_unwraps_pytorchs_text() -> None:
    wrapped = (
        "Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
        'last):\n  File "x.py", line 1, in f\nsegshift.errors.DataError: /a.png: bad: really\n'
    )
    assert worker_error_message(wrapped) == "/a.png: bad: really"
    assert worker_error_message("/a.png: plain") == "/a.png: plain"
