"""The class-distribution contrast (methods/common/classdist.py) on hand-computed cases, its queue,
its exact resume, and its use by methods."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from helpers import assert_resume_exact, read_log
from segshift.config import to_dataclass
from segshift.engine.trainer import Trainer
from segshift.errors import ConfigError
from segshift.methods.common.classdist import (
    ClassDist,
    ClassDistParams,
    FeatureView,
    ImageQueue,
    class_histograms,
    confident_labels,
    histogram_similarity,
    soft_supcon_loss,
)
from segshift.methods.common.distributed import gather_rows
from segshift.methods.dacs import Dacs, DacsParams
from segshift.methods.supervised import SupervisedParams

KINDS = ("cosine", "js", "jaccard")


@pytest.mark.parametrize("kind", KINDS)
def test_identical_histograms_give_one_disjoint_class_sets_zero(kind: str) -> None:
    a = torch.tensor([[30.0, 10.0, 0.0, 0.0], [0.0, 0.0, 5.0, 5.0]])
    sim = histogram_similarity(a, a * 7, kind)  # scale-free: counts or shares
    assert sim[0, 0].item() == pytest.approx(1.0, abs=1e-6)
    assert sim[1, 1].item() == pytest.approx(1.0, abs=1e-6)
    assert sim[0, 1].item() == 0.0 and sim[1, 0].item() == 0.0


@pytest.mark.parametrize(("kind", "expected"), [("cosine", 0.5), ("js", 0.5), ("jaccard", 1 / 3)])
def test_overlapping_histograms_by_hand(kind: str, expected: float) -> None:
    # p = (1/2, 1/2, 0), q = (0, 1/2, 1/2): cosine 0.25 / 0.5; m = (1/4, 1/2, 1/4), each
    # KL(. || m) = 1/2 log2 2 = 1/2 bit, JS = 1/2; class sets {0,1} and {1,2}: 1/3
    sim = histogram_similarity(
        torch.tensor([[2.0, 2.0, 0.0]]), torch.tensor([[0.0, 4.0, 4.0]]), kind
    )
    assert sim.item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_identical_is_the_largest_and_empty_is_zero(kind: str) -> None:
    generator = torch.Generator().manual_seed(0)
    hists = torch.rand(6, 5, generator=generator) * (torch.rand(6, 5, generator=generator) > 0.4)
    hists[0] = torch.tensor([1.0, 0, 0, 0, 0])
    sim = histogram_similarity(hists, hists, kind)
    assert torch.all(sim >= 0) and torch.all(sim <= 1 + 1e-6)
    assert torch.all(sim.diagonal() >= sim.max(dim=1).values - 1e-6)
    empty = histogram_similarity(torch.zeros(1, 5), hists, kind)
    assert torch.equal(empty, torch.zeros(1, 6))


def test_jaccard_presence_threshold() -> None:
    a = torch.tensor([[99.0, 1.0]])  # class 1 holds 1%: present at presence 0.01, not at 0.02
    b = torch.tensor([[50.0, 0.0]])
    assert histogram_similarity(a, b, "jaccard", presence=0.01).item() == pytest.approx(0.5)
    assert histogram_similarity(a, b, "jaccard", presence=0.02).item() == pytest.approx(1.0)


def test_masked_pixels_do_not_count() -> None:
    label = torch.tensor([[[0, 0, 255], [1, 255, 1]], [[2, 2, 2], [2, 2, 255]]])
    counts = class_histograms(label, num_classes=3)
    assert counts.tolist() == [[2.0, 2.0, 0.0], [0.0, 0.0, 5.0]]
    confidence = torch.tensor([[[0.95, 0.5, 0.99], [0.91, 0.99, 0.2]], [[1.0] * 3, [1.0] * 3]])
    valid = torch.ones_like(label, dtype=torch.bool)
    valid[1, 0, 0] = False  # crop padding
    kept = confident_labels(label, confidence, 0.9, valid)
    assert class_histograms(kept, 3).tolist() == [[1.0, 1.0, 0.0], [0.0, 0.0, 4.0]]
    # what the unconfident and padded pixels hold does not matter
    other = label.masked_fill((confidence < 0.9) | ~valid, 1)
    again = class_histograms(confident_labels(other, confidence, 0.9, valid), 3)
    assert torch.equal(again, class_histograms(kept, 3))


def test_soft_supcon_by_hand() -> None:
    anchors = F.normalize(torch.tensor([[1.0, 0.0]]), dim=1)
    keys = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]]), dim=1)
    target = torch.tensor([[1.0, 0.6, 0.2, 0.9]])
    exclude = torch.tensor([[True, False, False, True]])  # itself, a key without histogram
    loss = soft_supcon_loss(anchors, keys, target, exclude, temperature=0.5)
    a, b = math.exp(math.sqrt(0.5) / 0.5), math.exp(0.0)
    expected = -(0.6 * math.log(a / (a + b)) + 0.2 * math.log(b / (a + b))) / 0.8
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    none = soft_supcon_loss(anchors, keys, torch.zeros(1, 4), exclude, 0.5)
    assert none.item() == 0.0


def test_an_anchor_without_keys_gives_zero_and_finite_gradients() -> None:
    z = torch.nn.Parameter(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    exclude = torch.tensor([[True, True], [False, True]])  # image 0 alone, image 1 sees 0
    loss = soft_supcon_loss(z, z, torch.ones(2, 2), exclude, 0.1)
    loss.backward()
    assert loss.item() == 0.0  # image 1's only key is its positive: log 1
    assert torch.isfinite(z.grad).all()


def test_loss_falls_as_similar_images_move_together() -> None:
    # two scenes: images 0, 1 hold road and sky, images 2, 3 car and person
    hists = torch.tensor([[5.0, 5, 0, 0], [6, 4, 0, 0], [0, 0, 5, 5], [0, 0, 4, 6]])
    target = histogram_similarity(hists, hists)
    exclude = torch.eye(4, dtype=torch.bool)
    torch.manual_seed(0)
    free = torch.nn.Parameter(torch.randn(4, 8))
    optimizer = torch.optim.SGD([free], lr=0.5)

    def loss_and_gap() -> tuple[float, float]:
        z = F.normalize(free, dim=1)
        loss = soft_supcon_loss(z, z, target, exclude, temperature=0.1)
        cos = z @ z.T
        gap = (cos[0, 1] + cos[2, 3] - cos[0, 2] - cos[1, 3]).item() / 2
        return loss, gap

    first, first_gap = loss_and_gap()
    for _ in range(20):
        optimizer.zero_grad()
        loss, _ = loss_and_gap()
        loss.backward()
        optimizer.step()
    last, last_gap = loss_and_gap()
    assert last.item() < first.item() - 0.5
    assert last_gap > first_gap + 0.5  # same-scene pairs closer than cross-scene ones
    # the same embeddings with the pairs placed together / crossed
    together = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]]), dim=1)
    crossed = together[[0, 2, 1, 3]]
    assert soft_supcon_loss(together, together, target, exclude, 0.1) < soft_supcon_loss(
        crossed, crossed, target, exclude, 0.1
    )


def test_queue_is_fifo_in_fixed_buffers() -> None:
    queue = ImageQueue(size=3, dim=2, num_classes=2)
    rows = torch.arange(10.0).view(5, 2)
    queue.push(rows[:2], rows[:2], torch.tensor([0, 1]))
    queue.push(rows[2:4], rows[2:4], torch.tensor([2, 3]))  # wraps: overwrites the oldest
    assert (int(queue.count), int(queue.ptr)) == (3, 1)
    assert queue.embeddings.tolist() == [[6.0, 7.0], [2.0, 3.0], [4.0, 5.0]]
    assert queue.domains.tolist() == [3, 1, 2]
    queue.push(rows, rows, torch.arange(5))  # more than it holds: the last 3
    assert sorted(queue.domains.tolist()) == [2, 3, 4]
    empty = ImageQueue(size=0, dim=2, num_classes=2)
    empty.push(rows, rows, torch.arange(5))
    assert int(empty.count) == 0 and empty.entries()[0].shape == (0, 2)


def test_one_process_gathers_its_own_rows() -> None:
    rows = torch.randn(3, 4)
    gathered, start = gather_rows(rows)
    assert start == 0 and torch.equal(gathered, rows)


def contrast(**params) -> ClassDist:
    torch.manual_seed(0)
    return ClassDist(ClassDistParams(weight=0.5, **params), feat_channels=4, num_classes=3)


def test_forward_counts_kept_images_queues_them_and_measures_cross_domain_mass() -> None:
    loss_fn = contrast(queue=8, min_counted=0.5)
    feat = torch.randn(3, 4, 2, 2)
    label = torch.tensor([0, 0, 1])[:, None, None].expand(3, 4, 4).clone()
    label[2, :3] = 255  # image 2: 4 of 16 pixels counted < min_counted, left out
    source = FeatureView(feat[:2], label[:2], ["sim", "sim"])
    target_label = torch.zeros(1, 4, 4, dtype=torch.long)
    out = loss_fn([source, FeatureView(feat[2:], target_label, ["real"]),
                   FeatureView(feat[2:], label[2:], ["real"])])  # fmt: skip
    assert out["classdist_kept"].item() == pytest.approx(3 / 4)
    # every kept image holds only class 0, so each anchor's two keys are positives of weight 1:
    # for a sim anchor 1 of them is real, for the real anchor both are sim
    assert out["classdist_cross"].item() == pytest.approx((1 + 1 + 2) / 6)
    assert out["loss"].item() == pytest.approx(0.5 * out["classdist"].item())
    assert int(loss_fn.queue.count) == 3  # the left-out image is not queued
    assert loss_fn.queue.histograms[:3].tolist() == [[1.0, 0.0, 0.0]] * 3
    out["loss"].backward()
    assert all(p.grad is not None for p in loss_fn.head.parameters())
    again = loss_fn([source])  # the queue's entries are keys now
    assert again["classdist"].item() > 0


def test_no_counted_image_still_reaches_the_head() -> None:
    loss_fn = contrast(queue=4)
    feat = torch.randn(2, 4, 2, 2, requires_grad=True)
    out = loss_fn([FeatureView(feat, torch.full((2, 4, 4), 255))])
    assert out["classdist_kept"].item() == 0.0 and out["loss"].item() == 0.0
    out["loss"].backward()
    assert all(p.grad is not None for p in loss_fn.head.parameters())
    assert int(loss_fn.queue.count) == 0


def test_params_are_checked_with_the_key_named() -> None:
    params = to_dataclass({"classdist": {"weight": 0.1, "similarity": "js"}}, DacsParams, "p")
    assert (params.classdist.weight, params.classdist.similarity) == (0.1, "js")
    with pytest.raises(ConfigError, match=r"classdist.temprature.*did you mean 'temperature'"):
        to_dataclass({"classdist": {"temprature": 0.1}}, SupervisedParams, "method.params")
    with pytest.raises(ConfigError, match="method.params.classdist.similarity: 'cos'"):
        to_dataclass({"classdist": {"similarity": "cos"}}, SupervisedParams, "method.params")
    with pytest.raises(ConfigError, match="method.params.classdist.queue"):
        to_dataclass({"classdist": {"queue": -1}}, SupervisedParams, "method.params")


CLASSDIST = ("method.params.classdist.weight=0.1", "method.params.classdist.queue=4")


def test_off_by_default_and_state_unchanged(tiny_config) -> None:
    trainer = Trainer(tiny_config())
    assert trainer.method.classdist is None
    assert not any("classdist" in key for key in trainer.method.state_dict())


def test_queue_survives_an_exact_resume(tiny_config, tmp_path) -> None:
    straight, resumed = assert_resume_exact(tiny_config, tmp_path, *CLASSDIST)
    queue = resumed.method.classdist.queue
    assert int(queue.count) == 4 and int(queue.ptr) == 0  # 4 steps x 2 images through 4 slots
    assert queue.embeddings.abs().sum() > 0
    logged = [r for r in read_log(straight.run_dir) if r["kind"] == "train"]
    assert all("classdist" in r for r in logged) and logged[-1]["classdist"] > 0


class ConfidentTop(torch.nn.Module):
    """A teacher predicting class 1 everywhere, confidently on the top ``rows`` rows only."""

    def __init__(self, rows: int) -> None:
        super().__init__()
        self.rows = rows

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = torch.zeros(len(images), 5, *images.shape[-2:])
        logits[:, 1] = 0.1
        logits[:, 1, : self.rows] = 20.0
        return {"out": logits}


@pytest.mark.parametrize(("rows", "kept"), [(0, 0.5), (4, 1.0)])
def test_dacs_counts_only_the_teachers_confident_pixels(tiny_config, rows, kept) -> None:
    cfg = tiny_config("method.name=dacs", *CLASSDIST, "method.params.classdist.queue=8")
    method = Dacs(cfg, num_classes=5)
    method.teacher = ConfidentTop(rows)
    g = torch.Generator().manual_seed(1)
    label = torch.randint(0, 5, (2, 16, 16), generator=g)
    label[:, ::2] = 255
    batch = {
        "source": {"image": torch.rand(2, 3, 16, 16, generator=g), "label": label},
        "target": {"image": torch.rand(2, 3, 16, 16, generator=g)},
    }
    out = method.training_step(batch, step=0)
    assert out["classdist_kept"].item() == kept
    queue = method.classdist.queue
    assert int(queue.count) == 4 * kept
    if rows:  # the target images: the confident top rows, all class 1
        assert queue.histograms[2:4].tolist() == [[0.0, 1.0, 0.0, 0.0, 0.0]] * 2
    assert torch.allclose(queue.histograms[:2], class_histograms(label, 5) / 128)
