import pytest
import torch
from torch import nn

from segshift.methods.common.ema import ema_alpha, ema_update, make_teacher


def test_warmup_schedule_matches_reference() -> None:
    assert ema_alpha(0.999, 0) == 0.0  # the first update copies the student
    assert ema_alpha(0.999, 1) == pytest.approx(0.5)
    assert ema_alpha(0.999, 9) == pytest.approx(0.9)
    assert ema_alpha(0.999, 999) == pytest.approx(0.999)
    assert ema_alpha(0.999, 5000) == pytest.approx(0.999)
    assert ema_alpha(0.99, 3, warmup=False) == 0.99


def student_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))


def test_whole_state_is_averaged() -> None:
    student = student_net()
    teacher = make_teacher(student)
    assert not any(p.requires_grad for p in teacher.parameters())
    old_weight = teacher[0].weight.clone()
    old_mean = teacher[1].running_mean.clone()
    student.train()
    student(torch.randn(2, 3, 4, 4))  # moves the running statistics and num_batches_tracked
    with torch.no_grad():
        student[0].weight.add_(1.0)
    used = ema_update(teacher, student, alpha=0.9, step=100)
    assert used == 0.9
    torch.testing.assert_close(teacher[0].weight, 0.9 * old_weight + 0.1 * student[0].weight)
    torch.testing.assert_close(
        teacher[1].running_mean, 0.9 * old_mean + 0.1 * student[1].running_mean
    )
    assert teacher[1].num_batches_tracked == student[1].num_batches_tracked == 1


def test_parameters_only_leaves_buffers() -> None:
    student = student_net()
    teacher = make_teacher(student)
    student(torch.randn(2, 3, 4, 4))
    ema_update(teacher, student, alpha=0.9, step=100, parameters_only=True)
    assert torch.equal(teacher[1].running_mean, torch.zeros(4))
    assert teacher[1].num_batches_tracked == 0
