"""Check datasets before training: every image and mask read once, every problem reported.

``segshift data check CONFIG_OR_DIR`` scans each ``data.streams.*`` and ``data.val`` of a config
(or the splits of a folder dataset directory); the trainer checks ``data.val``'s labels before
step 1 with :func:`require_valid_labels`. Samples are read exactly as training reads them
(``SegDataset.load`` / ``load_label``: the dataset's mask format, label space, id range and size
checks), in a thread pool (decoding releases the GIL). The DataError of each sample is collected
instead of stopping at the first, and problems are grouped: an unknown id or colour with the
files that hold it, size mismatches, unreadable files, missing masks, empty sets. Example::

    >>> report = scan_dataset(build_dataset(cfg.data.val, train=False), "data.val", workers=2)
    >>> report.sizes, report.pixels[-1]   # image sizes (H, W) and ignored pixels
    (Counter({(32, 40): 6}), 240)
    >>> print("\n".join(problem_lines(report)))   # one line per kind and value
      data.val: unknown id 7 in 2 file(s): .../masks/a.png, .../masks/b.png
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from segshift.config import DatasetConfig, merge_into_schema
from segshift.data import build_dataset
from segshift.data.base import SegDataset
from segshift.data.concat import check_parts, part_configs
from segshift.data.findings import (
    fitted_line,
    shared_name_message,
    shared_names,
    small_image_message,
    unknown_id_message,
)
from segshift.data.io import image_size
from segshift.data.label_space import IGNORE_INDEX, unknown_raw_ids
from segshift.data.splits import SPLIT_FILE_NAMES
from segshift.errors import ConfigError, DataError, SegshiftError
from segshift.registry import DATASETS

SHOWN_FILES = 3  # files named per problem in the table (the JSON report has all)
SHOWN_CLASSES = 8  # class names in a one-line class list

# A DataError's message -> the kind of problem; ids and colours are also split into values.
_UNKNOWN_IDS = re.compile(r"label ids \[([^\]]*)\] are outside")
_UNKNOWN_COLOURS = re.compile(r"mask colour\(s\) (.*) are not in the palette")
_MISSING_MASK = re.compile(r"no mask for image .* \(expected (.*)\)$")
_KINDS = (
    ("missing mask", re.compile(r"no mask for image")),
    ("size mismatch", re.compile(r"does not match image")),
    ("empty", re.compile(r"no images for split|subset is empty")),
    ("not found", re.compile(r"(root|directory|split file) .* (does not exist|is not a dir)")),
    ("unreadable", re.compile(r"cannot read|file not found|floating-point|integer image")),
    ("mask format", re.compile(r"mask must hold|expected a palette|single-channel mask")),
    ("label space", re.compile(r"concatenated datasets (need one label space|must all be)")),
)


@dataclass(frozen=True)
class Problem:
    """One problem in one file: ``kind`` (e.g. ``unknown id``), the bad ``value`` for ids and
    colours (else ``""``), the ``file`` and the DataError's ``message``."""

    kind: str
    value: str
    file: str
    message: str


@dataclass
class SetReport:
    """What a scan found in one dataset (a stream or the validation set).

    ``pixels`` holds the pixels of each class and, last, the ignored ones (255); ``images_with``
    the images that show each class; ``sizes`` counts image sizes (H, W); ``warnings`` are
    findings that do not stop training (`segshift.data.findings`); ``fitted`` counts the masks
    ``options.fit_masks`` resized.
    """

    where: str
    root: str
    labeled: bool = True
    class_names: list[str] = field(default_factory=list)
    images: int = 0
    pixels: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    images_with: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sizes: Counter = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    fitted: int = 0

    def grouped(self, warnings: bool = False) -> dict[tuple[str, str], list[Problem]]:
        """Problems (or warnings) by (kind, value), in the order first met."""
        groups: dict[tuple[str, str], list[Problem]] = {}
        for problem in self.warnings if warnings else self.problems:
            groups.setdefault((problem.kind, problem.value), []).append(problem)
        return groups


def classify(error: SegshiftError, file: str | Path) -> list[Problem]:
    """The problems a DataError (or ConfigError) about ``file`` names: one per unknown id or
    colour, else one of the kind its message says (``other`` when it says none)."""
    message = str(error)
    ids = _UNKNOWN_IDS.search(message)
    if ids:
        return [Problem("unknown id", v.strip(), str(file), message) for v in ids[1].split(",")]
    colours = _UNKNOWN_COLOURS.search(message)
    if colours:
        values = re.findall(r"\(\d+, \d+, \d+\)", colours[1])
        return [Problem("unknown colour", v, str(file), message) for v in values]
    kind = next((kind for kind, pattern in _KINDS if pattern.search(message)), "other")
    return [Problem(kind, "", str(file), message)]


# -- scanning one dataset ---------------------------------------------------------------------
@dataclass
class _SampleScan:
    size: tuple[int, int] | None = None
    counts: np.ndarray | None = None  # bincount of the train ids, 256 long
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def _read(dataset: SegDataset, index: int, images: bool) -> tuple[tuple[int, int], Any]:
    """(H, W) and train ids (or None) of sample ``index``, read as training reads it; without
    ``images`` only the mask is decoded (the image's size comes from its header)."""
    if images:
        image, label = dataset.load(index)
        return image.shape[:2], label
    sample = dataset.files[index]
    label = dataset.load_label(index) if dataset.labeled else None
    size = image_size(sample.image)
    if label is not None and label.shape != size:
        raise DataError(
            f"{sample.mask}: mask size {label.shape[1]}x{label.shape[0]} does not match image "
            f"{sample.image} size {size[1]}x{size[0]} (width x height); options.fit_masks: "
            "true resizes masks to their images (nearest)"
        )
    return size, label


def _scan_sample(dataset: SegDataset, index: int, images: bool) -> _SampleScan:
    sample = dataset.files[index]
    try:
        with unknown_raw_ids() as unknown:
            size, label = _read(dataset, index, images)
    except DataError as error:
        about_image = not str(error).startswith(str(sample.mask))
        scan = _SampleScan(problems=classify(error, sample.image if about_image else sample.mask))
        try:  # an unreadable image hides its mask's problems; a bad mask, its image's size
            if about_image and dataset.labeled:
                dataset.load_label(index)
            elif not about_image:
                scan.size = image_size(sample.image)
        except DataError as other:
            scan.problems += classify(other, sample.mask if about_image else sample.image)
        return scan
    counts = None if label is None else np.bincount(label.ravel(), minlength=256)
    scan = _SampleScan(size=size, counts=counts)
    small = small_image_message(size, sample.image)
    if small:
        scan.problems.append(Problem("too small", "", str(sample.image), small))
    space = dataset.label_space.name
    for raw in sorted(unknown):
        message = unknown_id_message(raw, sample.mask, space)
        kind = f"raw id outside label space '{space}' (read as 255):"
        scan.warnings.append(Problem(kind, str(raw), str(sample.mask), message))
    return scan


def scan_dataset(
    dataset: SegDataset,
    where: str,
    workers: int = 2,
    progress: bool = False,
    images: bool = True,
) -> SetReport:
    """Read every sample of ``dataset`` once with ``workers`` threads; see :class:`SetReport`.

    ``images=False`` decodes only the masks (image sizes come from the file headers): the
    trainer's quick check of the validation set.
    """
    names = list(dataset.label_space.class_names)
    report = SetReport(where, str(dataset.root), dataset.labeled, names, len(dataset))
    report.pixels = np.zeros(len(names) + 1, np.int64)
    report.images_with = np.zeros(len(names), np.int64)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        scans = pool.map(lambda i: _scan_sample(dataset, i, images), range(len(dataset)))
        bar = tqdm(scans, total=len(dataset), desc=where, disable=not progress, leave=False)
        for scan in bar:
            report.problems += scan.problems
            report.warnings += scan.warnings
            if scan.size is not None:
                report.sizes[scan.size] += 1
            if scan.counts is not None:
                report.pixels += np.append(scan.counts[: len(names)], scan.counts[IGNORE_INDEX])
                report.images_with += scan.counts[: len(names)] > 0
    parts = getattr(dataset, "parts", [dataset])  # a concatenation counts its parts' masks
    report.fitted = sum(len(getattr(part, "fitted", ())) for part in parts)
    return report


# -- opening the datasets of a config or a directory --------------------------------------------
def _collecting_missing_masks(cls: type[SegDataset], missing: list[DataError]) -> type:
    """``cls`` whose pairing of images and masks collects every missing mask in ``missing``
    instead of stopping at the first."""

    class Collecting(cls):  # type: ignore[misc, valid-type]
        def pair(self, images: list[Path], mask_of: Any) -> list[Any]:
            samples = []
            for image in images:
                try:
                    samples += super().pair([image], mask_of)
                except DataError as error:
                    missing.append(error)
            return samples

    return Collecting


def open_dataset(cfg: Any, where: str) -> tuple[SegDataset | None, list[Problem]]:
    """The dataset of ``cfg`` (built as for evaluation) and the problems met opening it: every
    missing mask, an empty set, a missing root, a bad option (then no dataset)."""
    missing_keys = OmegaConf.missing_keys(cfg) if isinstance(cfg, DictConfig) else set()
    if missing_keys:
        message = f"value(s) not set: {', '.join(sorted(missing_keys))} (give them as overrides)"
        return None, [Problem("not set", "", where, message)]
    try:
        return build_dataset(cfg, train=False), []
    except SegshiftError as error:
        problems = classify(error, cfg.root)
        if problems[0].kind != "missing mask":
            return None, problems
    missing: list[DataError] = []
    cls = _collecting_missing_masks(DATASETS.get(cfg.name), missing)
    options = cfg.options
    if isinstance(options, DictConfig):
        options = OmegaConf.to_container(options, resolve=True)
    try:
        dataset = cls(
            cfg.root,
            split=cfg.split,
            labeled=True,
            domain=cfg.domain or None,
            n_labeled=cfg.n_labeled,
            split_file=cfg.split_file,
            subset_seed=int(cfg.subset_seed),
            complement=bool(cfg.complement),
            **(options or {}),
        )
    except SegshiftError as error:  # e.g. no image has its mask: also an empty set
        dataset, missing = None, [*missing, error]
    return dataset, [p for e in missing for p in classify(e, _expected_mask(e, cfg.root))]


def _expected_mask(error: Exception, default: str) -> str:
    """The mask file a "no mask for image" DataError expected (else ``default``)."""
    found = _MISSING_MASK.search(str(error))
    return found[1] if found else str(default)


def config_sets(cfg: DictConfig) -> list[tuple[str, Any]]:
    """(name, dataset node) of every training stream and the validation set of a run config."""
    sets = [(f"data.streams.{name}", node) for name, node in cfg.data.streams.items()]
    return sets + ([("data.val", cfg.data.val)] if cfg.data.val is not None else [])


def directory_sets(root: str | Path, overrides: Sequence[str] = ()) -> list[tuple[str, Any]]:
    """Folder dataset nodes for a dataset directory: one per split it has (``<split>/images``
    directories or ``<split>.txt`` files), else one of every image (``split: all``); labeled
    when it has a ``masks`` directory (``options.image_dir`` / ``options.mask_dir`` rename
    both). ``overrides`` are the node's keys (``labeled=false``, ``options.mask_format=rgb``)."""
    root = Path(root).expanduser()
    given = OmegaConf.from_dotlist(list(overrides))
    options = given.get("options") or {}
    images, masks = options.get("image_dir", "images"), options.get("mask_dir", "masks")
    splits = [s for s in SPLIT_FILE_NAMES if (root / s / images).is_dir()]
    splits = splits or [s for s in SPLIT_FILE_NAMES if (root / f"{s}.txt").is_file()]
    if "split" in given:
        splits = [str(given.split)]
    sets = []
    for split in splits or ["all"]:
        folder = root / split if (root / split / images).is_dir() else root
        base = {"name": "folder", "root": str(root), "split": split}
        base["labeled"] = (folder / masks).is_dir()
        node = merge_into_schema(DatasetConfig(), base, given, origin=str(root))
        sets.append((f"split {split}", node))
    return sets


def check_sets(
    sets: Sequence[tuple[str, Any]], workers: int = 2, progress: bool = False
) -> list[SetReport]:
    """Open and scan each (name, dataset node); a set that cannot be opened is reported too.
    A concatenation is checked part by part (``data.streams.source``, then
    ``data.streams.source.concat[0]``, ...); a part whose classes differ from the first's is a
    ``label space`` problem of that part."""
    reports = []
    for where, node in sets:
        first, opened = None, []
        for k, part in enumerate(part_configs(node)):
            name = where if k == 0 else f"{where}.concat[{k - 1}]"
            dataset, report = _check_set(part, name, workers, progress)
            if dataset is not None and first is not None:
                try:
                    check_parts([first, dataset])
                except ConfigError as error:
                    report.problems += classify(error, report.root)
            if first is None:
                first = dataset
            opened.append((name, dataset))
            reports.append(report)
        by_name = {r.where: r for r in reports}
        for (part, earlier), names in shared_names(opened).items():
            message = shared_name_message(names, part, earlier)
            by_name[part].warnings.append(Problem("shared names", "", part, message))
    return reports


def _check_set(
    node: Any, where: str, workers: int, progress: bool
) -> tuple[SegDataset | None, SetReport]:
    """The dataset of one node (None if it cannot be opened) and its report."""
    dataset, problems = open_dataset(node, where)
    if dataset is None:
        unset = isinstance(node, DictConfig) and OmegaConf.is_missing(node, "root")
        report = SetReport(where, "(root not set)" if unset else str(node.root), node.labeled)
    else:
        report = scan_dataset(dataset, where, workers, progress)
    report.problems[:0] = problems
    return dataset, report


def require_valid_labels(dataset: SegDataset, where: str, workers: int = 2) -> SetReport:
    """Read every mask of ``dataset`` (the trainer's check of ``data.val`` before step 1); a
    DataError lists every bad file. Returns the report (image sizes, class pixels)."""
    report = scan_dataset(dataset, where, workers, images=False)
    if report.problems:
        lines = "\n".join(problem_lines(report))
        raise DataError(
            f"{where} ({report.root}) has {len(report.problems)} problem(s), found before "
            f"training:\n{lines}\n(`segshift data check CONFIG` checks every stream)"
        )
    return report


# -- reporting --------------------------------------------------------------------------------
def class_list(names: Sequence[str], shown: int = SHOWN_CLASSES) -> str:
    """``"11 classes: sky, building, ..., bicyclist"``: the first and last names of a long list."""
    names = list(names)
    listed = names if len(names) <= shown else [*names[: shown - 1], "...", names[-1]]
    return f"{len(names)} classes: {', '.join(listed)}"


def sizes_text(sizes: Counter) -> str:
    """``"32x40 (6), 24x48 (1)"``: distinct image sizes (HxW), the most frequent first."""
    return ", ".join(f"{h}x{w} ({n})" for (h, w), n in sizes.most_common()) or "-"


def problem_lines(report: SetReport, warnings: bool = False) -> Iterator[str]:
    """One line per problem (or warning) group: the kind, the value and a few files (or
    messages)."""
    for (kind, value), problems in report.grouped(warnings).items():
        more = len(problems) - SHOWN_FILES
        tail = f" ... and {more} more" if more > 0 else ""
        if value:
            files = ", ".join(p.file for p in problems[:SHOWN_FILES])
            yield f"  {report.where}: {kind} {value} in {len(problems)} file(s): {files}{tail}"
        else:
            for problem in problems[:SHOWN_FILES]:
                yield f"  {report.where}: {kind}: {problem.message}"
            if tail:
                yield f"  {report.where}: {kind}:{tail}"


def _class_table(report: SetReport) -> Iterator[str]:
    total = max(int(report.pixels.sum()), 1)
    width = max([len(n) for n in report.class_names] + [len("(ignored)")])
    yield f"    {'id':>3}  {'class':<{width}}  {'pixels':>12}  {'share':>6}  {'images':>6}"
    rows = [(str(i), n, report.pixels[i], report.images_with[i])
            for i, n in enumerate(report.class_names)]  # fmt: skip
    rows.append(("255", "(ignored)", report.pixels[-1], None))
    for ident, name, pixels, images in rows:
        shown = "" if images is None else str(int(images))
        yield (
            f"    {ident:>3}  {name:<{width}}  {int(pixels):>12}  "
            f"{100 * int(pixels) / total:>5.1f}%  {shown:>6}"
        )


def format_reports(reports: Sequence[SetReport]) -> str:
    """The table ``segshift data check`` prints: per set its images, sizes and classes, then
    every problem and a last line saying whether training can start."""
    lines = []
    for report in reports:
        kind = "labeled" if report.labeled else "unlabeled"
        lines.append(
            f"{report.where}: {report.root} ({kind}), {report.images} images, "
            f"{len(report.problems)} problem(s)"
        )
        lines.append(f"  image sizes (HxW): {sizes_text(report.sizes)}")
        if report.labeled and report.class_names:
            lines.append(f"  {class_list(report.class_names)}")
            lines += _class_table(report)
    notes = [line for report in reports for line in problem_lines(report, warnings=True)]
    notes += [line for r in reports if (line := fitted_line(r.where, r.fitted))]
    if notes:
        lines += ["", "warnings:", *notes]
    problems = [line for report in reports for line in problem_lines(report)]
    total = sum(len(report.problems) for report in reports)
    if problems:
        lines += ["", "problems:", *problems, ""]
        bad = sum(1 for report in reports if report.problems)
        lines.append(f"{total} problem(s) in {bad} of {len(reports)} set(s)")
    else:
        images = sum(report.images for report in reports)
        lines.append(f"no problems: {len(reports)} set(s), {images} images")
    return "\n".join(lines)


def reports_json(reports: Sequence[SetReport]) -> dict[str, Any]:
    """The reports as plain data (``--json``): every problem file, not only the first few."""
    sets = []
    for report in reports:
        classes = [
            {"id": i, "name": n, "pixels": int(report.pixels[i]),
             "images": int(report.images_with[i])}
            for i, n in enumerate(report.class_names)
        ]  # fmt: skip
        problems = [
            {"kind": kind, "value": value, "count": len(found),
             "files": [p.file for p in found], "messages": [p.message for p in found]}
            for (kind, value), found in report.grouped().items()
        ]  # fmt: skip
        warnings = [
            {"kind": kind, "value": value, "count": len(found),
             "files": [p.file for p in found], "messages": [p.message for p in found]}
            for (kind, value), found in report.grouped(warnings=True).items()
        ]  # fmt: skip
        sets.append(
            {
                "name": report.where,
                "root": report.root,
                "labeled": report.labeled,
                "images": report.images,
                "image_sizes": {f"{h}x{w}": n for (h, w), n in report.sizes.most_common()},
                "classes": classes if report.labeled else [],
                "ignored_pixels": int(report.pixels[-1]) if report.labeled else 0,
                "problems": problems,
                "warnings": warnings,
                "masks_fitted": report.fitted,
            }
        )
    return {"sets": sets, "problems": sum(len(r.problems) for r in reports)}
