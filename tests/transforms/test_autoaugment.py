"""AutoAugment (torchvision's ImageNet policy): torchvision's ops and strengths, the mask moved
exactly with the image by geometric ops and left alone by photometric ones, seeded draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms import AutoAugment, AutoAugmentPolicy, InterpolationMode
from torchvision.transforms.autoaugment import _apply_op

from segshift.config import DatasetConfig
from segshift.data import build_dataset
from segshift.transforms import build_transform
from segshift.transforms.autoaugment import (
    GEOMETRIC,
    AutoAugmentImageNet,
    apply_ops,
    magnitude,
    move_mask,
)

H, W = 24, 40


def coded(h: int = H, w: int = W) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A striped mask (classes 0-4), an image whose grey level spells its class, and the code
    (class -> grey, 255 -> 0, the image fill)."""
    mask = np.repeat((np.arange(w, dtype=np.uint8) // 5 % 5)[None], h, axis=0)
    mask[: h // 3] = 4 - mask[: h // 3]  # not symmetric under a flip of either axis
    code = np.zeros(256, np.uint8)
    code[:5] = [40, 80, 120, 160, 200]
    return np.repeat(code[mask][..., None], 3, axis=2), mask, code


def textured() -> np.ndarray:
    rng = np.random.default_rng(0)
    ramp = np.linspace(50, 190, W)[None, :, None] + rng.integers(-30, 30, (H, W, 3))
    return np.clip(ramp, 0, 255).astype(np.uint8)


def test_strengths_are_torchvisions() -> None:
    space = AutoAugment(AutoAugmentPolicy.IMAGENET)._augmentation_space(10, (H, W))
    for name, (bins, _signed) in space.items():
        for b in range(10):
            expected = float(bins[b]) if bins.ndim else 0.0
            ours = magnitude(name, b if bins.ndim else None, (H, W))
            assert ours == pytest.approx(expected, rel=1e-6, abs=1e-4), (name, b)
    assert magnitude("Solarize", 3, (H, W)) == 170.0  # exact: pixels at 170 are inverted


@pytest.mark.parametrize("b", [2, 7])
def test_each_op_is_torchvisions_op_on_the_image(b: int) -> None:
    image = textured()
    tensor = torch.from_numpy(image).permute(2, 0, 1)
    space = AutoAugment(AutoAugmentPolicy.IMAGENET)._augmentation_space(10, (H, W))
    for name, (bins, signed) in space.items():
        value = magnitude(name, b if bins.ndim else None, (H, W))
        for sign in (1, -1) if signed else (1,):
            fill = [0.0, 0.0, 0.0]
            expected = _apply_op(tensor, name, sign * value, InterpolationMode.NEAREST, fill)
            ours = apply_ops(image, [(name, sign * value)])
            assert np.array_equal(ours, expected.permute(1, 2, 0).numpy()), (name, sign)


@pytest.mark.parametrize(
    "op", [("ShearX", 0.3), ("ShearY", -0.2), ("TranslateX", 9.0), ("TranslateY", -6.0),
           ("Rotate", 25.0), ("Rotate", -13.3)],
)  # fmt: skip
def test_a_geometric_op_moves_the_mask_exactly_with_the_image(op: tuple[str, float]) -> None:
    image, mask, code = coded()
    out_image, out_mask = apply_ops(image, [op]), move_mask(mask, [op])
    assert out_mask.dtype == np.uint8 and out_mask.shape == mask.shape
    assert not np.array_equal(out_mask, mask)
    assert np.array_equal(out_image[..., 0], code[out_mask])  # each pixel came from one place
    assert set(np.unique(out_mask)) <= {0, 1, 2, 3, 4, 255}
    assert (out_mask == 255).any()  # pixels from outside the image: ignored, image 0


def test_photometric_ops_leave_the_mask_untouched() -> None:
    image, mask = textured(), coded()[1]
    for op in [("Posterize", 4.0), ("Solarize", 113.3), ("Equalize", 0.0), ("Invert", 0.0),
               ("Color", -0.6), ("Contrast", 0.7), ("Sharpness", -0.7), ("AutoContrast", 0.0)]:  # fmt: skip
        transform = AutoAugmentImageNet()
        transform.get_params_dependent_on_data = lambda params, data, op=op: {"ops": [op]}
        out = transform(image=image, mask=mask)
        assert np.array_equal(out["mask"], mask), op
        assert np.array_equal(out["image"], apply_ops(image, [op])), op
        assert not np.array_equal(out["image"], image), op


def test_the_policy_applies_exactly_its_seeded_draw() -> None:
    image, mask, code = coded()
    kinds = {"photometric": 0, "geometric": 0, "geometric only": 0, "none": 0}
    for seed in range(120):
        transform = AutoAugmentImageNet()
        transform.set_random_seed(seed)
        ops = transform.draw((H, W))
        transform.set_random_seed(seed)
        out = transform(image=image, mask=mask)
        assert np.array_equal(out["image"], apply_ops(image, ops))
        assert np.array_equal(out["mask"], move_mask(mask, ops))
        if any(name in GEOMETRIC for name, _ in ops):
            kinds["geometric"] += 1
            assert not np.array_equal(out["mask"], mask)
        else:
            kinds["photometric" if ops else "none"] += 1
            assert np.array_equal(out["mask"], mask)
        if ops and all(name in GEOMETRIC for name, _ in ops):
            kinds["geometric only"] += 1
            assert np.array_equal(out["image"][..., 0], code[out["mask"]])
    # 7 of the 25 sub-policies hold a geometric op (Rotate or ShearX, p 0.2-0.8): ~17% of draws
    assert 8 <= kinds["geometric"] <= 40 and kinds["photometric"] >= 60
    assert kinds["geometric only"] >= 2


def test_build_transform_draws_deterministically_per_seed(make_camvid) -> None:
    image, mask, _ = coded()
    transform = build_transform(True, policy="autoaugment")
    runs = [transform(image, mask, seed=s) for s in range(30)]
    again = transform(image, mask, seed=7)
    assert torch.equal(again[0], runs[7][0]) and torch.equal(again[1], runs[7][1])
    assert len({out[0].sum().item() for out in runs}) >= 10
    moved = [not torch.equal(label, torch.from_numpy(mask).long()) for _, label in runs]
    assert 1 <= sum(moved) <= 20
    plain = build_transform(False, policy="autoaugment")(image, mask)  # evaluation: no policy
    assert torch.equal(plain[1], torch.from_numpy(mask).long())
    dataset = build_dataset(
        DatasetConfig(name="camvid", root=str(make_camvid()), policy="autoaugment"), True
    )
    assert torch.equal(dataset[0, 3]["image"], dataset[0, 3]["image"])
