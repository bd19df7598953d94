"""Label spaces: class names, palette and the map from a dataset's raw ids to train ids.

Train ids are ``0..num_classes-1``; 255 means "ignore". Raw ids are whatever a dataset's masks
store (Cityscapes labelIds, SYNTHIA ids, CamVid indices); raw ids outside the map become 255.

Example::

    >>> space = get_label_space("cityscapes")
    >>> space.encode(np.array([[7, 0]], dtype=np.uint8))   # road, unlabeled
    array([[  0, 255]], dtype=uint8)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from segshift.errors import ConfigError, DataError
from segshift.registry import did_you_mean

RGB = tuple[int, int, int]
IGNORE_INDEX = 255
# Train ids are stored as uint8 with 255 = ignore, so a label space holds at most 255 classes;
# more would wrap silently (299 -> 43).
MAX_CLASSES = 255


@dataclass(frozen=True)
class LabelSpace:
    """Classes of a segmentation task and how raw mask ids map onto them.

    Args:
        name: short identifier, e.g. ``"cityscapes"``.
        class_names: one name per train id.
        palette: one RGB colour per train id (used by ``colorize`` and ``decode_rgb``).
        raw_to_train: raw id -> train id; raw ids not listed map to ``ignore_index``.
        ignore_index: the train id of ignored pixels (255).
        subsets: named lists of train ids for reporting, e.g. SYNTHIA's ``"13"``.
        void_colors: RGB colours that ``decode_rgb`` maps to ``ignore_index``.
        extra_colors: further mask colours of classes drawn in several colours: colour -> train
            id (``palette`` holds each class's first colour).
        known_ids: every raw id the dataset's masks document (its classes and its void ids),
            for built-in label spaces; other raw ids still become 255, and
            :func:`unknown_raw_ids` reports them (``segshift data check``). None: not known.
    """

    name: str
    class_names: tuple[str, ...]
    palette: list[RGB]
    raw_to_train: dict[int, int]
    ignore_index: int = 255
    subsets: dict[str, list[int]] = field(default_factory=dict)
    void_colors: tuple[RGB, ...] = ()
    extra_colors: dict[RGB, int] = field(default_factory=dict)
    known_ids: frozenset[int] | None = None

    def __post_init__(self) -> None:
        n = len(self.class_names)
        if n > MAX_CLASSES:
            raise ValueError(
                f"label space '{self.name}': {n} classes, at most {MAX_CLASSES} are supported"
            )
        if len(set(self.class_names)) != n:
            raise ValueError(f"label space '{self.name}': duplicate class names")
        if len(self.palette) != n:
            raise ValueError(
                f"label space '{self.name}': {n} classes but {len(self.palette)} colours"
            )
        bad = {
            raw: t
            for raw, t in self.raw_to_train.items()
            if t != self.ignore_index and not 0 <= t < n
        }
        if bad or any(raw < 0 for raw in self.raw_to_train):
            raise ValueError(f"label space '{self.name}': invalid raw -> train ids {bad}")
        if any(not 0 <= t < n for t in self.extra_colors.values()):
            raise ValueError(f"label space '{self.name}': extra colours of unknown classes")
        for subset, ids in self.subsets.items():
            if any(not 0 <= i < n for i in ids):
                raise ValueError(
                    f"label space '{self.name}': subset '{subset}' has ids outside 0..{n - 1}"
                )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @cached_property
    def _lut(self) -> np.ndarray:
        lut = np.full(max(self.raw_to_train, default=0) + 1, self.ignore_index, dtype=np.uint8)
        for raw, train in self.raw_to_train.items():
            lut[raw] = train
        return lut

    @cached_property
    def _color_to_train(self) -> dict[int, int]:
        table = {_pack(color): self.ignore_index for color in self.void_colors}
        table.update({_pack(color): i for color, i in self.extra_colors.items()})
        table.update({_pack(color): i for i, color in enumerate(self.palette)})
        return table

    def encode(self, raw: np.ndarray) -> np.ndarray:
        """Map raw ids (H,W, any integer dtype, e.g. uint16) to train ids (H,W) uint8."""
        lut = self._lut
        found = getattr(_collecting, "ids", None)
        if found is not None and self.known_ids is not None:
            found.update(int(v) for v in np.unique(raw) if int(v) not in self.known_ids)
        inside = (raw >= 0) & (raw < len(lut))
        return np.where(inside, lut[np.clip(raw, 0, len(lut) - 1)], self.ignore_index).astype(
            np.uint8
        )

    def check_train_ids(self, train_ids: np.ndarray, path: str | Path) -> np.ndarray:
        """Return ``train_ids`` (H,W) as uint8; raise DataError naming ``path`` if an id is out of range."""
        bad = (train_ids >= self.num_classes) & (train_ids != self.ignore_index)
        if bad.any():
            values = sorted({int(v) for v in np.unique(train_ids[bad])})[:10]
            raise DataError(
                f"{path}: label ids {values} are outside 0..{self.num_classes - 1} "
                f"(and not {self.ignore_index}) for label space '{self.name}'"
            )
        return train_ids.astype(np.uint8)

    def colorize(self, train_ids: np.ndarray) -> np.ndarray:
        """Train ids (H,W) -> RGB image (H,W,3) uint8; ignored and unknown ids are black."""
        colors = np.zeros((256, 3), dtype=np.uint8)
        colors[: self.num_classes] = np.asarray(self.palette, dtype=np.uint8)
        return colors[np.clip(train_ids, 0, 255).astype(np.uint8)]

    def decode_rgb(self, rgb: np.ndarray, path: str | Path) -> np.ndarray:
        """RGB colour mask (H,W,3) uint8 -> train ids (H,W) uint8; ``void_colors`` -> 255.

        Raises:
            DataError: a colour is neither a class colour nor a void colour; names ``path``.
        """
        packed = _pack_array(rgb)
        keys, inverse = np.unique(packed, return_inverse=True)
        table = self._color_to_train
        unknown = [int(k) for k in keys if int(k) not in table]
        if unknown:
            shown = ", ".join(str(_unpack(k)) for k in unknown[:5])
            raise DataError(
                f"{path}: mask colour(s) {shown} are not in the palette of label space '{self.name}'"
            )
        ids = np.array([table[int(k)] for k in keys], dtype=np.uint8)
        return ids[inverse.reshape(packed.shape)]

    def restricted(self, name: str, class_names: Sequence[str]) -> LabelSpace:
        """A label space with the given subset of classes, keeping this one's raw ids.

        Raw ids of the dropped classes map to 255; subsets are restricted the same way.
        """
        index = {c: i for i, c in enumerate(self.class_names)}
        missing = [c for c in class_names if c not in index]
        if missing:
            raise ValueError(f"label space '{self.name}' has no classes {missing}")
        new_id = {index[c]: i for i, c in enumerate(class_names)}
        return LabelSpace(
            name=name,
            class_names=tuple(class_names),
            palette=[self.palette[index[c]] for c in class_names],
            raw_to_train={r: new_id[t] for r, t in self.raw_to_train.items() if t in new_id},
            ignore_index=self.ignore_index,
            subsets={k: [new_id[i] for i in ids if i in new_id] for k, ids in self.subsets.items()},
            void_colors=self.void_colors,
            extra_colors={c: new_id[t] for c, t in self.extra_colors.items() if t in new_id},
            known_ids=self.known_ids,
        )


_collecting = threading.local()


@contextmanager
def unknown_raw_ids() -> Iterator[set[int]]:
    """Collect the raw ids that :meth:`LabelSpace.encode` meets, in this thread, outside a
    built-in label space's ``known_ids`` (ids 50, 200 or 259 in CamVid masks): they become
    255 like void, but are more likely a mask of another dataset.

    Example::

        >>> with unknown_raw_ids() as found:
        ...     get_label_space("camvid").encode(np.array([[3, 50]]))
        >>> found
        {50}
    """
    found: set[int] = set()
    previous = getattr(_collecting, "ids", None)
    _collecting.ids = found
    try:
        yield found
    finally:
        _collecting.ids = previous


def _pack(color: Sequence[int]) -> int:
    r, g, b = (int(c) for c in color)
    return (r << 16) | (g << 8) | b


def _pack_array(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _unpack(key: int) -> RGB:
    return (key >> 16) & 255, (key >> 8) & 255, key & 255


CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip
CITYSCAPES_PALETTE: list[RGB] = [
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
]  # fmt: skip
# Cityscapes labelIds of the 19 evaluated classes, in train id order (cityscapesScripts labels.py).
CITYSCAPES_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)

# SYNTHIA RAND-CITYSCAPES raw ids of the 16 shared classes, as the UDA literature maps them
# (AdaptSegNet / DACS / DAFormer: 3 road, 4 sidewalk, 2 building, 21 wall, ...).
SYNTHIA16_RAW = {
    "road": 3, "sidewalk": 4, "building": 2, "wall": 21, "fence": 5, "pole": 7,
    "traffic light": 15, "traffic sign": 9, "vegetation": 6, "sky": 1, "person": 10,
    "rider": 17, "car": 8, "bus": 19, "motorcycle": 12, "bicycle": 11,
}  # fmt: skip
SYNTHIA13_DROPPED = ("wall", "fence", "pole")
# The raw ids the datasets document: Cityscapes labelIds 0..33 (255: the license plate, id -1,
# as uint8), SYNTHIA RAND-CITYSCAPES 0 (void) .. 22 (lanemarking); 255, the usual ignore value
# of converted masks, is known everywhere.
CITYSCAPES_KNOWN_IDS = frozenset([*range(34), 255])
SYNTHIA_KNOWN_IDS = frozenset([*range(23), 255])

CAMVID_CLASSES = (
    "sky", "building", "pole", "road", "sidewalk", "tree", "signsymbol", "fence", "car",
    "pedestrian", "bicyclist",
)  # fmt: skip
CAMVID_PALETTE: list[RGB] = [
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (0, 0, 192), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
]  # fmt: skip


VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
# Pascal VOC draws index 255 (object boundaries and "difficult" regions) in this colour.
VOC_BOUNDARY_COLOR: RGB = (224, 224, 192)


def _cityscapes() -> LabelSpace:
    return LabelSpace(
        "cityscapes",
        CITYSCAPES_CLASSES,
        CITYSCAPES_PALETTE,
        {raw: i for i, raw in enumerate(CITYSCAPES_LABEL_IDS)},
        known_ids=CITYSCAPES_KNOWN_IDS,
    )


def _cityscapes16() -> LabelSpace:
    """Cityscapes labelIds evaluated in SYNTHIA's 16 classes (the SYNTHIA -> Cityscapes target)."""
    names = tuple(SYNTHIA16_RAW)
    thirteen = [i for i, c in enumerate(names) if c not in SYNTHIA13_DROPPED]
    return replace(_cityscapes().restricted("cityscapes16", names), subsets={"13": thirteen})


def _synthia16() -> LabelSpace:
    cs16 = _cityscapes16()
    return LabelSpace(
        "synthia16",
        cs16.class_names,
        cs16.palette,
        {raw: i for i, raw in enumerate(SYNTHIA16_RAW.values())},
        subsets=cs16.subsets,
        known_ids=SYNTHIA_KNOWN_IDS,
    )


def _cityscapes_synthia19() -> LabelSpace:
    """Cityscapes' 19 classes, mIoU also reported over SYNTHIA's 16 and 13 (DACS's protocol)."""
    names = CITYSCAPES_CLASSES
    sixteen = [names.index(c) for c in SYNTHIA16_RAW]
    thirteen = [names.index(c) for c in SYNTHIA16_RAW if c not in SYNTHIA13_DROPPED]
    return replace(
        _cityscapes(), name="cityscapes_synthia19", subsets={"16": sixteen, "13": thirteen}
    )


def _synthia19() -> LabelSpace:
    """SYNTHIA ids mapped into Cityscapes' 19 train ids; terrain, truck, train never occur."""
    target = _cityscapes_synthia19()
    return replace(
        target,
        name="synthia19",
        raw_to_train={raw: target.class_names.index(c) for c, raw in SYNTHIA16_RAW.items()},
        known_ids=SYNTHIA_KNOWN_IDS,
    )


def _camvid() -> LabelSpace:
    return LabelSpace(
        "camvid",
        CAMVID_CLASSES,
        CAMVID_PALETTE,
        {i: i for i in range(len(CAMVID_CLASSES))},  # 11 = void -> 255
        void_colors=((0, 0, 0),),
        known_ids=frozenset([*range(len(CAMVID_CLASSES) + 1), 255]),  # 11: void
    )


def _voc() -> LabelSpace:
    """Pascal VOC 2012: background + 20 object classes; masks hold the train ids (index 255, the
    boundary band, is ignored); the palette is VOC's bit-interleaved colour map."""
    palette = [(0, 0, 0)] + [_default_color(i) for i in range(len(VOC_CLASSES) - 1)]
    return LabelSpace(
        "voc",
        VOC_CLASSES,
        palette,
        {i: i for i in range(len(VOC_CLASSES))},
        void_colors=(VOC_BOUNDARY_COLOR,),
    )


_BUILTIN = {
    "cityscapes": _cityscapes,
    "cityscapes16": _cityscapes16,
    "synthia16": _synthia16,
    "cityscapes_synthia19": _cityscapes_synthia19,
    "synthia19": _synthia19,
    "camvid": _camvid,
    "voc": _voc,
}


def label_space_names() -> list[str]:
    """Names accepted by :func:`get_label_space`."""
    return sorted(_BUILTIN)


def get_label_space(name: str) -> LabelSpace:
    """A built-in label space: ``cityscapes``, ``cityscapes16``, ``synthia16``, ``camvid``, ``voc``,
    and the 19-class SYNTHIA protocol (DACS): ``synthia19`` with target ``cityscapes_synthia19``."""
    if name not in _BUILTIN:
        known = label_space_names()
        raise ConfigError(
            f"unknown label space '{name}'{did_you_mean(name, known)}; known: {', '.join(known)}"
        )
    return _BUILTIN[name]()


def label_space_from_classes(
    name: str, classes: Sequence[str | Mapping[str, Any]], where: str = "classes"
) -> LabelSpace:
    """Build a label space from a class list: names, or mappings ``{name, color, id, ignore}``.

    ``id`` is the raw mask value of the class, or a list of them (several raw ids, one class);
    it defaults to the class's train id (its position among the classes that are not ignored),
    so masks that already hold train ids work unchanged. ``color`` is ``[r, g, b]`` or a list
    of them (colour masks; the first is the class's palette colour); it defaults to a generated
    colour. ``ignore: true`` makes an entry's ids and colours ignored (255) instead of a class;
    such an entry needs an ``id`` or a ``color``. ``where`` names the source (a file or config
    key) in error messages. Ambiguous lists are refused with a ConfigError: a name, colour or id
    used twice, a malformed colour or id, or more than 255 classes (train ids are 8-bit,
    255 = ignore).

    Example::

        >>> space = label_space_from_classes("street", [
        ...     {"name": "unlabeled", "id": [0, 1], "ignore": True},
        ...     {"name": "road", "id": 7}, {"name": "vehicle", "id": [26, 27, 28]}])
        >>> space.encode(np.array([[0, 7, 27, 5]]))
        array([[255,   0,   1, 255]], dtype=uint8)
    """
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
        raise ConfigError(f"{where}: expected a list of classes, got {classes!r}")
    if not classes:
        raise ConfigError(f"{where}: the class list is empty")
    names: list[str] = []
    palette: list[RGB] = []
    raw_to_train: dict[int, int] = {}
    extra_colors: dict[RGB, int] = {}
    void_colors: list[RGB] = []
    owner_of_id: dict[int, str] = {}
    owner_of_color: dict[RGB, str] = {}
    entry_names: list[str] = []
    for i, entry in enumerate(classes):
        at = f"{where}[{i}]"
        spec = _class_entry(entry, at)
        class_name, ignored = spec["name"], spec.get("ignore", False)
        if class_name in entry_names:
            first = entry_names.index(class_name)
            raise ConfigError(f"{at}: class name '{class_name}' is listed twice (also [{first}])")
        entry_names.append(class_name)
        train = IGNORE_INDEX if ignored else len(names)
        if ignored and "id" not in spec and "color" not in spec:
            raise ConfigError(f"{at}: an ignored entry needs 'id' or 'color' (what to ignore)")
        colors = _parse_colors(spec.get("color"), f"{at}.color")
        if colors is None:
            colors = [] if ignored else [_default_color(train)]
        for color in colors:
            if color in owner_of_color:
                raise ConfigError(
                    f"{at}.color: {list(color)} is already the colour of class '{owner_of_color[color]}'"
                    "; masks could not tell the two apart"
                )
            owner_of_color[color] = class_name
        raws = _parse_ids(spec.get("id", None if ignored else train), f"{at}.id")
        for raw in raws:
            if raw in owner_of_id:
                raise ConfigError(
                    f"{at}.id: {raw} is already the id of class '{owner_of_id[raw]}' (classes without "
                    "'id' use their train id; give every class its id)"
                )
            owner_of_id[raw] = class_name
            raw_to_train[raw] = train
        if ignored:
            void_colors += colors
            continue
        names.append(class_name)
        palette.append(colors[0])
        extra_colors.update({color: train for color in colors[1:]})
    if not names:
        raise ConfigError(f"{where}: every entry is ignored; list at least one class")
    if len(names) > MAX_CLASSES:
        raise ConfigError(
            f"{where}: {len(names)} classes, at most {MAX_CLASSES} are supported (train ids "
            f"are 8-bit and {IGNORE_INDEX} means ignore)"
        )
    return LabelSpace(
        name,
        tuple(names),
        palette,
        raw_to_train,
        void_colors=tuple(void_colors),
        extra_colors=extra_colors,
    )


def common_label_space(
    space: LabelSpace, spec: Mapping[str, Any], where: str = "options.remap"
) -> tuple[LabelSpace, np.ndarray]:
    """Map ``space``'s classes onto a common class list, for streams with other label spaces.

    ``spec``: ``classes`` (the common classes: names or ``{name, color}``, or a built-in label
    space's name) and optional ``map`` (own class -> common class, or null to ignore it). Own
    classes named like a common class map to it unless ``map`` lists them; the others become
    255. A common class's colour is the given one, else the colour of the first own class
    mapped onto it, else a generated one.

    Returns the common label space (its raw ids are its own train ids) and a lookup table
    (256 entries, uint8): own train id -> common train id, 255 -> 255.

    Example::

        >>> common, lut = common_label_space(get_label_space("cityscapes"), {
        ...     "classes": ["road", "vehicle"], "map": {"car": "vehicle", "bus": "vehicle"}})
        >>> lut[[0, 13, 15, 1, 255]]   # road, car, bus, sidewalk, ignore
        array([  0,   1,   1, 255, 255], dtype=uint8)
    """
    spec = _as_mapping(spec) or {}
    unknown = sorted(set(spec) - {"classes", "map"})
    if "classes" not in spec or unknown:
        raise ConfigError(
            f"{where}: expected {{classes: [common class, ...], map: {{own class: common "
            f"class}}}}, got keys {sorted(spec)}"
        )
    target, given_colors = _common_classes(spec["classes"], f"{where}.classes")
    mapping = _as_mapping(spec.get("map") or {})
    if mapping is None:
        raise ConfigError(f"{where}.map: expected {{own class: common class}}, got {spec['map']!r}")
    for own, common in mapping.items():
        if own not in space.class_names:
            raise ConfigError(
                f"{where}.map: '{own}' is not a class of label space '{space.name}'"
                f"{did_you_mean(str(own), list(space.class_names))}; its classes: "
                f"{', '.join(space.class_names)}"
            )
        if common is not None and common not in target.class_names:
            raise ConfigError(
                f"{where}.map.{own}: '{common}' is not one of {where}.classes"
                f"{did_you_mean(str(common), list(target.class_names))}; they are: "
                f"{', '.join(target.class_names)}"
            )
    lut = np.full(256, space.ignore_index, dtype=np.uint8)
    palette = list(target.palette)
    for own_id, own in enumerate(space.class_names):
        common = mapping.get(own, own)
        if common in target.class_names:
            lut[own_id] = common_id = target.class_names.index(common)
            if common_id not in given_colors:
                given_colors.add(common_id)
                palette[common_id] = space.palette[own_id]
    return replace(target, palette=palette), lut


def _common_classes(classes: Any, where: str) -> tuple[LabelSpace, set[int]]:
    """The common label space (raw ids = train ids) and the train ids whose colour is given."""
    if isinstance(classes, str):
        try:
            space = get_label_space(classes)
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
        n = space.num_classes
        return replace(space, raw_to_train={i: i for i in range(n)}), set(range(n))
    entries = list(classes) if _is_list(classes) else None
    extra = [
        i for i, e in enumerate(entries or []) if set(_as_mapping(e) or {}) - {"name", "color"}
    ]
    if entries is None or extra:
        at = f"{where}[{extra[0]}]" if extra else where
        raise ConfigError(
            f"{at}: expected a label space name or a list of names or {{name, color}}, "
            f"got {classes if entries is None else entries[extra[0]]!r}"
        )
    space = label_space_from_classes("common", entries, where)
    return space, {i for i, e in enumerate(entries) if "color" in (_as_mapping(e) or {})}


def _class_entry(entry: Any, where: str) -> dict[str, Any]:
    """A class-list entry as ``{name, ...}``, its keys and name checked."""
    spec = {"name": entry} if isinstance(entry, str) else _as_mapping(entry)
    unknown = set(spec or {}) - {"name", "color", "id", "ignore"}
    if spec is None or "name" not in spec or unknown:
        raise ConfigError(f"{where}: expected a name or {{name, color, id, ignore}}, got {entry!r}")
    if not isinstance(spec["name"], str) or not spec["name"].strip():
        raise ConfigError(f"{where}.name: expected a non-empty name, got {spec['name']!r}")
    if not isinstance(spec.get("ignore", False), bool):
        raise ConfigError(f"{where}.ignore: expected true or false, got {spec['ignore']!r}")
    return spec


def _parse_ids(value: Any, where: str) -> list[int]:
    """A raw id or a non-empty list of distinct ones (None: no ids)."""
    if value is None:
        return []
    values = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    if not values or not all(_is_int(v) and v >= 0 for v in values):
        raise ConfigError(f"{where}: expected an integer >= 0 or a list of them, got {value!r}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{where}: {value!r} lists an id twice")
    return [int(v) for v in values]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _as_mapping(entry: Any) -> dict[str, Any] | None:
    if isinstance(entry, Mapping):
        return dict(entry)
    try:  # an OmegaConf DictConfig from options.classes
        return dict(entry.items()) if hasattr(entry, "items") else None
    except (TypeError, ValueError):
        return None


def _parse_colors(value: Any, where: str) -> list[RGB] | None:
    """``[r, g, b]`` or a non-empty list of them (None: use the default colour)."""
    if value is None:
        return None
    several = _is_list(value) and bool(value) and all(_is_list(c) for c in value)
    return [_parse_color(c, where) for c in value] if several else [_parse_color(value, where)]


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)


def _parse_color(color: Any, where: str) -> RGB:
    """``[r, g, b]`` of integers in 0..255."""
    values = list(color) if _is_list(color) else None
    if values is None or len(values) != 3 or not all(_is_int(c) and 0 <= c <= 255 for c in values):
        raise ConfigError(
            f"{where}: expected [r, g, b] with integers in 0..255 (or a list of them), "
            f"got {color!r}"
        )
    r, g, b = (int(c) for c in values)
    return r, g, b


def _default_color(i: int) -> RGB:
    """Pascal VOC colour map entry ``i + 1`` (skips black): distinct, stable class colours."""
    r = g = b = 0
    c = i + 1
    for shift in range(7, -1, -1):
        r |= ((c >> 0) & 1) << shift
        g |= ((c >> 1) & 1) << shift
        b |= ((c >> 2) & 1) << shift
        c >>= 3
    return r, g, b
