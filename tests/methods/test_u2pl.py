"""U2PL: the drop schedule, the unsupervised normaliser, the negative keys and the EMA teacher,
against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from segshift.errors import ConfigError
from segshift.methods.common.augment import step_generator
from segshift.methods.common.ema import ema_alpha
from segshift.methods.common.mixing import cutmix_masks
from segshift.methods.common.representation import MemoryBank
from segshift.methods.u2pl import (
    MIX_SALT,
    U2pl,
    percentile,
    unreliable_percentile,
    unsupervised_loss,
)

NUM_CLASSES = 5


def build(tiny_config, *params: str) -> U2pl:
    torch.manual_seed(0)
    overrides = (f"method.params.{p}" for p in params)
    cfg = tiny_config("method.name=u2pl", "train.iters=10", *overrides)
    return U2pl(cfg, NUM_CLASSES)


def batches(size: tuple[int, int] = (32, 32)) -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    label = torch.randint(0, NUM_CLASSES, (2, *size), generator=g)
    label[:, :2] = 255
    return {
        "labeled": {"image": torch.rand(2, 3, *size, generator=g), "label": label},
        "unlabeled": {"image": torch.rand(2, 3, *size, generator=g)},
    }


# ---------------------------------------------------------------- unreliable pixels and L_u


def test_drop_schedule_by_hand():
    # 100 - (100 - 80)(1 - t/T): drop the top 20% of entropies at the start, none at the end
    assert unreliable_percentile(0, 1000) == pytest.approx(80.0)
    assert unreliable_percentile(250, 1000) == pytest.approx(85.0)
    assert unreliable_percentile(500, 1000) == pytest.approx(90.0)
    assert unreliable_percentile(1000, 1000) == pytest.approx(100.0)
    assert unreliable_percentile(0, 10, drop_percent=60) == pytest.approx(60.0)


def test_percentile_is_numpy_linear():
    values = torch.tensor([4.0, 1.0, 3.0, 2.0])
    assert percentile(values, 50).item() == pytest.approx(2.5)  # position 1.5 of [1, 2, 3, 4]
    assert percentile(values, 80).item() == pytest.approx(3.4)  # position 2.4
    assert percentile(values, 100).item() == pytest.approx(4.0)
    rand = torch.rand(101, generator=torch.Generator().manual_seed(0))
    for q in (0, 13.7, 20, 80, 99.9):
        assert percentile(rand, q).item() == pytest.approx(np.percentile(rand.numpy(), q))


def test_unsupervised_loss_drops_the_unreliable_band_and_uses_the_official_normaliser():
    # four pixels, two classes; per-pixel CE: ln 2 (equal logits), ln(4/3) (p = 3/4), ...
    logits = torch.zeros(1, 2, 1, 4)
    logits[0, 1, 0, 1] = math.log(3.0)  # pixel 1, label 1: p = 3/4 -> CE ln(4/3)
    label = torch.tensor([[[0, 1, 0, 1]]])
    entropy = torch.tensor([[[0.1, 0.2, 0.3, 0.4]]])
    # 50th percentile of [0.1 .. 0.4] = 0.25: pixels 2 and 3 (E >= 0.25) are dropped;
    # B*H*W = 4, 2 kept: 4 / 2 * mean(ln 2, ln 4/3) = 4 (ln 2 + ln 4/3) / 2^2
    loss = unsupervised_loss(logits, label, entropy, percent=50)
    assert loss.item() == pytest.approx(math.log(2) + math.log(4 / 3))
    # percentile 100: only the most uncertain pixel (E >= max) goes; 4/3 * mean of three CEs
    loss = unsupervised_loss(logits, label, entropy, percent=100)
    assert loss.item() == pytest.approx(4 * (2 * math.log(2) + math.log(4 / 3)) / 3**2)
    # an ignored pixel counts in B*H*W but not among the valid ones nor in the percentile
    label = torch.tensor([[[0, 1, 255, 1]]])
    loss = unsupervised_loss(logits, label, entropy, percent=50)
    # valid entropies [0.1, 0.2, 0.4]: median 0.2 -> pixels 1 and 3 dropped, pixel 0 kept
    assert loss.item() == pytest.approx(4 / 1 * math.log(2))
    assert label.tolist() == [[[0, 1, 255, 1]]]  # the pseudo-labels are not modified


# ---------------------------------------------------------------- negative keys (memory bank)


def probs_from_order(*orders: list[int]) -> torch.Tensor:
    """(1, C, 1, W) probabilities whose classes rank as ``orders[x]`` at pixel x."""
    logits = torch.zeros(1, NUM_CLASSES, 1, len(orders))
    for x, order in enumerate(orders):
        for rank, cls in enumerate(order):
            logits[0, cls, 0, x] = float(NUM_CLASSES - rank)
    return torch.softmax(logits, dim=1)


def pixel_ids(batch: int, width: int) -> torch.Tensor:
    """(B, B*W, 1, W) teacher features: one-hot of the pixel's index b*W + x."""
    return torch.eye(batch * width).view(batch * width, batch, 1, width).permute(1, 0, 2, 3)


def contrast_setup():
    label_l = torch.tensor([[[1, 2, 255, 0, 3]]])
    probs_l = probs_from_order(
        [1, 2, 0, 3, 4],  # label 1, class 2 ranks 1: a negative of 2
        [2, 1, 0, 3, 4],  # label 2 itself: never a negative of 2
        [2, 1, 0, 3, 4],  # ignored pixel: never a negative
        [0, 3, 4, 1, 2],  # label 0, class 2 ranks 4 (not in the top 3)
        [3, 2, 0, 1, 4],  # label 3, class 2 ranks 1: a negative of 2
    )
    # unlabeled entropies: with alpha = 40, P60 = 0.3 + 0.4 * 0.7 = 0.58 -> pixels 3, 4 unreliable
    entropy = torch.tensor([[[0.1, 0.2, 0.3, 1.0, 1.1]]])
    probs_u = probs_from_order(
        [0, 1, 3, 2, 4],  # reliable pixel: class 2 ranks 3, but E is low -> no key
        [0, 1, 3, 2, 4],
        [0, 1, 3, 2, 4],  # E = 0.3 < 0.58: no key although class 2 ranks 3
        [0, 1, 3, 2, 4],  # unreliable, class 2 ranks 3 -> key of 2 (and of 4, rank 4)
        [1, 0, 2, 3, 4],  # unreliable, class 2 ranks 2 -> not a key of 2 (keys of 3, 4)
    )
    label_u = torch.tensor([[[0, 0, 0, 2, 1]]])
    return label_l, label_u, entropy, torch.cat([probs_l, probs_u])


@pytest.mark.parametrize("official", [False, True])
def test_negative_keys_are_the_unreliable_pixels_of_the_rank_band(tiny_config, official):
    method = build(
        tiny_config, "proj_dim=10", "queue_size=8", "queue_size_first=8",
        f"official_negative_label={str(official).lower()}",
    )  # fmt: skip
    label_l, label_u, entropy, probs = contrast_setup()
    rep = torch.randn(2, 10, 1, 5, requires_grad=True)
    loss = method._contrastive(rep, pixel_ids(2, 5), probs, label_l, label_u, entropy, 40.0, 0)
    assert torch.isfinite(loss)

    def pushed(cls: int) -> list[str]:  # labeled pixel x -> "l x", unlabeled -> "u x"
        rows = method.bank.entries(cls).argmax(dim=1).tolist()
        return [("l " if i < 5 else "u ") + str(i % 5) for i in rows]

    if not official:  # paper: labeled label != c in the top 3; unlabeled E >= P60, rank in [3, 20)
        assert pushed(2) == ["l 0", "l 4", "u 3"]
        assert pushed(0) == ["l 0", "l 1", "l 4"]  # class 0 ranks 2 there, labels 1, 2, 3
        assert pushed(1) == ["l 1"]  # rank 1 under label 2 (l 3: rank 3, too low)
        assert pushed(3) == ["l 3", "u 4"]
        assert pushed(4) == ["l 3", "u 3", "u 4"]
    else:  # official: the (pseudo-)label must also be c: labeled keys vanish
        assert pushed(2) == ["u 3"]  # pseudo-label 2, class 2 ranked 3 by the teacher pass
        assert pushed(0) == pushed(1) == pushed(3) == pushed(4) == []
    held = sum(len(pushed(c)) for c in range(NUM_CLASSES))
    assert method.bank.fill() == pytest.approx(held / (NUM_CLASSES * 8))


def test_memory_bank_grows_to_its_cap_then_drops_the_oldest_keys():
    """U2PL's dequeue_and_enqueue: cat(queue, keys)[-size:], oldest first, from an empty queue."""
    bank = MemoryBank([3, 2], dim=1)
    assert [tuple(bank.entries(c).shape) for c in (0, 1)] == [(0, 1), (0, 1)]
    bank.push(1, torch.tensor([[1.0]]))
    assert bank.entries(1).flatten().tolist() == [1.0] and bank.fill() == pytest.approx(1 / 5)
    bank.push(1, torch.tensor([[2.0], [3.0]]))  # over the cap: the oldest goes
    assert bank.entries(1).flatten().tolist() == [2.0, 3.0]
    bank.push(1, torch.tensor([[4.0]]))
    assert bank.entries(1).flatten().tolist() == [3.0, 4.0]
    bank.push(0, torch.tensor([[5.0], [6.0], [7.0], [8.0]]))  # more than fits at once
    assert bank.entries(0).flatten().tolist() == [6.0, 7.0, 8.0] and bank.fill() == 1.0
    state = bank.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {"keys_0": (3, 1), "keys_1": (2, 1)}
    fresh = MemoryBank([3, 2], dim=1)
    fresh.load_state_dict(state)  # the empty queues take the checkpoint's lengths
    assert fresh.entries(0).flatten().tolist() == [6.0, 7.0, 8.0]
    assert fresh.entries(1).flatten().tolist() == [3.0, 4.0]
    with pytest.raises(RuntimeError, match="size mismatch"):
        MemoryBank([3, 2], dim=2).load_state_dict(state)


def test_memory_bank_reads_the_fixed_ring_buffer_of_older_checkpoints():
    # caps [3, 2]: class 0 full, written 1..4 (4 overwrote 1 at slot 0, pointer 1); class 1 one key
    old = {
        "keys": torch.tensor([[4.0], [2.0], [3.0], [9.0], [0.0]]),
        "count": torch.tensor([3, 1]),
        "ptr": torch.tensor([1, 1]),
    }
    bank = MemoryBank([3, 2], dim=1)
    bank.load_state_dict(old)
    assert bank.entries(0).flatten().tolist() == [2.0, 3.0, 4.0]  # oldest first
    assert bank.entries(1).flatten().tolist() == [9.0]


# ---------------------------------------------------------------- the method


def test_two_training_steps_move_the_student_and_fill_the_banks(tiny_config):
    method = build(tiny_config, "queue_size=500", "queue_size_first=500", "low_rank=1")
    optimizer = method.configure_optimizers()["model"]
    head_ids = {id(p) for p in method.head.parameters()}
    assert head_ids <= {id(p) for g in optimizer.param_groups for p in g["params"]}
    before = [p.detach().clone() for p in method.model.parameters()]
    for step in range(2):
        out = method.training_step(batches(), step)
        assert all(torch.isfinite(v) for v in out.values())
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        method.after_step(step)
    assert any(not torch.equal(b, p) for b, p in zip(before, method.model.parameters()))
    assert method.bank.fill() > 0
    assert out["loss"].item() == pytest.approx(
        (out["sup"] + out["unsup"] + out["contra"]).item(), rel=1e-5
    )


def test_cutmix_pastes_a_box_of_the_next_unlabeled_image(tiny_config):
    method = build(tiny_config, "cutmix_p=1")
    seen = []
    forward = method.model.forward
    method.model.forward = lambda x, **kw: (seen.append(x), forward(x, **kw))[1]
    batch, step = batches(), 3
    method.training_step(batch, step)
    generator = step_generator(method.cfg.seed, step, MIX_SALT)
    torch.rand((), generator=generator)  # the CutMix coin
    box = cutmix_masks(2, (32, 32), generator).bool()
    assert box.float().mean().item() == pytest.approx(0.5, abs=0.05)  # half of each image
    unlabeled = batch["unlabeled"]["image"]
    expected = torch.where(box[:, None], unlabeled.roll(-1, dims=0), unlabeled)
    assert torch.equal(seen[0][:2], batch["labeled"]["image"])  # one student batch: l, then u
    assert torch.equal(seen[0][2], torch.where(box[0], unlabeled[1], unlabeled[0]))
    assert torch.equal(seen[0][2:], expected)


def test_teacher_follows_parameters_only(tiny_config):
    method = build(tiny_config)
    teacher = {k: v.clone() for k, v in method.teacher.state_dict().items()}
    head = {k: v.clone() for k, v in method.teacher_head.state_dict().items()}
    with torch.no_grad():
        for p in [*method.model.parameters(), *method.head.parameters()]:
            p.add_(1.0)
    step = 4
    method.after_step(step)
    alpha = ema_alpha(0.99, step)
    assert alpha == pytest.approx(4 / 5)
    for net, old, student in (
        (method.teacher, teacher, method.model),
        (method.teacher_head, head, method.head),
    ):
        params = dict(student.named_parameters())
        for key, value in net.state_dict().items():
            if key in params:
                expected = alpha * old[key] + (1 - alpha) * params[key]
                torch.testing.assert_close(value, expected, msg=key)
            else:  # buffers (BN statistics) are not averaged
                assert torch.equal(value, old[key]), key


def test_copy_window_and_supervised_only_phase(tiny_config):
    method = build(tiny_config, "sup_only_iters=2", "copy_iters=3")
    out = method.training_step(batches(), 1)  # supervised only
    assert out["unsup"].item() == 0 and out["contra"].item() == 0
    with torch.no_grad():
        for p in method.model.parameters():
            p.add_(1.0)
    method.after_step(4)  # inside [2, 5): the teacher becomes the student
    for t, s in zip(method.teacher.parameters(), method.model.parameters()):
        assert torch.equal(t, s)
    with torch.no_grad():
        for p in method.model.parameters():
            p.add_(1.0)
    old = [p.clone() for p in method.teacher.parameters()]
    method.after_step(5)  # first EMA step: decay min(1 - 1/(5 - 2 + 1), 0.99) = 3/4
    for t, o, s in zip(method.teacher.parameters(), old, method.model.parameters()):
        torch.testing.assert_close(t, 0.75 * o + 0.25 * s)


def test_the_teacher_is_evaluated_and_params_are_checked(tiny_config):
    method = build(tiny_config)
    assert method.eval_model() is method.teacher
    assert method.streams == ("labeled", "unlabeled")
    assert method.bank.sizes == [50_000] + [30_000] * 4  # official caps, held as they fill:
    assert sum(v.numel() for v in method.bank.state_dict().values()) == 0  # no keys at step 0
    with pytest.raises(ConfigError, match="teacher_train_mode"):
        build(tiny_config, "teacher_train_mode=false")
    with pytest.raises(ConfigError, match="queue_sise"):
        build(tiny_config, "queue_sise=10")
