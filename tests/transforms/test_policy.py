"""The RandAugment policy: seeded, image-only photometric ops, aligned geometric ops."""

from __future__ import annotations

from collections import Counter

import albumentations as A
import cv2
import numpy as np
import pytest
import torch

from segshift.config import DatasetConfig
from segshift.data import build_dataset
from segshift.errors import ConfigError
from segshift.transforms import SegTransform, build_transform
from segshift.transforms.pipeline import randaugment_ops


def image_and_mask(h: int = 32, w: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A mid-range gradient image (so equalize/autocontrast change it) and a striped mask."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(60, 180, w)[None, :, None] + rng.integers(-10, 10, (h, w, 3))
    image = np.clip(ramp, 0, 255).astype(np.uint8)
    mask = np.repeat((np.arange(w, dtype=np.uint8) // 6)[None] % 5, h, axis=0)
    return image, mask


def policy(**kwargs) -> SegTransform:
    return build_transform(True, policy="randaugment", **kwargs)


def test_policy_is_deterministic_per_seed_and_changes_the_image() -> None:
    image, mask = image_and_mask()
    transform = policy(policy_ops=2, policy_magnitude=9, policy_geometric=True)
    a, b = transform(image, mask, seed=5), transform(image, mask, seed=5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    plain, _ = build_transform(True)(image, mask, seed=5)
    outputs = [transform(image, mask, seed=s)[0] for s in range(20)]
    assert sum(not torch.equal(out, plain) for out in outputs) >= 18
    assert len({out.sum().item() for out in outputs}) >= 15  # seeds draw different ops


def test_photometric_policy_leaves_the_mask_alone() -> None:
    image, mask = image_and_mask()
    transform = policy(policy_ops=3, policy_magnitude=10)
    for seed in range(20):
        _, label = transform(image, mask, seed=seed)
        assert torch.equal(label, torch.from_numpy(mask).long())


def test_geometric_ops_move_image_and_mask_together() -> None:
    _, mask = image_and_mask()
    mask[:, :6] = 9
    code = np.zeros(256, np.uint8)
    code[:10] = 10 + 20 * np.arange(10)  # the image spells the mask; fills: image 0, mask 255
    image = np.repeat(code[mask][..., None], 3, axis=2)
    ops = randaugment_ops(9, photometric=False, geometric=True, interpolation=cv2.INTER_NEAREST)
    transform = SegTransform([A.SomeOf(ops, n=2, replace=True, p=1.0)], [])
    moved = 0
    for seed in range(30):
        out_image, label = transform(image, mask, seed=seed)
        pixels = torch.round(out_image * 255).to(torch.uint8)
        assert torch.equal(pixels[0], torch.from_numpy(code)[label])
        moved += not torch.equal(label, torch.from_numpy(mask).long())
        assert set(label.unique().tolist()) <= {0, 1, 2, 3, 4, 9, 255}
    assert moved >= 28


def test_geometric_policy_moves_the_mask_with_ignore_fill() -> None:
    image, mask = image_and_mask()
    transform = policy(policy_ops=2, policy_magnitude=9, policy_geometric=True)
    labels = [transform(image, mask, seed=s)[1] for s in range(20)]
    assert sum(not torch.equal(x, torch.from_numpy(mask).long()) for x in labels) >= 10
    assert any((x == 255).any() for x in labels)


def test_ops_and_signs_are_drawn_independently() -> None:
    """On a flat image contrast does nothing and brightness scales by 1.81 or 0.19."""
    flat = np.full((4, 4, 3), 100, np.uint8)

    def outcomes(ops: list, n: int) -> Counter:
        transform = SegTransform([A.SomeOf(ops, n=n, replace=n == 1, p=1.0)], [])
        return Counter(
            round(transform(flat, None, seed=s)[0].mean().item() * 255) for s in range(400)
        )

    one_of_two = outcomes(randaugment_ops(9)[:2], n=1)  # contrast : brighter : darker = 2 : 1 : 1
    assert one_of_two.keys() == {19, 100, 181}
    assert 160 <= one_of_two[100] <= 240 and 70 <= one_of_two[181] <= 130
    # two brightness ops: their signs must not be tied (one seed for both gives 255 or 3 only)
    twice = outcomes([randaugment_ops(9)[0], randaugment_ops(9)[0]], n=2)
    assert twice.keys() == {3, 34, 255} and 150 <= twice[34] <= 250


def test_evaluation_ignores_the_policy() -> None:
    image, mask = image_and_mask()
    out, label = build_transform(False, policy="randaugment")(image, mask)
    assert torch.equal(out, build_transform(False)(image, mask)[0])
    assert torch.equal(label, torch.from_numpy(mask).long())


def test_bad_policy_values_are_config_errors(make_camvid) -> None:
    root = str(make_camvid())
    with pytest.raises(ConfigError, match="policy must be one of randaugment, autoaugment"):
        build_dataset(DatasetConfig(name="camvid", root=root, policy="trivialaugment"), True)
    with pytest.raises(ConfigError, match="policy_magnitude"):
        build_dataset(
            DatasetConfig(name="camvid", root=root, policy="randaugment", policy_magnitude=11),
            True,
        )
    with pytest.raises(ConfigError, match="policy_ops"):
        build_dataset(
            DatasetConfig(name="camvid", root=root, policy="randaugment", policy_ops=0), True
        )
    dataset = build_dataset(
        DatasetConfig(name="camvid", root=root, policy="randaugment", policy_geometric=True), True
    )
    assert torch.equal(dataset[0, 3]["image"], dataset[0, 3]["image"])
