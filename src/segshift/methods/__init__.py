"""Training methods, registered by name in ``segshift.registry.METHODS``."""

from segshift.methods import (  # noqa: F401  (registers the methods)
    adaptsegnet,
    adv_cutmix,
    advent,
    dacs,
    fda,
    minent,
    selftrain,
    supervised,
    uncertainty,
)
from segshift.methods.base import Method

__all__ = ["Method"]
