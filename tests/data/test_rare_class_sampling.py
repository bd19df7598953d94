"""Rare-class sampling (DAFormer): probabilities, eligibility, the stream, the cache, the re-crop."""

from __future__ import annotations

import itertools
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

import segshift.data.samplers as samplers
from helpers import assert_resume_exact
from segshift.config import DatasetConfig
from segshift.data import build_dataset
from segshift.data.samplers import (
    RareClassSampling,
    cached_class_pixel_counts,
    class_stats_path,
    rcs_class_probabilities,
)
from segshift.engine.loaders import RareClassSampler, Stream
from segshift.errors import ConfigError

# image 0: classes 0 and 1; image 1: classes 0 and 2 (the rarest); image 2: class 1 only
COUNTS = [{0: 500, 1: 40}, {0: 300, 2: 90}, {1: 70}]


def softmax(logits: list[float]) -> list[float]:
    top = max(logits)
    weights = [math.exp(x - top) for x in logits]
    return [w / sum(weights) for w in weights]


def test_probabilities_match_a_hand_computation() -> None:
    # f = 0.9, 0.09, 0.01 -> (1 - f) / 0.01 = 10, 91, 99
    probabilities = rcs_class_probabilities({0: 900, 1: 90, 2: 10}, temperature=0.01)
    assert list(probabilities) == [2, 1, 0]  # ascending by pixel count, as DAFormer
    expected = softmax([99.0, 91.0, 10.0])
    assert list(probabilities.values()) == pytest.approx(expected, rel=1e-12)
    assert probabilities[2] == pytest.approx(1 / (1 + math.exp(-8) + math.exp(-89)))
    mild = rcs_class_probabilities({0: 900, 1: 90, 2: 10}, temperature=1.0)
    assert list(mild.values()) == pytest.approx(softmax([0.99, 0.91, 0.1]))


def test_small_temperature_concentrates_on_the_rarest_class() -> None:
    totals = {0: 5000, 1: 400, 2: 300, 3: 20}
    assert rcs_class_probabilities(totals, 1e-4)[3] == pytest.approx(1.0)
    flat = rcs_class_probabilities(totals, 1e4)
    assert max(flat.values()) - min(flat.values()) < 1e-3
    with pytest.raises(ValueError, match="temperature"):
        rcs_class_probabilities(totals, 0.0)


def test_eligibility_by_min_pixels_and_dropped_classes() -> None:
    rcs = RareClassSampling.from_counts(COUNTS, temperature=0.01, min_pixels=50)
    eligible = dict(zip(rcs.classes, rcs.samples))
    assert eligible == {2: (1,), 1: (2,), 0: (0, 1)}  # 40 pixels of class 1 are not > 50
    assert rcs.classes == (2, 1, 0)
    # no image has more than 80 pixels of class 1: dropped, P renormalised over classes 2 and 0
    strict = RareClassSampling.from_counts(COUNTS, temperature=0.01, min_pixels=80)
    assert strict.classes == (2, 0) and strict.samples == ((1,), (0, 1))
    full = rcs_class_probabilities({0: 800, 1: 110, 2: 90}, 0.01)
    kept = full[2] + full[0]
    assert strict.probabilities == pytest.approx((full[2] / kept, full[0] / kept))
    with pytest.raises(ConfigError, match="rcs_min_pixels"):
        RareClassSampling.from_counts(COUNTS, temperature=0.01, min_pixels=1000)


def test_draws_follow_the_probabilities() -> None:
    rcs = RareClassSampling.from_counts(COUNTS, temperature=1.0, min_pixels=50)
    rng = np.random.default_rng(0)
    draws = [rcs.draw(rng) for _ in range(20000)]
    classes = Counter(c for _, c in draws)
    for cls, probability in zip(rcs.classes, rcs.probabilities):
        assert classes[cls] / len(draws) == pytest.approx(probability, abs=0.015)
    assert Counter(i for i, c in draws if c == 0).keys() == {0, 1}
    assert rcs.summary(["a", "b", "c"], top=1).endswith("top 1 of 3: c 0.405 (1)")


class Echo(Dataset):
    """Returns the key it was given, so tests see exactly what the sampler produced."""

    def __len__(self) -> int:
        return 3

    def __getitem__(self, key: tuple[int, int, int]) -> dict:
        index, seed, cls = key
        return {"index": index, "seed": seed, "cls": cls}


def test_sampler_draws_eligible_images_and_interleaves_ranks() -> None:
    rcs = RareClassSampling.from_counts(COUNTS, temperature=1.0, min_pixels=50)
    eligible = dict(zip(rcs.classes, rcs.samples))
    full = list(itertools.islice(RareClassSampler(rcs, 3, seed=4), 60))
    assert all(index in eligible[cls] for index, _, cls in full)
    assert len({cls for _, _, cls in full}) == 3 and len({s for _, s, _ in full}) == 60
    ranks = [RareClassSampler(rcs, 3, seed=4, rank=r, world_size=2) for r in (0, 1)]
    assert list(itertools.islice(ranks[0], 30)) == full[0::2]
    assert list(itertools.islice(ranks[1], 30)) == full[1::2]
    resumed = RareClassSampler(rcs, 3, seed=4, start=25)
    assert list(itertools.islice(resumed, 35)) == full[25:]


def test_stream_resumes_exactly_and_ignores_the_worker_count() -> None:
    rcs = RareClassSampling.from_counts(COUNTS, temperature=1.0, min_pixels=50)

    def stream(num_workers: int = 0) -> Stream:
        return Stream(Echo(), batch_size=2, seed=7, num_workers=num_workers, rare_classes=rcs)

    straight = stream()
    batches = [next(straight) for _ in range(6)]
    first = stream()
    for _ in range(3):
        next(first)
    resumed = stream()
    resumed.load_state_dict(first.state_dict())
    with_worker = stream(num_workers=1)
    for k, expected in enumerate(batches):
        got = [next(with_worker)] + ([next(resumed)] if k >= 3 else [])
        for batch, key in itertools.product(got, ("index", "seed", "cls")):
            assert torch.equal(batch[key], expected[key])


def write_dataset(root: Path, masks: list[np.ndarray]) -> Path:
    """A folder dataset (CamVid's 11 classes) with the given masks and random images."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for k, mask in enumerate(masks):
        image = rng.integers(0, 256, (*mask.shape, 3), dtype=np.uint8)
        Image.fromarray(image).save(root / "images" / f"img{k}.png")
        Image.fromarray(mask).save(root / "masks" / f"img{k}.png")
    (root / "classes.yaml").write_text("label_space: camvid\n")
    return root


def corner_masks() -> list[np.ndarray]:
    """Image 0: class 3 with a 12x12 block of class 5 in the top-left corner; image 1: class 3."""
    first = np.full((40, 40), 3, np.uint8)
    first[:12, :12] = 5
    first[39] = 255
    return [first, np.full((40, 40), 3, np.uint8)]


def rcs_config(root: Path, **fields) -> DatasetConfig:
    defaults = {"rcs_temperature": 0.01, "rcs_min_pixels": 20}
    return DatasetConfig(name="folder", root=str(root), **{**defaults, **fields})


def test_statistics_are_cached_once_and_reused(tmp_path: Path, monkeypatch) -> None:
    dataset = build_dataset(rcs_config(write_dataset(tmp_path / "d", corner_masks())), True)
    real = samplers.count_class_pixels
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(samplers, "count_class_pixels", counting)
    cache = tmp_path / "run" / "rcs"
    counts = cached_class_pixel_counts(dataset, cache)
    assert counts == [{3: 1600 - 144 - 40, 5: 144}, {3: 1600}]  # full resolution, no 255
    path = class_stats_path(dataset, cache)
    assert path.parent == cache and path.name.startswith("folder-") and path.is_file()
    assert cached_class_pixel_counts(dataset, cache) == counts and len(calls) == 1

    path.write_text("{not json")
    with pytest.warns(RuntimeWarning, match="recomputing"):
        assert cached_class_pixel_counts(dataset, cache) == counts
    assert len(calls) == 2
    mask = dataset.files[1].mask
    Image.fromarray(np.full((40, 40), 4, np.uint8)).save(mask)  # regenerated masks: stale
    os.utime(mask, ns=(1, 1))
    with pytest.warns(RuntimeWarning, match="recomputing"):
        assert cached_class_pixel_counts(dataset, cache)[1] == {4: 1600}
    assert len(calls) == 3
    subset = build_dataset(rcs_config(dataset.root, n_labeled=1), True)
    assert class_stats_path(subset, cache) != path  # another selection, another file


def test_recrop_shows_the_class_when_it_can(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "d", corner_masks())
    # crop threshold: rcs_min_pixels * rcs_min_crop_ratio = 20 * 0.5 = 10 pixels of class 5
    cfg = rcs_config(root, crop_size=[20, 20], hflip=True)
    dataset = build_dataset(cfg, train=True)
    assert dataset.recrop_min_pixels == 10

    def shows(sample: dict) -> bool:
        return int((sample["label"] == 5).sum()) > 10

    plain = [shows(dataset[0, seed]) for seed in range(40)]
    focused = [dataset[0, seed, 5] for seed in range(40)]
    assert sum(plain) < 20 and sum(shows(s) for s in focused) >= 38
    for seed in range(40):
        again = dataset[0, seed, 5]
        assert torch.equal(again["image"], focused[seed]["image"])
        if plain[seed]:  # the first crop was good enough: kept as it is
            assert torch.equal(focused[seed]["label"], dataset[0, seed]["label"])
    assert not shows(dataset[1, 0, 5])  # impossible: the last of the 11 crops is kept
    no_recrop = build_dataset(rcs_config(root, crop_size=[20, 20], rcs_min_crop_ratio=0.0), True)
    assert torch.equal(no_recrop[0, 3, 5]["label"], no_recrop[0, 3]["label"])


def test_rcs_config_errors(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "d", corner_masks())
    with pytest.raises(ConfigError, match="rcs_temperature must be > 0"):
        build_dataset(rcs_config(root, rcs_temperature=0.0), True)
    with pytest.raises(ConfigError, match="rcs_min_crop_ratio"):
        build_dataset(rcs_config(root, rcs_min_crop_ratio=-1.0), True)
    with pytest.raises(ConfigError, match="labeled"):
        build_dataset(rcs_config(root, labeled=False), True)


def test_trainer_with_rcs_resumes_exactly(tiny_config, tmp_path: Path, monkeypatch, capsys):
    real = samplers.count_class_pixels
    calls = []
    monkeypatch.setattr(
        samplers, "count_class_pixels", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    rcs = ["data.streams.labeled.rcs_temperature=0.01", "data.streams.labeled.rcs_min_pixels=50"]
    straight, resumed = assert_resume_exact(tiny_config, tmp_path, *rcs)
    assert len(calls) == 2  # once per run directory: the resumed run reused its cache
    assert len(list((resumed.run_dir / "rcs").glob("folder-*.json"))) == 1
    assert resumed.streams["labeled"].rare_classes is not None
    assert (
        "rare-class sampling on data.streams.labeled: P(class) (eligible" in capsys.readouterr().out
    )
