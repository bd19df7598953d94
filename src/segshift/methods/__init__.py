"""Training methods, registered by name in ``segshift.registry.METHODS``.

Every module of this package (one method per file) is imported here, so a new file registers its
method without touching this one; ``common`` holds what methods share.
"""

import importlib
import pkgutil

from segshift.methods.base import Method

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("base", "common"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Method"]
