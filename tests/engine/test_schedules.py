import pytest
import torch

from segshift.engine.schedules import PolyWithWarmup, build_scheduler


def test_poly_values() -> None:
    f = PolyWithWarmup(total_iters=100, power=0.9)
    assert f(0) == 1.0
    assert f(50) == pytest.approx(0.5**0.9)
    assert f(100) == 0.0
    assert f(150) == 0.0  # clamped past the end


def test_warmup_is_linear_from_ratio() -> None:
    f = PolyWithWarmup(total_iters=1000, power=1.0, warmup_iters=10, warmup_ratio=0.1)
    assert f(0) == pytest.approx(0.1)
    assert f(5) == pytest.approx((1 - 5 / 1000) * (0.1 + 0.9 * 0.5))
    assert f(10) == pytest.approx(1 - 10 / 1000)


def test_min_lr_floor_and_head_groups_scale_together() -> None:
    w1, w2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [w1], "lr": 0.01}, {"params": [w2], "lr": 0.1}], lr=0.01)
    sched = build_scheduler(
        opt,
        name="poly",
        total_iters=10,
        power=1.0,
        warmup_iters=0,
        warmup_ratio=1.0,
        min_lr=0.001,
        base_lr=0.01,
    )
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.001)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.01)  # the 10x head keeps its ratio


def test_unknown_schedule() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="cosine"):
        build_scheduler(
            opt,
            name="cosine",
            total_iters=1,
            power=1,
            warmup_iters=0,
            warmup_ratio=1,
            min_lr=0,
            base_lr=0.1,
        )
