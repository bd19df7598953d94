"""Label-free scores: how well a segmentation model is adapted to unlabeled target images.

Every score is one number over a whole image set, oriented so that **higher = better expected
target mIoU**, and accumulated over the data set (pixel sums and counts, never a mean of
per-batch means). ``probs`` are softmax predictions (B, C, H, W) at the input's size; C classes.

============  =================================================================================
name          definition (range)
============  =================================================================================
entropy       minus the mean per-pixel prediction entropy, divided by log C ([-1, 0]; a uniform
              prediction scores -1). ADVENT (Vu et al., "ADVENT: Adversarial Entropy
              Minimization for Domain Adaptation in Semantic Segmentation", CVPR 2019).
infomax       information maximisation: (H(mean prediction) - mean H(prediction)) / log C
              ([-1, 1]): confident pixels *and* diverse classes. SHOT (Liang et al., "Do We
              Really Need to Access the Source Data?", ICML 2020) minimises its negative.
agreement     share of pixels whose argmax is the same on the image and on an augmented view,
              over two views: horizontal flip (prediction flipped back) and a fixed photometric
              change (gamma 1.25, contrast 0.8 about the image mean) ([0, 1]; identical views
              score 1): the augmentation consistency that FixMatch (Sohn et al., NeurIPS
              2020) and Mean Teacher train for, read here as a measurement.
class_shift   minus the total-variation distance 1/2 sum_c |q_c - s_c| between the predicted
              class frequencies q (argmax pixels over the set) and the source labels' s ([-1,
              0]; identical histograms score 0). Needs labeled source images. A label-shift
              prior, as in class-balanced self-training (CBST, Zou et al., ECCV 2018).
snd           Soft Neighborhood Density (Saito et al., "Tune it the Right Way: Unsupervised
              Validation of Domain Adaptation via Soft Neighborhood Density", ICCV 2021) on
              softmax vectors of sampled pixels (``SND_PIXELS`` in all, spread over the
              images, positions from a fixed seed): L2-normalise, similarities / T (T = 0.05),
              self-similarity excluded, row softmax, mean row entropy, divided by log(N - 1)
              ([0, 1]).
mixval        MixVal-style mixed-sample probe (Hu et al., "Mixed Samples as Probes for
              Unsupervised Model Selection in Domain Adaptation", NeurIPS 2023): each image is
              mixed with its neighbour in the stream by a ClassMix mask of its own pseudo-label
              (half of its predicted classes; a CutMix box when it predicts one class), and the
              score is the share of mixed pixels whose prediction matches the mixed
              pseudo-label ([0, 1]).
atc           Average Thresholded Confidence (Garg et al., "Leveraging Unlabeled Data to
              Predict Out-of-Distribution Performance", ICLR 2022), max-softmax variant: the
              share of target pixels whose confidence >= t, where t makes that share on
              labeled source pixels equal their accuracy; ``DEFAULT_ATC_THRESHOLD`` (0.9)
              without source images ([0, 1]).
============  =================================================================================

All of them fail in known ways: a model that predicts one class everywhere is confident,
flip-consistent and mixes perfectly (only ``infomax`` and ``class_shift`` notice it).
`segshift.evaluation.label_free` runs them over a data loader; this module holds the
definitions, testable on hand-made tensors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from segshift.config import SCORE_NAMES

SND_TEMPERATURE = 0.05  # Saito et al.'s T
SND_PIXELS = 2048  # pixels sampled over the whole set (an N x N similarity matrix)
DEFAULT_ATC_THRESHOLD = 0.9
ATC_BINS = 10_000  # resolution of the source-confidence histogram that fixes t
SEED = 2021  # fixed draws (SND positions, MixVal classes): the same images give the same score
EPS = 1e-12

# name -> (needs labeled source images, one-line summary)
SCORES: dict[str, tuple[bool, str]] = {
    "entropy": (False, "minus mean prediction entropy / log C (ADVENT, CVPR 2019)"),
    "infomax": (False, "H(mean p) - mean H(p), / log C (SHOT, ICML 2020)"),
    "agreement": (False, "argmax agreement with flipped and photometric views"),
    "class_shift": (True, "minus TV distance of predicted vs source class frequencies"),
    "snd": (False, "Soft Neighborhood Density of pixel softmax vectors (ICCV 2021)"),
    "mixval": (False, "ClassMix probe: mixed predictions vs mixed pseudo-labels (NeurIPS 2023)"),
    "atc": (False, "Average Thresholded Confidence (ICLR 2022)"),
}
assert tuple(SCORES) == SCORE_NAMES, "segshift.config.SCORE_NAMES lists the scores"


# --------------------------------------------------------------------------- definitions
def prediction_entropy(probs: torch.Tensor) -> torch.Tensor:
    """H(p) = -sum_c p_c log p_c per pixel, in nats: (B, C, H, W) -> (B, H, W). A uniform
    prediction over C classes has entropy log C; a one-hot one 0."""
    return -(probs * probs.clamp_min(EPS).log()).sum(dim=1)


def argmax_agreement(probs: torch.Tensor, other: torch.Tensor) -> float:
    """Share of pixels with the same argmax class in two (B, C, H, W) predictions."""
    return float((probs.argmax(1) == other.argmax(1)).float().mean())


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    """1/2 sum |p - q| of two histograms, each normalised to sum 1 first (0 = identical)."""
    p, q = p.double() / p.double().sum(), q.double() / q.double().sum()
    return float(0.5 * (p - q).abs().sum())


def soft_neighborhood_density(
    features: torch.Tensor, temperature: float = SND_TEMPERATURE
) -> float:
    """SND of N feature vectors (N, D), N >= 3, normalised by log(N - 1) to [0, 1].

    Cosine similarities / ``temperature``, each vector's similarity to itself left out, a
    softmax over each row (a soft neighbourhood), the mean of the rows' entropies. The
    reference code fills the diagonal with -1 / T instead of leaving it out, which changes the
    result by less than exp(-2 / T) per row (2e-18 at T = 0.05).
    """
    n = features.shape[0]
    if n < 3:
        raise ValueError(f"SND needs at least 3 vectors, got {n}")
    unit = F.normalize(features.float(), dim=1)
    similarity = unit @ unit.T / temperature
    similarity.fill_diagonal_(-math.inf)
    neighbours = similarity.softmax(dim=1)
    entropy = -(neighbours * neighbours.clamp_min(EPS).log()).sum(dim=1)
    return float(entropy.mean() / math.log(n - 1))


def atc_threshold(histogram: torch.Tensor, accuracy: float) -> float:
    """ATC's t from a histogram of source confidences over [0, 1] (``bins`` equal bins): the
    lower edge of the bin where the share of pixels at or above it first reaches ``accuracy``
    (the share of correct pixels), so that share(confidence >= t) = accuracy up to one bin."""
    counts = histogram.double().flip(0).cumsum(0)  # pixels at or above each bin, from the top
    total = float(counts[-1])
    if total == 0:
        raise ValueError("no source pixels to fit the ATC threshold on")
    reached = int(torch.searchsorted(counts, accuracy * total - 1e-9))
    bins = histogram.numel()
    return (bins - 1 - min(reached, bins - 1)) / bins


def photometric_view(images: torch.Tensor) -> torch.Tensor:
    """The fixed photometric change of ``agreement``: gamma 1.25, then contrast 0.8 about each
    image's mean, on [0, 1] RGB (B, 3, H, W)."""
    x = images.clamp(0, 1).pow(1.25)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * 0.8 + mean).clamp(0, 1)


def class_mix_mask(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """ClassMix mask (H, W) bool of a pseudo-label (H, W): pixels of a random half of its
    classes (Olsson et al., WACV 2021); one class only: a random box of half the area."""
    classes = labels.unique()
    if classes.numel() > 1:
        chosen = classes[torch.randperm(classes.numel(), generator=generator)]
        return torch.isin(labels, chosen[: (classes.numel() + 1) // 2].to(labels.device))
    h, w = labels.shape
    bh, bw = max(1, round(h / math.sqrt(2))), max(1, round(w / math.sqrt(2)))
    y = int(torch.randint(0, h - bh + 1, (1,), generator=generator))
    x = int(torch.randint(0, w - bw + 1, (1,), generator=generator))
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[y : y + bh, x : x + bw] = True
    return mask


# --------------------------------------------------------------------------- accumulation
@dataclass
class ScoreInput:
    """One batch for the accumulators: ``images`` (B, 3, H, W) in [0, 1], their ``probs``
    (B, C, H, W), and ``predict`` (images -> probs) for the scores that need more views."""

    images: torch.Tensor
    probs: torch.Tensor
    predict: Callable[[torch.Tensor], torch.Tensor]


class Score:
    """Sums over the set: ``update`` per batch, ``compute`` once at the end."""

    def update(self, batch: ScoreInput) -> None:
        raise NotImplementedError

    def compute(self) -> float:
        raise NotImplementedError


class EntropyScore(Score):
    def __init__(self, num_classes: int) -> None:
        self.total, self.pixels, self.log_c = 0.0, 0, math.log(num_classes)

    def update(self, batch: ScoreInput) -> None:
        self.total += float(prediction_entropy(batch.probs).double().sum())
        self.pixels += batch.probs[:, 0].numel()

    def compute(self) -> float:
        return -self.total / self.pixels / self.log_c


class InfoMaxScore(Score):
    def __init__(self, num_classes: int) -> None:
        self.entropy = EntropyScore(num_classes)
        self.mass = torch.zeros(num_classes, dtype=torch.float64)

    def update(self, batch: ScoreInput) -> None:
        self.entropy.update(batch)
        self.mass += batch.probs.double().sum(dim=(0, 2, 3)).cpu()

    def compute(self) -> float:
        mean = (self.mass / self.mass.sum()).view(1, -1, 1, 1)
        diversity = float(prediction_entropy(mean).squeeze()) / self.entropy.log_c
        return diversity + self.entropy.compute()


class AgreementScore(Score):
    def __init__(self) -> None:
        self.agree, self.pixels = 0, 0

    def update(self, batch: ScoreInput) -> None:
        pred = batch.probs.argmax(1)
        flipped = batch.predict(batch.images.flip(-1)).flip(-1).argmax(1)
        jittered = batch.predict(photometric_view(batch.images)).argmax(1)
        self.agree += int((pred == flipped).sum()) + int((pred == jittered).sum())
        self.pixels += 2 * pred.numel()

    def compute(self) -> float:
        return self.agree / self.pixels


class ClassShiftScore(Score):
    def __init__(self, num_classes: int, source_counts: torch.Tensor) -> None:
        self.counts = torch.zeros(num_classes, dtype=torch.float64)
        self.source = source_counts.double().cpu()

    def update(self, batch: ScoreInput) -> None:
        pred = batch.probs.argmax(1).flatten().cpu()
        self.counts += torch.bincount(pred, minlength=self.counts.numel()).double()

    def compute(self) -> float:
        return -total_variation(self.counts, self.source)


class SNDScore(Score):
    def __init__(self, images: int, pixels: int | None = None) -> None:
        pixels = SND_PIXELS if pixels is None else pixels
        self.per_image = max(1, math.ceil(pixels / max(images, 1)))
        self.vectors: list[torch.Tensor] = []
        self.seen = 0

    def update(self, batch: ScoreInput) -> None:
        b, c, h, w = batch.probs.shape
        flat = batch.probs.permute(0, 2, 3, 1).reshape(b, h * w, c)
        for i in range(b):
            generator = torch.Generator().manual_seed(SEED + self.seen)
            k = min(self.per_image, h * w)
            where = torch.randperm(h * w, generator=generator)[:k].to(flat.device)
            self.vectors.append(flat[i, where].float().cpu())
            self.seen += 1

    def compute(self) -> float:
        return soft_neighborhood_density(torch.cat(self.vectors))


class MixValScore(Score):
    """Each image a is mixed with the image before it (in the batch, else the previous batch's
    last one of the same size; the very first image waits for none and is skipped)."""

    def __init__(self) -> None:
        self.match, self.pixels, self.seen = 0, 0, 0
        self.previous: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, batch: ScoreInput) -> None:
        labels = batch.probs.argmax(1)
        images = batch.images
        partners = [(images[i - 1], labels[i - 1]) for i in range(1, images.shape[0])]
        if self.previous is not None and self.previous[0].shape == images[0].shape:
            partners.insert(0, self.previous)
            first = 0
        else:
            first = 1
        self.previous = (images[-1], labels[-1])
        if not partners:
            return
        mixed_x, mixed_y = [], []
        for i, (other_x, other_y) in zip(range(first, images.shape[0]), partners, strict=True):
            generator = torch.Generator().manual_seed(SEED + self.seen)
            self.seen += 1
            mask = class_mix_mask(labels[i], generator)
            mixed_x.append(torch.where(mask, images[i], other_x))
            mixed_y.append(torch.where(mask, labels[i], other_y))
        prediction = batch.predict(torch.stack(mixed_x)).argmax(1)
        target = torch.stack(mixed_y)
        self.match += int((prediction == target).sum())
        self.pixels += target.numel()

    def compute(self) -> float:
        return self.match / self.pixels if self.pixels else float("nan")


class ATCScore(Score):
    def __init__(self, threshold: float) -> None:
        self.threshold, self.above, self.pixels = threshold, 0, 0

    def update(self, batch: ScoreInput) -> None:
        confidence = batch.probs.max(dim=1).values
        self.above += int((confidence >= self.threshold).sum())
        self.pixels += confidence.numel()

    def compute(self) -> float:
        return self.above / self.pixels


def build_scores(
    names: list[str],
    num_classes: int,
    images: int,
    source_counts: torch.Tensor | None = None,
    atc_threshold: float | None = None,
) -> dict[str, Score]:
    """Accumulators for ``names`` over a set of ``images`` images. ``source_counts`` (C,): the
    source label pixels per class (``class_shift``); ``atc_threshold``: t fitted on source
    (None: ``DEFAULT_ATC_THRESHOLD``)."""
    scores: dict[str, Score] = {}
    for name in names:
        if name == "entropy":
            scores[name] = EntropyScore(num_classes)
        elif name == "infomax":
            scores[name] = InfoMaxScore(num_classes)
        elif name == "agreement":
            scores[name] = AgreementScore()
        elif name == "class_shift":
            if source_counts is None:
                raise ValueError("class_shift needs the source label histogram")
            scores[name] = ClassShiftScore(num_classes, source_counts)
        elif name == "snd":
            scores[name] = SNDScore(images)
        elif name == "mixval":
            scores[name] = MixValScore()
        elif name == "atc":
            threshold = DEFAULT_ATC_THRESHOLD if atc_threshold is None else atc_threshold
            scores[name] = ATCScore(threshold)
        else:
            raise KeyError(f"unknown score '{name}'; known: {', '.join(SCORE_NAMES)}")
    return scores
