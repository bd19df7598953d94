"""Training methods, registered by name in ``segshift.registry.METHODS``."""

from segshift.methods import supervised  # noqa: F401  (registers the method)
from segshift.methods.base import Method

__all__ = ["Method"]
