import numpy as np
import pytest
import torch

from segshift.transforms import build_transform, to_tensor, to_uint8


def image_and_mask(h=32, w=48):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.repeat(np.arange(w, dtype=np.uint8)[None] % 7, h, axis=0)  # columns 0..6, 0..6, ...
    mask[0] = 255
    return image, mask


def test_tensor_is_rgb_in_unit_range_and_round_trips():
    image, _ = image_and_mask()
    tensor = to_tensor(image)
    assert tensor.shape == (3, 32, 48) and tensor.dtype == torch.float32
    assert tensor[0, 5, 7].item() == pytest.approx(image[5, 7, 0] / 255, abs=1e-7)
    assert torch.equal(to_uint8(tensor).permute(1, 2, 0), torch.from_numpy(image))
    assert to_uint8(tensor[None].repeat(2, 1, 1, 1)).shape == (2, 3, 32, 48)


def test_eval_resizes_the_image_only():
    image, mask = image_and_mask()
    out_image, out_label = build_transform(False, resize=[16, 24])(image, mask)
    assert out_image.shape == (3, 16, 24)
    assert out_label.dtype == torch.int64 and torch.equal(out_label, torch.from_numpy(mask).long())
    out_image, out_label = build_transform(False)(image, None)
    assert out_image.shape == (3, 32, 48) and out_label is None


def test_train_crop_pads_with_ignore_and_zero():
    image, mask = image_and_mask(10, 12)
    out_image, out_label = build_transform(True, crop_size=[16, 20])(image, mask, seed=0)
    assert out_image.shape == (3, 16, 20) and out_label.shape == (16, 20)
    assert torch.equal(out_label[:10, :12], torch.from_numpy(mask).long())  # padded bottom/right
    assert (out_label[10:] == 255).all() and (out_label[:, 12:] == 255).all()
    assert torch.equal(out_image[:, 12, 15], torch.zeros(3))


def test_masks_keep_their_ids_when_rescaled():
    image, mask = image_and_mask()
    transform = build_transform(True, resize=[40, 60], crop_size=[24, 24], scale_range=[0.5, 2.0])
    for seed in range(5):
        _, label = transform(image, mask, seed=seed)
        assert set(label.unique().tolist()) <= set(range(7)) | {255}


def test_same_seed_same_sample_other_seed_other_sample():
    image, mask = image_and_mask()
    transform = build_transform(
        True, crop_size=[16, 16], scale_range=[0.75, 1.5], hflip=True, photometric=True
    )
    a, b = transform(image, mask, seed=42), transform(image, mask, seed=42)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    others = [transform(image, mask, seed=s) for s in range(10)]
    assert sum(torch.equal(a[0], o[0]) for o in others) == 0


def test_flip_moves_image_and_mask_together_and_is_independent_of_jitter():
    image, mask = image_and_mask()
    transform = build_transform(True, hflip=True, photometric=True)
    original = to_tensor(image)
    seen = set()
    for seed in range(60):
        out_image, out_label = transform(image, mask, seed=seed)
        flipped = torch.equal(out_label, torch.from_numpy(mask[:, ::-1].copy()).long())
        assert flipped or torch.equal(out_label, torch.from_numpy(mask).long())
        reference = original.flip(-1) if flipped else original
        seen.add((flipped, torch.equal(out_image, reference)))
    # every combination of flip and "no photometric change" occurs: the draws are not correlated
    assert seen == {(False, False), (False, True), (True, False), (True, True)}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"crop_size": [16]},
        {"resize": [0, 10]},
        {"scale_range": [2.0, 1.0]},
        {"scale_range": [0.0, 1.0]},
    ],
)
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        build_transform(True, **kwargs)


@pytest.mark.parametrize(
    ("name", "flag"),
    [("bilinear", "INTER_LINEAR"), ("bicubic", "INTER_CUBIC"), ("area", "INTER_AREA")],
)
def test_resize_interpolation_is_the_one_asked_for(name, flag):
    import cv2

    image, mask = image_and_mask()
    expected = cv2.resize(image, (60, 40), interpolation=getattr(cv2, flag))
    for train in (False, True):
        out, label = build_transform(train, resize=[40, 60], interpolation=name)(
            image, mask, seed=0
        )
        assert torch.equal(to_uint8(out).permute(1, 2, 0), torch.from_numpy(expected))
        assert set(label.unique().tolist()) <= set(range(7)) | {255}  # masks stay nearest


def test_unknown_interpolation_is_named():
    with pytest.raises(ValueError, match="interpolation.*bicubc"):
        build_transform(True, interpolation="bicubc")
