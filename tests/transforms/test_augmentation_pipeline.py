import numpy as np
import pytest
import torch

from segshift.transforms import MEAN, STD, build_transform, denormalize, to_tensor


def image_and_mask(h=32, w=48):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.repeat(np.arange(w, dtype=np.uint8)[None] % 7, h, axis=0)  # columns 0..6, 0..6, ...
    mask[0] = 255
    return image, mask


def test_normalise_and_denormalize_round_trip():
    image, _ = image_and_mask()
    tensor = to_tensor(image)
    assert tensor.shape == (3, 32, 48) and tensor.dtype == torch.float32
    expected = (image[5, 7, 0] / 255 - MEAN[0]) / STD[0]
    assert tensor[0, 5, 7].item() == pytest.approx(expected, abs=1e-5)
    assert torch.equal(denormalize(tensor).permute(1, 2, 0), torch.from_numpy(image))
    assert denormalize(tensor[None].repeat(2, 1, 1, 1)).shape == (2, 3, 32, 48)


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
    zero = torch.tensor([-m / s for m, s in zip(MEAN, STD)])
    assert torch.allclose(out_image[:, 12, 15], zero, atol=1e-5)


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
