"""``segshift init DIR``: a config and an example class list for one's own data.

The configs come from the packaged templates ``configs/own/{supervised,semi,uda}.yaml`` (the
streams a method reads: ``labeled``; ``labeled`` + ``unlabeled``; ``source`` + ``target``),
which are self-contained, so they also serve as the ``base:`` of a config of one's own. Example::

    written = init_directory("my_run", method="fixmatch")   # my_run/config.yaml, classes.yaml
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from segshift.config import packaged_configs
from segshift.errors import ConfigError
from segshift.registry import METHODS

UDA_STREAMS = ("source", "target")

EXAMPLE_CLASSES = """\
# An example class list: copy it beside images/ and masks/ (LABELED/classes.yaml) and make it
# yours. Each class has a name, the mask value(s) that mean it (`id`: one value or a list) and a
# colour (colour masks are read by it; predictions are drawn in it). Without `id`, a class's
# position in the list is its mask value. An `ignore: true` entry names values (or colours) that
# are neither trained on nor scored. `segshift list --dataset folder` explains the options.
classes:
  - {name: background, id: 0, color: [0, 0, 0]}
  - {name: water, id: 1, color: [0, 90, 200]}
  - {name: vehicle, id: [2, 3], color: [220, 20, 60]}   # mask values 2 and 3: one class
  - {name: unlabeled, id: 4, ignore: true}
# Other forms (one of them instead of the list above):
#   label_space: cityscapes   a built-in class list for masks in its raw ids (here Cityscapes
#                             labelIds, e.g. KITTI); `segshift list` names the built-in ones
#   colour masks:             give every class its `color` (and set options.mask_format: rgb)
#   the id in one channel:    options: {mask_format: channel, mask_channel: 0}  (R, as CARLA)
"""


def method_template(method: str) -> str:
    """The template (``supervised``, ``semi`` or ``uda``) whose streams ``method`` reads."""
    import segshift.methods  # noqa: F401  (registers the methods)

    cls = METHODS.get(method)  # an unknown name: UnknownNameError with did-you-mean
    if method == "supervised":
        return "supervised"
    if tuple(cls.streams) == UDA_STREAMS:
        return "uda"
    params = getattr(cls, "Params", None)
    if params is not None and "labeled" in {f.name for f in dataclasses.fields(params)}:
        return "semi"
    raise ConfigError(
        f"--method {method}: no template reads its streams; start from its packaged config "
        "instead (segshift list shows them)"
    )


def template_text(method: str) -> str:
    """The template of ``method`` with ``method.name`` set to it and the run named
    ``own_<method>`` (comments kept)."""
    kind = method_template(method)
    text = (packaged_configs() / "own" / f"{kind}.yaml").read_text()
    for pattern, value in (
        (r"^(method:\n  name: )\S+$", method),
        (r"^(name: )\S+$", f"own_{method}"),
    ):
        text, replaced = re.subn(pattern, rf"\g<1>{value}", text, count=1, flags=re.MULTILINE)
        if replaced != 1:
            raise AssertionError(f"configs/own/{kind}.yaml has no line matching {pattern!r}")
    return text


def init_directory(directory: str | Path, method: str = "supervised") -> list[Path]:
    """Write ``directory/config.yaml`` (``method``'s template) and ``directory/classes.yaml``.

    Refuses (ConfigError) to overwrite either file; returns the paths written.
    """
    out = Path(directory).expanduser()
    files = {out / "config.yaml": template_text(method), out / "classes.yaml": EXAMPLE_CLASSES}
    existing = [str(path) for path in files if path.exists()]
    if existing:
        raise ConfigError(f"{', '.join(existing)}: already there, not overwritten")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
    return list(files)
