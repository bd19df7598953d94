"""What ``segshift list`` shows: registries, packaged configs, label spaces and dataset options.

Every option a dataset accepts in ``options`` (``segshift.data.dataset_options``) is described in
:data:`OPTION_HELP` (a test keeps the two in step), so ``segshift list --dataset folder`` is the
reference for them. Example::

    for line in overview_lines():
        print(line)
"""

from __future__ import annotations

import shutil
import textwrap

from segshift.config import packaged_configs, read_yaml
from segshift.registry import DATASETS, METHODS, MODELS

# Options shared by every dataset (``SegDataset``), then each dataset's own.
OPTION_HELP: dict[str, dict[str, str]] = {
    "*": {
        "fit_masks": "true: resize a mask whose size differs from its image's to the image's "
        "size (nearest) instead of refusing it; data check and training say how many",
        "remap": "map this dataset's classes onto common ones: {classes: [common class, ...], "
        "map: {own class: common class or null}} (streams of different label spaces train "
        "together; classes named alike map by themselves, the rest are ignored)",
    },
    "folder": {
        "image_dir": "folder of the images under the root (default: images)",
        "mask_dir": "folder of the masks, named like the images (default: masks)",
        "classes": "the class list: names (mask value = list position) or {name, id, color, "
        "ignore} entries (id may be a list: several raw values, one class); instead of "
        "root/classes.yaml",
        "classes_from": "read classes.yaml from another folder (or that file), e.g. a validation "
        "folder sharing the training folder's classes",
        "label_space": "a built-in label space for the masks' raw ids, e.g. cityscapes for "
        "Cityscapes labelIds (segshift list shows them)",
        "mask_format": "auto (colours for RGB files, ids otherwise), index, palette (P PNG), rgb "
        "(pixel = class colour) or channel (one channel holds the id)",
        "mask_channel": "with mask_format: channel, the channel holding the id: 0 = R (CARLA), "
        "1 = G, 2 = B",
        "void_colors": "[[r, g, b], ...] mask colours to ignore (255) in colour masks",
    },
    "cityscapes": {
        "label_space": "cityscapes (19 classes, default), cityscapes16 (SYNTHIA's 16, also "
        "reports mIoU over 13) or cityscapes_synthia19 (19, also reports mIoU over 16 and 13)",
    },
    "synthia": {
        "label_space": "synthia16 (16 classes shared with Cityscapes, default) or synthia19 "
        "(Cityscapes' 19 train ids, as DACS)",
    },
    "voc": {
        "mask_dirs": "mask folders looked up in order (default: [SegmentationClass, "
        "SegmentationClassAug]: VOC's own masks first, SBD's elsewhere)",
    },
}


def _registries() -> None:
    """Import the packages whose modules register datasets, models and methods."""
    import segshift.data  # noqa: F401
    import segshift.methods  # noqa: F401
    import segshift.models  # noqa: F401


def option_help(dataset: str) -> dict[str, str]:
    """``{option: description}`` for every option of ``dataset`` (UnknownNameError if unknown);
    an option without a description maps to ``""``."""
    from segshift.data import dataset_options

    _registries()
    options = dataset_options(DATASETS.get(dataset))
    described = {**OPTION_HELP["*"], **OPTION_HELP.get(dataset, {})}
    return {name: described.get(name, "") for name in options}


def config_description(path: object) -> str:
    """The first comment line of a YAML file, without ``#``; ``""`` if it starts otherwise."""
    with open(str(path), encoding="utf-8") as file:
        first = file.readline().strip()
    return first.lstrip("#").strip() if first.startswith("#") else ""


def packaged_config_list() -> list[tuple[str, str, bool]]:
    """``(name, description, is_pipeline)`` of every packaged config, sorted by name."""
    root = packaged_configs()
    rows = []
    for path in sorted(root.rglob("*.yaml")):
        name = str(path.relative_to(root).with_suffix(""))
        rows.append((name, config_description(path), "pipeline" in read_yaml(path)))
    return rows


def label_space_list() -> list[tuple[str, int]]:
    """``(name, number of classes)`` of every built-in label space."""
    from segshift.data import get_label_space, label_space_names

    return [(name, get_label_space(name).num_classes) for name in label_space_names()]


def _table(rows: list[tuple[str, str]], indent: str = "  ") -> list[str]:
    """Two columns; the second wrapped to the terminal's width (100 when not a terminal)."""
    width = max((len(name) for name, _ in rows), default=0)
    room = max(40, shutil.get_terminal_size((100, 24)).columns - len(indent) - width - 3)
    lines = []
    for name, text in rows:
        wrapped = textwrap.wrap(text, room, break_on_hyphens=False) or [""]
        lines.append(f"{indent}{name:<{width}}  {wrapped[0]}".rstrip())
        lines += [f"{indent}{'':<{width}}  {more}" for more in wrapped[1:]]
    return lines


def overview_lines() -> list[str]:
    """The lines of ``segshift list``: registries first (one line each), then the details."""
    from segshift.data import dataset_options

    _registries()
    lines = [f"{r.kind}s: {', '.join(r.names())}" for r in (DATASETS, MODELS, METHODS)]
    configs = packaged_config_list()
    lines += ["", "configs (segshift train NAME; segshift config NAME prints one resolved):"]
    lines += _table([(name, text) for name, text, pipe in configs if not pipe])
    lines += ["", "pipeline configs (segshift pipeline NAME):"]
    lines += _table([(name, text) for name, text, pipe in configs if pipe])
    lines += ["", "label spaces (options.label_space, or label_space: in classes.yaml):"]
    lines += _table([(name, f"{n} classes") for name, n in label_space_list()])
    lines += ["", "dataset options (data.streams.NAME.options; segshift list --dataset NAME):"]
    lines += _table(
        [(name, ", ".join(dataset_options(DATASETS.get(name)))) for name in DATASETS.names()]
    )
    return lines


def dataset_lines(dataset: str) -> list[str]:
    """The lines of ``segshift list --dataset NAME``: its docstring's first line and options."""
    _registries()
    cls = DATASETS.get(dataset)
    summary = (cls.__doc__ or "").strip().splitlines()[0].replace("``", "`") if cls.__doc__ else ""
    lines = [f"dataset {dataset}: {summary}".rstrip(), "options (data.streams.NAME.options):"]
    return lines + _table(list(option_help(dataset).items()))
