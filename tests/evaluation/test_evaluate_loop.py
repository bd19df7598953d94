"""evaluate(): batches -> confusion matrix -> metrics."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segshift.evaluation import ConfusionMatrix, evaluate, predict

NUM_CLASSES = 3


class OneHotModel(nn.Module):
    """Logits = the image itself, so an image that one-hot encodes the label is predicted exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> dict:
        return {"out": x * self.scale}


def perfect_batches(seed: int = 0, n: int = 3) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n):
        label = torch.randint(0, NUM_CLASSES, (2, 8, 10), generator=generator)
        image = F.one_hot(label, NUM_CLASSES).permute(0, 3, 1, 2).float() * 10
        label[torch.rand(label.shape, generator=generator) < 0.1] = 255
        batches.append({"image": image, "label": label})
    return batches


def test_perfect_model_scores_one():
    result = evaluate(OneHotModel(), perfect_batches(), NUM_CLASSES, progress=True)
    assert result["miou"] == 1.0
    assert result["pixel_accuracy"] == 1.0
    valid = sum(int((b["label"] != 255).sum()) for b in perfect_batches())
    assert int(result["confusion_matrix"].sum()) == valid
    assert result["confusion_matrix"].dtype == torch.int64


def test_label_larger_than_image_is_scored_at_label_size():
    torch.manual_seed(0)
    model = nn.Conv2d(3, NUM_CLASSES, 1)

    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = model

        def forward(self, x: torch.Tensor) -> dict:
            return {"out": self.conv(x)}

    wrapped = Wrapped()
    batches = [
        {"image": torch.randn(2, 3, 8, 10), "label": torch.randint(0, NUM_CLASSES, (2, 16, 20))}
        for _ in range(2)
    ]
    result = evaluate(wrapped, batches, NUM_CLASSES, flip=True, subset=[0, 2])

    expected = ConfusionMatrix(NUM_CLASSES)
    for batch in batches:
        probs = predict(
            wrapped.eval(), batch["image"], NUM_CLASSES, flip=True, output_size=(16, 20)
        )
        expected.update(probs.argmax(1), batch["label"])
    assert torch.equal(result["confusion_matrix"], expected.matrix)
    assert result["miou"] == pytest.approx(expected.compute([0, 2])["miou"])
    assert result["subset"] == [0, 2]


def test_all_reduce_is_applied_and_training_mode_restored():
    model = OneHotModel().train()
    single = evaluate(model, perfect_batches(), NUM_CLASSES)
    doubled = evaluate(model, perfect_batches(), NUM_CLASSES, all_reduce=lambda t: t * 2)
    assert torch.equal(doubled["confusion_matrix"], single["confusion_matrix"] * 2)
    assert model.training


def test_slide_mode_options_pass_through():
    result = evaluate(
        OneHotModel(), perfect_batches(), NUM_CLASSES, mode="slide", crop_size=(4, 4), stride=(3, 3)
    )
    assert result["miou"] == 1.0
