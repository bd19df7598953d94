import math

import pytest
import torch
import torch.nn.functional as F

from segshift.methods.common.losses import cross_entropy, ohem_cross_entropy


def test_uniform_logits_give_log_c_over_valid_pixels() -> None:
    logits = torch.zeros(2, 5, 4, 4)
    target = torch.randint(0, 5, (2, 4, 4))
    target[0, :2] = 255
    assert cross_entropy(logits, target).item() == pytest.approx(math.log(5))
    # averaging over all pixels counts the 8 ignored ones as 0
    assert cross_entropy(logits, target, average="all").item() == pytest.approx(
        math.log(5) * 24 / 32
    )


def test_logits_are_resized_to_the_label() -> None:
    logits = torch.randn(1, 3, 4, 4)
    target = torch.randint(0, 3, (1, 8, 8))
    up = F.interpolate(logits, size=(8, 8), mode="bilinear", align_corners=False)
    assert cross_entropy(logits, target).item() == pytest.approx(
        F.cross_entropy(up, target).item(), rel=1e-6
    )


def test_all_ignored_is_zero_with_graph() -> None:
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = cross_entropy(logits, torch.full((1, 2, 2), 255))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(logits.grad == 0)


def test_ohem_keeps_hard_pixels() -> None:
    # pixel 0 confident and right (p ~ 1), pixel 1 wrong: only pixel 1 is below 0.7
    logits = torch.tensor([[10.0, 0.0], [0.0, 0.0]]).T.reshape(1, 2, 1, 2)
    target = torch.tensor([[[0, 1]]])
    per_pixel = F.cross_entropy(logits, target, reduction="none").flatten()
    loss = ohem_cross_entropy(logits, target, thresh=0.7, min_kept=1)
    assert loss.item() == pytest.approx(per_pixel[1].item())
    # min_kept = 2 raises the threshold so both pixels count
    both = ohem_cross_entropy(logits, target, thresh=0.7, min_kept=2)
    assert both.item() == pytest.approx(per_pixel.mean().item())


def test_ohem_with_min_kept_zero_or_above_the_valid_count_mines_nothing() -> None:
    """The official criterion thresholds only when 0 < min_kept <= #valid: otherwise plain CE."""
    logits = torch.tensor([[10.0, 0.0, 0.0], [0.0, 0.0, 3.0]]).T.reshape(1, 2, 1, 3)
    target = torch.tensor([[[0, 1, 255]]])
    per_pixel = F.cross_entropy(logits, target, ignore_index=255, reduction="none").flatten()
    assert per_pixel[0].item() < 1e-4 and per_pixel[1].item() == pytest.approx(math.log(2))
    plain = (per_pixel[0] + per_pixel[1]).item() / 2  # the mean over the two valid pixels
    for min_kept in (0, 3):  # 3 > 2 valid pixels
        loss = ohem_cross_entropy(logits, target, thresh=0.7, min_kept=min_kept)
        assert loss.item() == pytest.approx(plain)
    assert ohem_cross_entropy(logits, target, thresh=0.7, min_kept=1).item() == pytest.approx(
        math.log(2)
    )


def test_align_corners_protocol_changes_the_upsampled_logits() -> None:
    from segshift.methods.common.losses import resize_logits

    logits = torch.tensor([[[[0.0, 1.0]]]])  # (1, 1, 1, 2) -> width 4
    corners = resize_logits(logits, (1, 4), align_corners=True).flatten().tolist()
    assert corners == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])  # DeepLab-v2 UDA line
    half_pixel = resize_logits(logits, (1, 4)).flatten().tolist()
    assert half_pixel == pytest.approx([0.0, 0.25, 0.75, 1.0])  # mmseg / smp
    target = torch.tensor([[[0, 0, 1, 1]]])
    two_class = torch.cat([logits, -logits], dim=1)
    assert cross_entropy(two_class, target, align_corners=True) != cross_entropy(two_class, target)
