"""A tiny name -> builder registry, used for datasets, models and methods.

Builders are plain functions or classes registered with a decorator::

    @MODELS.register("deeplabv2")
    def deeplabv2(num_classes: int, **kwargs) -> nn.Module: ...

    model = MODELS.build("deeplabv2", num_classes=19)

Tests are generated from the registries, so whatever is registered is tested.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, TypeVar

from segshift.errors import UnknownNameError

T = TypeVar("T", bound=Callable[..., Any])


def did_you_mean(name: str, candidates: list[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest candidate, or ''."""
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Registry:
    """Maps names to builders for one kind of object (dataset, model, method)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._builders: dict[str, Callable[..., Any]] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def decorator(builder: T) -> T:
            key = name or builder.__name__
            if key in self._builders:
                raise ValueError(f"{self.kind} '{key}' is registered twice")
            self._builders[key] = builder
            return builder

        return decorator

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._builders:
            known = sorted(self._builders)
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, known)}; "
                f"known: {', '.join(known)}"
            )
        return self._builders[name]

    def build(self, name: str, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._builders)

    def __contains__(self, name: object) -> bool:
        return name in self._builders


DATASETS = Registry("dataset")
MODELS = Registry("model")
METHODS = Registry("method")
