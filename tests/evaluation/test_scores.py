"""Label-free scores (`segshift.evaluation.scores`) on hand-computed tiny cases."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from segshift.config import SCORE_NAMES
from segshift.evaluation.label_free import score_model, source_statistics, spread_indices
from segshift.evaluation.scores import (
    DEFAULT_ATC_THRESHOLD,
    SCORES,
    ScoreInput,
    argmax_agreement,
    atc_threshold,
    build_scores,
    class_mix_mask,
    prediction_entropy,
    soft_neighborhood_density,
    total_variation,
)


def one_hot(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """(B, H, W) class ids -> (B, C, H, W) one-hot probabilities."""
    return torch.nn.functional.one_hot(labels, classes).permute(0, 3, 1, 2).float()


def compute(name: str, probs: torch.Tensor, predict=None, **kwargs) -> float:
    score = build_scores([name], probs.shape[1], probs.shape[0], **kwargs)[name]
    score.update(ScoreInput(torch.rand(probs.shape[0], 3, *probs.shape[2:]), probs, predict))
    return score.compute()


def test_every_configured_name_has_a_score() -> None:
    assert tuple(SCORES) == SCORE_NAMES


def test_entropy_of_a_uniform_prediction_is_log_c_and_scores_minus_one() -> None:
    uniform = torch.full((2, 5, 3, 4), 0.2)
    assert torch.allclose(prediction_entropy(uniform), torch.full((2, 3, 4), math.log(5)))
    assert compute("entropy", uniform) == pytest.approx(-1.0)
    confident = one_hot(torch.randint(0, 5, (2, 3, 4)), 5)
    assert compute("entropy", confident) == pytest.approx(0.0, abs=1e-9)


def test_entropy_accumulates_pixels_not_batch_means() -> None:
    # one batch of 1 uniform pixel, one of 3 confident pixels: the pixel mean is -1/4, the mean
    # of the two batch means would be -1/2
    score = build_scores(["entropy"], 2, 2)["entropy"]
    score.update(ScoreInput(torch.rand(1, 3, 1, 1), torch.full((1, 2, 1, 1), 0.5), None))
    score.update(ScoreInput(torch.rand(1, 3, 1, 3), one_hot(torch.zeros(1, 1, 3).long(), 2), None))
    assert score.compute() == pytest.approx(-0.25)


def test_infomax_rewards_confident_and_diverse_predictions() -> None:
    uniform = torch.full((1, 4, 2, 2), 0.25)
    assert compute("infomax", uniform) == pytest.approx(0.0, abs=1e-6)  # float32 pixels
    # every class once, each pixel one-hot: H(mean) = log 4, mean H = 0
    diverse = one_hot(torch.tensor([[[0, 1], [2, 3]]]), 4)
    assert compute("infomax", diverse) == pytest.approx(1.0)
    collapsed = one_hot(torch.zeros(1, 2, 2).long(), 4)
    assert compute("infomax", collapsed) == pytest.approx(0.0, abs=1e-9)


def test_agreement_of_identical_views_is_one() -> None:
    probs = torch.rand(2, 3, 4, 5).softmax(1)
    assert argmax_agreement(probs, probs.clone()) == 1.0
    assert argmax_agreement(probs, probs.roll(1, dims=1)) < 1.0
    # a predictor that ignores its input sees identical views: flipped back and jittered
    labels = torch.tensor([[0, 1, 2, 1, 0]]).expand(4, 5)[None].expand(2, 4, 5)  # symmetric
    constant = one_hot(labels.contiguous(), 3)
    assert compute("agreement", constant, predict=lambda x: constant) == 1.0
    # a predictor that disagrees with its first prediction on every pixel of every view
    assert compute("agreement", constant, predict=lambda x: constant.roll(1, dims=1)) == 0.0


def test_class_shift_of_identical_histograms_is_zero() -> None:
    counts = torch.tensor([10.0, 30.0, 60.0])
    assert total_variation(counts, 2 * counts) == 0.0
    assert total_variation(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])) == 1.0
    labels = torch.tensor([[[0, 1, 2, 2]]])  # 1/4, 1/4, 1/2
    probs = one_hot(labels, 3)
    source = torch.tensor([25.0, 25.0, 50.0])
    assert compute("class_shift", probs, source_counts=source) == 0.0
    # source 1/2, 1/2, 0: |1/4 - 1/2| + |1/4 - 1/2| + |1/2 - 0| = 1, halved
    shifted = torch.tensor([5.0, 5.0, 0.0])
    assert compute("class_shift", probs, source_counts=shifted) == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="source label histogram"):
        build_scores(["class_shift"], 3, 1)


def test_soft_neighborhood_density_on_a_hand_made_case() -> None:
    # a = b = e1, c = e2, T = 1. Rows a and b: the neighbour b (a) at similarity 1, c at 0:
    # p = e / (e + 1), entropy h. Row c: a and b both at 0: uniform, entropy log 2.
    features = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    p = math.e / (math.e + 1)
    h = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    expected = (2 * h + math.log(2)) / 3 / math.log(2)
    assert soft_neighborhood_density(features, temperature=1.0) == pytest.approx(expected)
    # identical vectors: every neighbourhood uniform, the largest density
    assert soft_neighborhood_density(torch.ones(5, 3)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 3"):
        soft_neighborhood_density(torch.ones(2, 3))


def test_snd_score_samples_fixed_pixels() -> None:
    probs = torch.rand(3, 4, 8, 8).softmax(1)
    first, second = compute("snd", probs), compute("snd", probs)
    assert first == second and 0.0 < first <= 1.0


def test_class_mix_mask_takes_half_of_the_classes_or_a_box() -> None:
    labels = torch.tensor([[0, 0, 1, 1], [2, 2, 3, 3]])
    mask = class_mix_mask(labels, torch.Generator().manual_seed(0))
    chosen = labels[mask].unique()
    assert len(chosen) == 2 and torch.equal(mask, torch.isin(labels, chosen))
    box = class_mix_mask(torch.zeros(8, 8, dtype=torch.long), torch.Generator().manual_seed(0))
    assert box.sum() == 36  # round(8 / sqrt 2) = 6 squared: about half the area


def test_mixval_of_a_per_pixel_classifier_is_one() -> None:
    # the prediction of a pixel depends on that pixel only: a mixed image's prediction is the
    # mixed pseudo-label everywhere
    def predict(images: torch.Tensor) -> torch.Tensor:
        return one_hot((images[:, 0] > 0.5).long(), 2)

    images = torch.rand(3, 3, 6, 6)
    score = build_scores(["mixval"], 2, 3)["mixval"]
    score.update(ScoreInput(images[:2], predict(images[:2]), predict))
    score.update(ScoreInput(images[2:], predict(images[2:]), predict))
    assert score.pixels == 2 * 36  # the first image has no partner; the third pairs across
    assert score.compute() == 1.0


def test_atc_threshold_equals_the_accuracy_quantile() -> None:
    # 10 source pixels, confidences 0.05, 0.15, ..., 0.95, 60% correct: t leaves 6 above
    histogram = torch.zeros(10)
    histogram[torch.arange(10)] = 1
    assert atc_threshold(histogram, 0.6) == pytest.approx(0.4)
    assert atc_threshold(histogram, 1.0) == 0.0
    probs = torch.tensor([0.3, 0.5, 0.95, 0.99]).view(1, 1, 1, 4)
    probs = torch.cat([probs, 1 - probs], 1)  # confidences 0.7, 0.5, 0.95, 0.99
    assert compute("atc", probs) == pytest.approx(2 / 4)  # default t = 0.9
    assert compute("atc", probs, atc_threshold=0.6) == pytest.approx(3 / 4)
    assert DEFAULT_ATC_THRESHOLD == 0.9


class PixelModel(nn.Module):
    """A 1x1 convolution: per-pixel predictions, flip-equivariant."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": 8 * self.conv(x)}


def test_score_model_and_source_statistics_over_a_loader() -> None:
    images = torch.rand(5, 3, 6, 8)
    labels = torch.randint(0, 3, (5, 6, 8))
    labels[0, 0] = 255
    items = [{"image": images[i], "label": labels[i]} for i in range(5)]
    model = PixelModel().train()
    source = source_statistics(model, DataLoader(items, batch_size=2), 3, fit_atc=True)
    assert source.counts.sum() == 5 * 48 - 8 and source.images == 5
    assert 0 <= source.threshold <= 1 and 0 <= source.accuracy <= 1
    names = list(SCORE_NAMES)
    scores = score_model(model, DataLoader(items, batch_size=2), 3, names, source=source)
    assert model.training  # switched back
    assert set(scores) == set(names)
    assert scores["agreement"] < 1.0  # the photometric view changes some pixels
    assert scores["mixval"] == 1.0  # a per-pixel model
    one_batch = score_model(model, DataLoader(items, batch_size=5), 3, names, source=source)
    for name in ("entropy", "infomax", "class_shift", "atc"):  # batching does not matter
        assert one_batch[name] == pytest.approx(scores[name])


def test_spread_indices_are_fixed_and_spread() -> None:
    assert spread_indices(10, 4) == [0, 2, 5, 7]
    assert spread_indices(3, 8) == [0, 1, 2]
    assert spread_indices(3, None) == [0, 1, 2]
