"""Each published recipe's key hyperparameters against the paper and official code it reproduces.

The tables in recipe_tables.py quote, per recipe, the value the source uses and where it comes
from (paper table, official repository file and constant), with the legend of the source
abbreviations. docs/RECIPES.md gives the full provenance and says what could not be verified.
Config only: no model is built, so this runs in a second.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
from omegaconf import DictConfig, OmegaConf

import segshift.methods  # noqa: F401  (registers the methods)
from recipe_tables import RECIPES
from segshift.config import load_config, packaged_configs, to_dataclass
from segshift.registry import METHODS

CASES = [
    pytest.param(recipe, key, value, id=f"{recipe.split('/')[-1]}:{key}")
    for recipe, spec in RECIPES.items()
    for key, value, _ in spec["rows"]
]


@cache
def _load(recipe: str) -> DictConfig:  # each recipe is read once
    return load_config(recipe)


def _value(recipe: str, key: str) -> Any:
    """The config's value; a method parameter the recipe leaves at its default: the default."""
    cfg = _load(recipe)
    value = OmegaConf.select(cfg, key, default="<missing>")
    if value == "<missing>" and key.startswith("method.params."):
        value = to_dataclass(cfg.method.params, METHODS.get(cfg.method.name).Params, "params")
        for part in key.removeprefix("method.params.").split("."):
            value = getattr(value, part)
        return value
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, bool) or expected is None or isinstance(expected, str):
        return actual == expected
    if isinstance(expected, (int, float)):
        return isinstance(actual, (int, float)) and actual == pytest.approx(expected)
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(_same(a, e) for a, e in zip(actual, expected))
        )
    return actual == expected


def test_every_recipe_has_a_table() -> None:
    shipped = {
        str(p.relative_to(packaged_configs()).with_suffix(""))
        for p in (packaged_configs() / "recipes").glob("*.yaml")
    }
    assert shipped == set(RECIPES)


@pytest.mark.parametrize(("recipe", "key", "expected"), CASES)
def test_recipe_value_matches_its_source(recipe: str, key: str, expected: Any) -> None:
    actual = _value(recipe, key)
    assert _same(actual, expected), f"{recipe}: {key} is {actual!r}, the source uses {expected!r}"


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_header_cites_source_and_number(recipe: str) -> None:
    path = packaged_configs() / f"{recipe}.yaml"
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    text = "\n".join(header)
    for field in ("Source:", "Repo:", "Target:"):
        assert field in text, f"{path.name}: header lacks '{field}'"
    assert f"{RECIPES[recipe]['number']} mIoU" in text, f"{path.name}: header lacks the number"


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_pretrained_init_is_named_and_not_silently_skipped(recipe: str) -> None:
    cfg = load_config(recipe)
    assert cfg.model.encoder_weights is None  # the user passes the downloaded file
    assert RECIPES[recipe]["init"] in (cfg.model.expected_weights or "")


def test_unimatch_length_is_240_epochs_of_the_labeled_loader() -> None:
    """UniMatch's supervised.py: total_iters = len(trainloader) * epochs, where the loader is the
    labeled set split over the GPUs (DistributedSampler) in batches with drop_last."""
    cfg = load_config("recipes/cityscapes_1_8_labeled_only")
    stream = cfg.data.streams.labeled
    per_gpu = -(-stream.n_labeled // cfg.train.devices)  # DistributedSampler pads up
    assert cfg.train.iters == (per_gpu // stream.batch_size) * 240


def test_deeplabv2_stop_is_inside_the_poly_horizon() -> None:
    for recipe in ("recipes/gta5_cityscapes_source_only", "recipes/synthia_cityscapes_source_only"):
        cfg = load_config(recipe)
        assert cfg.train.stop_at < cfg.train.iters  # poly decays over 250k, training stops at 150k
