"""Things standing in the street: trees, poles, signs, cars, pedestrians and cyclists.

Each object is modelled in its own upright plane in metres (x across, y up, origin on the
ground) and projected by `Camera.billboard`, which makes nearer objects larger for free. Only
car flanks need the full 3D projection, because they recede along the street.
"""

from __future__ import annotations

import numpy as np

from .scene import BICYCLIST, CAR, PEDESTRIAN, POLE, SIGN, TREE, Part, Street, ellipse, rect
from .styles import Role, Style

Footprint = tuple[float, float, float, float]  # x, z, width, height: what casts a shadow
Placed = tuple[float, list[Part], Footprint]  # depth for painter's order, parts, footprint


def _px(street: Street, z: float, metres: float) -> float:
    return max(1.0, metres * street.cam.f / z)


def _sidewalk_x(street: Street, side: int, rng: np.random.Generator, lo: float = 0.4) -> float:
    width = street.sidewalk[side > 0]
    return street.road_edge(side) + side * rng.uniform(lo, max(lo, width - 0.4))


def _tree(street: Street, style: Style, rng: np.random.Generator, side: int, z: float) -> Placed:
    x = _sidewalk_x(street, side, rng, 0.6)
    trunk_h, r = rng.uniform(1.8, 3.0), rng.uniform(1.3, 2.8)
    ry = r * rng.uniform(1.0, 1.4)
    wobble = None
    if style.photographic:  # ragged crowns; sim crowns stay perfect ellipses
        wobble = 1 + np.convolve(rng.normal(0, 0.18, 30), np.ones(3) / 3, mode="same")[3:27]
    cam = street.cam
    parts = [
        Part(
            [cam.billboard(x, z, rect(-0.15, 0, 0.15, trunk_h + 0.5))],
            TREE,
            Role.TRUNK,
            style.color(Role.TRUNK, rng),
        ),
        Part(
            [cam.billboard(x, z, ellipse(0, trunk_h + ry * 0.8, r, ry, 24, wobble))],
            TREE,
            Role.TREE,
            style.color(Role.TREE, rng),
        ),
    ]
    if style.photographic:
        blob = ellipse(
            r * rng.uniform(-0.4, 0.4), trunk_h + ry * rng.uniform(0.6, 1.2), r * 0.5, ry * 0.45, 16
        )
        dark = tuple(c * rng.uniform(0.55, 0.8) for c in parts[1].color)
        parts.append(Part([cam.billboard(x, z, blob)], TREE, Role.TREE, dark))
    return z, parts, (x, z, 1.5 * r, trunk_h + 2 * ry)


def _pole(street: Street, style: Style, rng: np.random.Generator, side: int, z: float) -> Placed:
    x = street.road_edge(side) + side * rng.uniform(0.3, 0.6)
    h, w = rng.uniform(4.0, 8.0), rng.uniform(0.15, 0.3)
    polys = [rect(-w / 2, 0, w / 2, h)]
    if rng.random() < 0.5:  # street light: an arm over the road with a lamp head
        arm = -side * rng.uniform(1.0, 2.0)
        polys.append(rect(min(0, arm), h - 0.15, max(0, arm), h))
        polys.append(rect(arm - 0.3, h - 0.3, arm + 0.3, h - 0.1))
    cam = street.cam
    part = Part(
        [cam.billboard(x, z, p) for p in polys], POLE, Role.POLE, style.color(Role.POLE, rng)
    )
    return z, [part], (x, z, w, h)


def _sign(street: Street, style: Style, rng: np.random.Generator, side: int, z: float) -> Placed:
    x = street.road_edge(side) + side * rng.uniform(0.3, 0.8)
    h, r = rng.uniform(2.0, 2.8), rng.uniform(0.35, 0.6)
    cy = h + r
    shape = rng.integers(4)
    if shape == 0:
        panel = ellipse(0, cy, r, r, 20)
    elif shape == 1:
        panel = rect(-r, cy - r, r, cy + r)
    elif shape == 2:
        panel = np.array([[-r, cy + r * 0.6], [r, cy + r * 0.6], [0, cy - r]])
    else:
        panel = np.array([[0, cy + r], [r, cy], [0, cy - r], [-r, cy]])
    cam = street.cam
    parts = [
        Part(
            [cam.billboard(x, z, rect(-0.05, 0, 0.05, h))],
            POLE,
            Role.POLE,
            style.color(Role.POLE, rng),
        )
    ]
    if style.photographic:  # real signs have a pale rim around the coloured face
        rim = (panel - [0, cy]) * 1.15 + [0, cy]
        parts.append(Part([cam.billboard(x, z, rim)], SIGN, Role.SIGN, (225.0, 225.0, 220.0)))
        panel = (panel - [0, cy]) * 0.85 + [0, cy]
    parts.append(Part([cam.billboard(x, z, panel)], SIGN, Role.SIGN, style.color(Role.SIGN, rng)))
    return z, parts, (x, z, 2 * r, h + 2 * r)


def _car(street: Street, style: Style, rng: np.random.Generator, x: float, z: float) -> Placed:
    w, h, length = rng.uniform(1.7, 2.0), rng.uniform(1.35, 1.65), rng.uniform(4.0, 4.8)
    cam = street.cam
    body = style.color(Role.CAR, rng)
    flank = tuple(c * 0.75 for c in body)
    glass, tyre = style.color(Role.CAR_WINDOW, rng), style.color(Role.WHEEL, rng)
    parts = []
    if abs(x) > w / 2:  # the flank facing the camera recedes along the street
        xs = x - np.sign(x) * w / 2
        zb = z + length

        def side(y0: float, y1: float, za: float, zb_: float, inset: float = 0.0) -> np.ndarray:
            xi = xs + np.sign(x) * inset
            return cam.project(np.array([[xi, y0, za], [xi, y1, za], [xi, y1, zb_], [xi, y0, zb_]]))

        parts.append(Part([side(0.25, 0.95, z, zb)], CAR, Role.CAR, flank))
        parts.append(Part([side(0.95, h, z + 0.6, zb - 1.0, 0.15)], CAR, Role.CAR_WINDOW, glass))
        wheels = [side(0.0, 0.62, zw - 0.32, zw + 0.32) for zw in (z + 0.8, zb - 0.8)]
        parts.append(Part(wheels, CAR, Role.WHEEL, tyre))
    back = [
        rect(-w / 2 + 0.1, 0, -w / 2 + 0.4, 0.35),
        rect(w / 2 - 0.4, 0, w / 2 - 0.1, 0.35),
    ]
    parts.append(Part([cam.billboard(x, z, p) for p in back], CAR, Role.WHEEL, tyre))
    cabin = np.array([[-w * 0.45, 0.95], [w * 0.45, 0.95], [w * 0.36, h], [-w * 0.36, h]])
    parts.append(Part([cam.billboard(x, z, cabin)], CAR, Role.CAR, body))
    parts.append(
        Part([cam.billboard(x, z, cabin * [0.82, 1] + [0, -0.04])], CAR, Role.CAR_WINDOW, glass)
    )
    parts.append(Part([cam.billboard(x, z, rect(-w / 2, 0.25, w / 2, 0.97))], CAR, Role.CAR, body))
    lights = [
        rect(-w / 2 + 0.05, 0.7, -w / 2 + 0.35, 0.85),
        rect(w / 2 - 0.35, 0.7, w / 2 - 0.05, 0.85),
    ]
    parts.append(
        Part(
            [cam.billboard(x, z, p) for p in lights], CAR, Role.LIGHT, style.color(Role.LIGHT, rng)
        )
    )
    return z, parts, (x, z + length / 2, w + 0.6, h)


def _person(
    style: Style, rng: np.random.Generator, h: float
) -> list[tuple[list[np.ndarray], Role]]:
    stride, swing = rng.uniform(0, 0.25), rng.uniform(-0.15, 0.15)
    hip, shoulder = 0.52 * h, 0.82 * h
    legs = [
        np.array([[-0.16, hip], [0.0, hip], [-stride + 0.05, 0], [-stride - 0.09, 0]]),
        np.array([[0.0, hip], [0.16, hip], [stride + 0.09, 0], [stride - 0.05, 0]]),
    ]
    torso = np.array([[-0.21, shoulder], [0.21, shoulder], [0.17, hip - 0.05], [-0.17, hip - 0.05]])
    arms = [
        np.array(
            [
                [s * 0.17, shoulder],
                [s * 0.26, shoulder],
                [s * 0.27 + swing, hip - 0.1],
                [s * 0.19 + swing, hip - 0.1],
            ]
        )
        for s in (-1, 1)
    ]
    head = [ellipse(0, 0.91 * h, 0.1, 0.12, 14)]
    return [(legs, Role.TROUSERS), ([torso, *arms], Role.SHIRT), (head, Role.SKIN)]


def _pedestrian(
    street: Street, style: Style, rng: np.random.Generator, side: int, z: float
) -> Placed:
    x = _sidewalk_x(street, side, rng)
    if rng.random() < 0.15:  # crossing the road
        x = rng.uniform(street.road_left + 0.5, street.road_right - 0.5)
    h = rng.uniform(1.55, 1.9)
    parts = [
        Part(
            [street.cam.billboard(x, z, p) for p in polys], PEDESTRIAN, role, style.color(role, rng)
        )
        for polys, role in _person(style, rng, h)
    ]
    return z, parts, (x, z, 0.45, h)


def _cyclist(street: Street, style: Style, rng: np.random.Generator, side: int, z: float) -> Placed:
    cam, parts = street.cam, []
    frame_color, tyre = style.color(Role.BIKE, rng), style.color(Role.WHEEL, rng)
    shirt, trousers, skin = (style.color(r, rng) for r in (Role.SHIRT, Role.TROUSERS, Role.SKIN))
    if rng.random() < 0.5:  # side view, crossing the street
        x = rng.uniform(street.road_left + 1.0, street.road_right - 1.0)
        d = rng.choice([-1.0, 1.0])
        wheels = [ellipse(d * c, 0.34, 0.34, 0.34, 18) for c in (-0.55, 0.55)]
        frame = np.array(
            [
                [-0.55, 0.34],
                [-0.15, 0.9],
                [0.45, 0.95],
                [0.55, 0.34],
                [0.45, 0.95],
                [0.0, 0.35],
                [-0.55, 0.34],
            ]
        ) * [d, 1]
        torso = np.array([[-0.25, 0.95], [-0.05, 0.95], [0.25, 1.5], [0.05, 1.52]]) * [d, 1]
        arm = np.array([[0.1, 1.45], [0.2, 1.48], [0.48, 1.0], [0.4, 0.97]]) * [d, 1]
        legs = np.array([[-0.2, 0.95], [-0.05, 0.95], [0.12, 0.25], [0.0, 0.22]]) * [d, 1]
        head = ellipse(d * 0.18, 1.66, 0.11, 0.12, 12)
        thick = _px(street, z, 0.06)
        parts.append(Part([cam.billboard(x, z, p) for p in wheels], BICYCLIST, Role.WHEEL, tyre))
        parts.append(
            Part([cam.billboard(x, z, frame)], BICYCLIST, Role.BIKE, frame_color, thickness=thick)
        )
        parts.append(Part([cam.billboard(x, z, legs)], BICYCLIST, Role.TROUSERS, trousers))
        parts.append(
            Part(
                [cam.billboard(x, z, torso), cam.billboard(x, z, arm)], BICYCLIST, Role.SHIRT, shirt
            )
        )
    else:  # riding away from the camera near the kerb
        x = street.road_edge(side) - side * rng.uniform(0.6, 1.5)
        head = ellipse(0, 1.66, 0.11, 0.12, 12)
        parts.append(
            Part([cam.billboard(x, z, rect(-0.05, 0, 0.05, 0.68))], BICYCLIST, Role.WHEEL, tyre)
        )
        parts.append(
            Part(
                [cam.billboard(x, z, rect(-0.3, 0.95, 0.3, 1.02))],
                BICYCLIST,
                Role.BIKE,
                frame_color,
            )
        )
        legs = [
            np.array([[s * 0.02, 0.98], [s * 0.17, 0.98], [s * 0.12, 0.3], [s * 0.04, 0.3]])
            for s in (-1, 1)
        ]
        parts.append(
            Part([cam.billboard(x, z, p) for p in legs], BICYCLIST, Role.TROUSERS, trousers)
        )
        parts.append(
            Part([cam.billboard(x, z, rect(-0.2, 0.95, 0.2, 1.52))], BICYCLIST, Role.SHIRT, shirt)
        )
    parts.append(Part([cam.billboard(x, z, head)], BICYCLIST, Role.SKIN, skin))
    return z, parts, (x, z, 0.5, 1.75)


def _cars(street: Street, style: Style, rng: np.random.Generator) -> list[Placed]:
    lay, placed, spots = style.layout, [], []
    for _ in range(rng.integers(lay.cars[0], lay.cars[1] + 1)):
        for _attempt in range(5):
            z = rng.uniform(*lay.car_depth)
            if rng.random() < 0.4:  # parked along a kerb
                side = rng.choice([-1, 1])
                x = street.road_edge(side) - side * 1.1
            else:
                x = rng.uniform(street.road_left + 1.2, street.road_right - 1.2)
            if all(abs(x - sx) > 2.2 or abs(z - sz) > 6.0 for sx, sz in spots):
                spots.append((x, z))
                placed.append(_car(street, style, rng, x, z))
                break
    return placed


def place_objects(
    street: Street, style: Style, rng: np.random.Generator
) -> tuple[list[Footprint], list[Part]]:
    """Sample every object; returns shadow footprints and parts in far-to-near order."""
    lay = style.layout
    placed = _cars(street, style, rng)
    builders = (
        (_tree, lay.trees),
        (_pole, lay.poles),
        (_sign, lay.signs),
        (_pedestrian, lay.pedestrians),
        (_cyclist, lay.cyclists),
    )
    for build, (lo, hi) in builders:
        for _ in range(rng.integers(lo, hi + 1)):
            side = int(rng.choice([-1, 1]))
            z = rng.uniform(*lay.object_depth)
            placed.append(build(street, style, rng, side, z))
    placed.sort(key=lambda t: -t[0])
    return [fp for _, _, fp in placed], [p for _, parts, _ in placed for p in parts]
