"""FDA (methods/fda.py): the images the segmenter sees, source-only equivalence, the entropy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segshift.config import load_config
from segshift.errors import ConfigError
from segshift.methods.fda import FDA
from segshift.methods.supervised import Supervised
from segshift.transforms.fourier import fda_swap, fda_window

NUM_CLASSES = 3
FAST_MODEL = ["model.arch=fast", "model.encoder=resnet18"]


def make_fda(*params: str) -> FDA:
    overrides = [*FAST_MODEL, "method.name=fda", *(f"method.params.{p}" for p in params)]
    return FDA(load_config(None, overrides), NUM_CLASSES)


def batches(source_size=(2, 32, 32), target_size=(2, 32, 32), seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    (bs, h, w), (bt, ht, wt) = source_size, target_size
    return {
        "source": {
            "image": torch.rand(bs, 3, h, w, generator=g),
            "label": torch.randint(0, NUM_CLASSES, (bs, h, w), generator=g),
        },
        "target": {"image": torch.rand(bt, 3, ht, wt, generator=g)},
    }


class Recorder(nn.Module):
    """Records every input; logits are w * (channel 0, 2x2-average-pooled) for class 0, else 0:
    half the input resolution, so the entropy's resolution is visible."""

    align_corners = False

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(weight))
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.inputs.append(x.detach().clone())
        z = self.weight * F.avg_pool2d(x[:, :1], 2)
        zeros = torch.zeros_like(z).expand(-1, NUM_CLASSES - 1, -1, -1)
        return {"out": torch.cat([z, zeros], dim=1)}


def window_masks(size: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per axis: frequencies strictly inside the swapped window (|k| < b) and outside (|k| > b).
    The official window is -b..b-1; the ring |k| = b mixes source and target by symmetry."""
    k = torch.fft.fftfreq(size, 1 / size).abs()
    return k < b, k > b


def test_the_source_keeps_its_phase_and_takes_the_target_low_amplitude() -> None:
    method = make_fda("beta=0.1", "entropy_weight=0")
    method.model = recorder = Recorder()
    data = batches(source_size=(3, 32, 32), target_size=(2, 32, 32))
    method.training_step(data, step=0)
    seen, target_seen = recorder.inputs
    assert torch.equal(target_seen, data["target"]["image"])  # the target is not swapped
    b = fda_window(32, 32, 0.1)
    assert b == 3
    inner_1d, outer_1d = window_masks(32, b)
    inner = inner_1d[:, None] & inner_1d[None, :]
    outer = outer_1d[:, None] | outer_1d[None, :]
    spec_seen = torch.fft.fft2(seen.double())
    spec_src = torch.fft.fft2(data["source"]["image"].double())
    paired = data["target"]["image"][[0, 1, 0]]  # source i takes target i mod 2
    amp_tgt = torch.fft.fft2(paired.double()).abs()
    expected_inner = torch.polar(amp_tgt, spec_src.angle())[..., inner]
    torch.testing.assert_close(spec_seen[..., inner], expected_inner, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(spec_seen[..., outer], spec_src[..., outer], atol=1e-3, rtol=1e-4)
    # the swap changed something: the mean colour (DC) now is the target's
    torch.testing.assert_close(
        seen.mean(dim=(-2, -1)), paired.mean(dim=(-2, -1)), atol=1e-5, rtol=0
    )


def test_a_target_of_another_size_is_resized_for_the_swap_only() -> None:
    method = make_fda("beta=0.1")
    method.model = recorder = Recorder()
    data = batches(target_size=(2, 32, 48))
    method.training_step(data, step=0)
    seen, target_seen = recorder.inputs
    resized = F.interpolate(data["target"]["image"], size=(32, 32), mode="bilinear", antialias=True)
    torch.testing.assert_close(seen, fda_swap(data["source"]["image"], resized, 0.1))
    assert target_seen.shape[-2:] == (32, 48)  # the entropy sees the target as it is


def test_no_window_trains_exactly_like_source_only_cross_entropy() -> None:
    # b = floor(32 * 0.01) = 0: nothing is swapped; the entropy is kept off
    method = make_fda("beta=0.01", "entropy_start=1000000")
    cfg = load_config(None, [*FAST_MODEL, "method.params.stream=source"])
    torch.manual_seed(0)
    supervised = Supervised(cfg, NUM_CLASSES)
    supervised.model.load_state_dict(method.model.state_dict())
    method.train(), supervised.train()
    data = batches()
    torch.manual_seed(1)  # the same dropout draws in both source forwards
    ours = method.training_step(data, step=0)
    torch.manual_seed(1)
    theirs = supervised.training_step({"source": data["source"]}, step=0)
    assert torch.equal(ours["loss"], theirs["loss"])
    ours["loss"].backward()
    theirs["loss"].backward()
    for (name, a), b in zip(method.model.named_parameters(), supervised.model.parameters()):
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            assert torch.equal(a.grad, b.grad), name


def charbonnier_entropy_by_hand(target: torch.Tensor, w: float, eta: float) -> float:
    """Mean over the 2x2-pooled pixels of ((H / ln C)^2 + 1e-8)^eta, logits (w * pooled, 0, 0)."""
    pooled = F.avg_pool2d(target[:, :1].double(), 2).flatten().tolist()
    total = 0.0
    for v in pooled:
        e = [math.exp(w * v), 1.0, 1.0]
        p = [x / sum(e) for x in e]
        h = -sum(q * math.log(q) for q in p) / math.log(NUM_CLASSES)
        total += (h * h + 1e-8) ** eta
    return total / len(pooled)


def test_entropy_is_off_before_the_start_then_weighted_at_model_resolution() -> None:
    method = make_fda("beta=0.1", "entropy_start=5", "entropy_weight=0.3", "eta=1.5")
    method.model = Recorder(weight=4.0)
    data = batches(target_size=(2, 8, 8))
    expected = charbonnier_entropy_by_hand(data["target"]["image"], 4.0, 1.5)
    before = method.training_step(data, step=4)
    assert torch.equal(before["loss"], before["ce"])  # the term is exactly absent
    assert not before["entropy"].requires_grad
    assert before["entropy"].item() == pytest.approx(expected, rel=1e-5)  # still logged
    after = method.training_step(data, step=5)
    assert after["entropy"].item() == pytest.approx(expected, rel=1e-5)
    assert (after["loss"] - after["ce"]).item() == pytest.approx(0.3 * expected, rel=1e-5)
    # computed before upsampling: the entropy of the logits resized to 8x8 is another value
    logits = method.model(data["target"]["image"])["out"]
    up = F.interpolate(logits, size=(8, 8), mode="bilinear", align_corners=False)
    log_p = torch.log_softmax(up.double(), 1)
    h = -(log_p.exp() * log_p).sum(1) / math.log(NUM_CLASSES)
    assert ((h**2 + 1e-8) ** 1.5).mean().item() != pytest.approx(expected, rel=1e-3)


def test_uniform_prediction_gives_the_reference_value_for_eta() -> None:
    # docs/METHODS.md, "FDA": H_n = 1 for a uniform softmax, so the term is (1 + 1e-8)^eta
    method = make_fda("eta=3.0")
    method.model = Recorder(weight=0.0)
    out = method.training_step(batches(), step=0)
    assert out["entropy"].item() == pytest.approx((1 + 1e-8) ** 3, abs=1e-6)
    assert (out["loss"] - out["ce"]).item() == pytest.approx(0.005 * (1 + 1e-8) ** 3, rel=1e-5)


@pytest.mark.parametrize(
    ("override", "match"),
    [("bta=0.01", "did you mean"), ("beta=0.7", "beta"), ("entropy_start=-1", "entropy_start")],
)
def test_bad_params_are_config_errors(override: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_fda(override)
