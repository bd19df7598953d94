"""Start-up checks of a run that would otherwise be silently ignored or wasted.

- ``eval.subset`` must name a subset of the label space (SYNTHIA's ``13``/``16``): a typo
  would report mIoU over all classes.
- A training stream's ``crop_size`` larger than every image (after ``resize`` and the largest
  ``scale_range`` factor) trains on mostly padding: a WARNING naming the key.
- A ``concat`` part reads the stream's ``n_labeled`` / ``complement`` unless it sets its own
  (a subset of each part): a note saying so.

Example::

    >>> check_eval_subset(cfg, label_space)      # ConfigError for eval.subset=nosuch
    >>> crop_warning("data.streams.labeled", node, dataset)
    'WARNING: data.streams.labeled.crop_size [128, 160] is larger than every image ...'
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from segshift.data.io import image_size
from segshift.errors import ConfigError, DataError

SIZE_SAMPLE = 64  # image headers read to judge a crop (spread over the stream)
SUBSET_KEYS = ("n_labeled", "complement")


def check_eval_subset(cfg: Any, label_space: Any) -> None:
    """A ConfigError when ``eval.subset`` is set but not a subset of ``label_space``."""
    subset = cfg.eval.subset
    if subset is None or label_space is None:
        return
    known = sorted(label_space.subsets)
    if str(subset) not in label_space.subsets:
        listed = ", ".join(known) if known else "none"
        raise ConfigError(
            f"eval.subset: '{subset}' is not a class subset of label space "
            f"'{label_space.name}' (its subsets: {listed}); leave it null for all classes"
        )


def crop_warning(where: str, node: Any, dataset: Any) -> str | None:
    """A WARNING when ``node.crop_size`` exceeds every image of ``dataset`` (a sample of up to
    ``SIZE_SAMPLE`` headers) in height or width, after ``resize`` and ``scale_range``."""
    crop = list(node.crop_size) if node.crop_size else None
    files = list(dataset.files)
    if crop is None or not files:
        return None
    step = max(1, len(files) // SIZE_SAMPLE)
    if node.resize:
        sizes = [tuple(int(v) for v in node.resize)]
    else:
        try:
            sizes = [image_size(sample.image) for sample in files[::step][:SIZE_SAMPLE]]
        except DataError:  # an unreadable image is reported where it is read
            return None
    high = float(node.scale_range[1])
    if not all(crop[0] > h * high or crop[1] > w * high for h, w in sizes):
        return None
    largest = max(sizes, key=lambda s: s[0] * s[1])
    scaled = f", x{high:g} by scale_range" if high != 1 else ""
    return (
        f"WARNING: {where}.crop_size {crop} is larger than every image ({largest[0]}x"
        f"{largest[1]} (HxW) at most{scaled}): each crop is mostly padding, which trains on "
        f"nothing; lower {where}.crop_size or raise {where}.resize / scale_range"
    )


def concat_subset_notes(where: str, node: Any) -> list[str]:
    """Notes for ``concat`` parts that read the stream's ``n_labeled`` / ``complement``."""
    entries = node.get("concat") if hasattr(node, "get") else getattr(node, "concat", None)
    if not entries:
        return []
    entries = OmegaConf.to_container(entries) if OmegaConf.is_config(entries) else entries
    given = {key: node[key] for key in SUBSET_KEYS if node[key] not in (None, False)}
    notes = []
    for i, entry in enumerate(entries):
        inherited = {k: v for k, v in given.items() if k not in entry}
        if inherited:
            keys = ", ".join(f"{k}={v}" for k, v in inherited.items())
            notes.append(
                f"note: {where}.concat[{i}] reads the stream's {keys} (its own subset of that "
                f"part); set them in the entry (n_labeled: null for all its images) to change it"
            )
    return notes


def stream_notes(where: str, node: Any, dataset: Any) -> list[str]:
    """The start-up lines of one training stream: :func:`crop_warning`, :func:`concat_subset_notes`."""
    crop = crop_warning(where, node, dataset)
    return ([crop] if crop else []) + concat_subset_notes(where, node)
