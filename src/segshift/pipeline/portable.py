"""A pipeline's records without its own directory: a copied or renamed pipeline is the same one.

Stage identities (digests) and recorded results hold paths inside the pipeline directory (the
teacher a student starts from, the pseudo-label folder, run directories). They are recorded
with :data:`HERE` in place of the directory and read back against the directory the pipeline
is in now, as ``segshift train --resume RUN_DIR`` treats a run directory.

Example::

    >>> portable({"root": "/a/loop/pseudo_1"}, Path("/a/loop"))
    {'root': '<pipeline>/pseudo_1'}
    >>> relocated({"root": "<pipeline>/pseudo_1"}, Path("/b/copy"))
    {'root': '/b/copy/pseudo_1'}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

HERE = "<pipeline>"


def _map_strings(value: Any, change: Any) -> Any:
    if isinstance(value, dict):
        return {key: _map_strings(item, change) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_map_strings(item, change) for item in value]
    return change(value) if isinstance(value, str) else value


def portable(value: Any, directory: Path) -> Any:
    """``value`` (plain data) with the pipeline ``directory`` written as :data:`HERE`."""
    pattern = re.compile(re.escape(str(directory)) + r"(?=/|$)")
    return _map_strings(value, lambda text: pattern.sub(HERE, text))


def relocated(value: Any, directory: Path) -> Any:
    """``value`` with :data:`HERE` read as ``directory``."""
    return _map_strings(value, lambda text: text.replace(HERE, str(directory)))
