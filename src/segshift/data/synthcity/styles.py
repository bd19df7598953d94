"""The two synthcity styles: layout statistics and colour distributions.

`sim` draws every class from a few clean, saturated colours; `photo` draws from wide,
desaturated anchors that overlap across classes (grey cars on grey roads, grey poles against
grey facades), so a model cannot solve `photo` by looking colours up the way `sim` allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

Range = tuple[float, float]
Color = tuple[float, float, float]


class Role(IntEnum):
    """What a polygon depicts; picks its colour and, in `photo`, its texture."""

    SKY = 0
    BUILDING = 1
    BUILDING_SIDE = 2
    WINDOW = 3
    ROAD = 4
    MARKING = 5
    SIDEWALK = 6
    CURB = 7
    TREE = 8
    TRUNK = 9
    POLE = 10
    SIGN = 11
    FENCE = 12
    CAR = 13
    CAR_WINDOW = 14
    WHEEL = 15
    LIGHT = 16
    SKIN = 17
    SHIRT = 18
    TROUSERS = 19
    BIKE = 20
    SHADOW = 21


@dataclass(frozen=True)
class Layout:
    """Scene statistics; (lo, hi) ranges are sampled uniformly, counts inclusively."""

    horizon: Range  # horizon row as a fraction of the image height
    focal: Range  # focal length as a fraction of the image width
    road_width: Range  # metres
    sidewalk: Range
    building_height: Range
    building_gap_prob: float
    window_prob: float
    cars: tuple[int, int]
    car_depth: Range  # metres from the camera
    pedestrians: tuple[int, int]
    cyclists: tuple[int, int]
    trees: tuple[int, int]
    poles: tuple[int, int]
    signs: tuple[int, int]
    fence_prob: float
    object_depth: Range


@dataclass(frozen=True)
class Style:
    name: str
    layout: Layout
    palette: dict[Role, tuple[Color, ...]]
    jitter: float  # per-channel uniform jitter around the anchor colour
    desaturate: Range  # fraction mixed towards the colour's grey value
    shadows: bool
    photographic: bool  # textures, lighting, blur, noise, JPEG (see render.py)

    def color(self, role: Role, rng: np.random.Generator) -> Color:
        anchors = self.palette[role]
        base = np.asarray(anchors[rng.integers(len(anchors))], dtype=np.float64)
        base = base + rng.uniform(-self.jitter, self.jitter, 3)
        mix = rng.uniform(*self.desaturate)
        base = base * (1 - mix) + base.mean() * mix
        r, g, b = np.clip(base, 0, 255)
        return (float(r), float(g), float(b))


SIM = Style(
    name="sim",
    layout=Layout(
        horizon=(0.48, 0.58),
        focal=(0.75, 0.9),
        road_width=(10.0, 14.0),
        sidewalk=(2.0, 3.0),
        building_height=(6.0, 18.0),
        building_gap_prob=0.2,
        window_prob=0.3,
        cars=(0, 3),
        car_depth=(6.0, 30.0),
        pedestrians=(1, 3),
        cyclists=(0, 2),
        trees=(1, 4),
        poles=(1, 3),
        signs=(1, 2),
        fence_prob=0.5,
        object_depth=(4.0, 35.0),
    ),
    palette={
        Role.SKY: ((80, 150, 250),),
        Role.BUILDING: ((200, 80, 60), (225, 170, 60), (90, 110, 205)),
        Role.BUILDING_SIDE: ((200, 80, 60),),  # replaced by a darker facade colour
        Role.WINDOW: ((150, 215, 250),),
        Role.ROAD: ((60, 60, 72),),
        Role.MARKING: ((250, 250, 250),),
        Role.SIDEWALK: ((205, 190, 115),),
        Role.CURB: ((205, 190, 115),),
        Role.TREE: ((30, 170, 40),),
        Role.TRUNK: ((120, 70, 20),),
        Role.POLE: ((175, 175, 190),),
        Role.SIGN: ((230, 20, 20), (20, 60, 230), (250, 210, 0)),
        Role.FENCE: ((185, 100, 30),),
        Role.CAR: ((220, 20, 30), (20, 80, 220), (240, 240, 240)),
        Role.CAR_WINDOW: ((30, 40, 70),),
        Role.WHEEL: ((20, 20, 20),),
        Role.LIGHT: ((255, 60, 40),),
        Role.SKIN: ((240, 190, 150),),
        Role.SHIRT: ((250, 120, 0), (0, 200, 200)),
        Role.TROUSERS: ((40, 40, 160),),
        Role.BIKE: ((250, 0, 200),),
        Role.SHADOW: ((0, 0, 0),),
    },
    jitter=6.0,
    desaturate=(0.0, 0.0),
    shadows=False,
    photographic=False,
)

PHOTO = Style(
    name="photo",
    layout=Layout(
        horizon=(0.36, 0.48),
        focal=(0.6, 0.8),
        road_width=(6.0, 10.0),
        sidewalk=(2.5, 5.0),
        building_height=(8.0, 30.0),
        building_gap_prob=0.35,
        window_prob=0.9,
        cars=(1, 6),
        car_depth=(5.0, 60.0),
        pedestrians=(1, 6),
        cyclists=(0, 3),
        trees=(2, 7),
        poles=(2, 5),
        signs=(1, 3),
        fence_prob=0.7,
        object_depth=(3.5, 50.0),
    ),
    palette={
        Role.SKY: ((170, 190, 215), (200, 205, 210), (130, 160, 200), (220, 185, 155)),
        Role.BUILDING: (
            (150, 140, 130),
            (170, 110, 90),
            (190, 180, 160),
            (120, 120, 125),
            (160, 150, 120),
            (100, 90, 85),
            (140, 150, 165),
        ),
        Role.BUILDING_SIDE: ((120, 120, 125),),
        Role.WINDOW: ((40, 45, 55), (70, 80, 95), (110, 120, 130), (30, 30, 30)),
        Role.ROAD: ((95, 95, 100), (120, 118, 115), (80, 80, 85), (140, 135, 130)),
        Role.MARKING: ((220, 220, 210), (200, 190, 120)),
        Role.SIDEWALK: ((150, 145, 140), (170, 160, 150), (130, 125, 125), (160, 140, 120)),
        Role.CURB: ((185, 180, 175),),
        Role.TREE: ((70, 95, 50), (90, 110, 60), (60, 80, 50), (110, 120, 70), (130, 105, 60)),
        Role.TRUNK: ((80, 65, 50), (60, 55, 50)),
        Role.POLE: ((110, 110, 110), (140, 140, 135), (70, 75, 70), (150, 150, 140)),
        Role.SIGN: ((200, 50, 50), (40, 80, 170), (230, 200, 60), (230, 230, 230)),
        Role.FENCE: ((120, 100, 80), (140, 140, 140), (90, 90, 90), (150, 120, 90)),
        Role.CAR: (
            (180, 180, 185),
            (40, 40, 45),
            (120, 20, 25),
            (30, 50, 100),
            (200, 200, 200),
            (90, 90, 95),
            (150, 140, 120),
        ),
        Role.CAR_WINDOW: ((40, 45, 55), (60, 70, 80)),
        Role.WHEEL: ((25, 25, 25),),
        Role.LIGHT: ((200, 40, 40), (230, 150, 60)),
        Role.SKIN: ((200, 160, 130), (120, 90, 70), (230, 195, 170)),
        Role.SHIRT: ((160, 60, 60), (60, 90, 140), (200, 200, 190), (50, 50, 50), (120, 130, 80)),
        Role.TROUSERS: ((50, 50, 70), (80, 80, 80), (120, 110, 90), (30, 30, 30)),
        Role.BIKE: ((150, 30, 30), (40, 40, 40), (180, 180, 180), (30, 60, 120)),
        Role.SHADOW: ((0, 0, 0),),
    },
    jitter=22.0,
    desaturate=(0.1, 0.5),
    shadows=True,
    photographic=True,
)

STYLES: dict[str, Style] = {"sim": SIM, "photo": PHOTO}
