"""Street layout: a pinhole camera at car height looking down a straight street.

World coordinates are metres: X to the right, Y up, Z forward; the ground is Y = 0. A scene is
a list of `Part`s in painter's order (far to near), already projected to pixel coordinates, so
the renderer only fills polygons and never needs to know about geometry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .styles import Role, Style

SKY, BUILDING, POLE, ROAD, SIDEWALK, TREE, SIGN, FENCE, CAR, PEDESTRIAN, BICYCLIST = range(11)
IMAGE_ONLY = -1  # a detail painted into the image but not the mask (windows, markings, shadows)
Z_NEAR = 1.0  # metres; ground polygons are clipped here, well below the bottom image row
Z_FAR = 400.0


@dataclass
class Part:
    polys: list[np.ndarray]  # each (N, 2) float pixel coordinates (x, y)
    label: int  # train id painted into the mask, or IMAGE_ONLY
    role: Role
    color: tuple[float, float, float]
    thickness: float = 0.0  # > 0: stroke the polylines this many pixels wide instead of filling
    shade: float = 1.0  # SHADOW parts multiply the image by this


@dataclass
class Camera:
    f: float
    cx: float
    horizon: float
    height: float

    def project(self, pts: np.ndarray) -> np.ndarray:
        """(N, 3) world points -> (N, 2) pixels."""
        z = np.maximum(pts[:, 2], Z_NEAR)
        return np.stack(
            [
                self.cx + self.f * pts[:, 0] / z,
                self.horizon + self.f * (self.height - pts[:, 1]) / z,
            ],
            axis=1,
        )

    def ground(self, xz: np.ndarray) -> np.ndarray:
        """(N, 2) ground points (X, Z) -> (N, 2) pixels."""
        return self.project(np.stack([xz[:, 0], np.zeros(len(xz)), xz[:, 1]], axis=1))

    def billboard(self, x: float, z: float, pts: np.ndarray) -> np.ndarray:
        """(N, 2) local (x, y) metres in the upright plane at depth z, centred at X = x."""
        s = self.f / z
        return np.stack(
            [self.cx + s * (x + pts[:, 0]), self.horizon + s * (self.height - pts[:, 1])], axis=1
        )


@dataclass
class Street:
    """The frame every object is placed in; `side` is -1 (left) or +1 (right)."""

    cam: Camera
    road_left: float
    road_right: float
    sidewalk: tuple[float, float]  # widths left, right

    def road_edge(self, side: int) -> float:
        return self.road_right if side > 0 else self.road_left

    def facade(self, side: int) -> float:
        return self.road_edge(side) + side * self.sidewalk[side > 0]


@dataclass
class Scene:
    size: tuple[int, int]
    street: Street
    parts: list[Part] = field(default_factory=list)

    @property
    def horizon(self) -> float:
        return self.street.cam.horizon


def rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 20, wobble=None) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = 1.0 if wobble is None else wobble
    return np.stack([cx + rx * r * np.cos(t), cy + ry * r * np.sin(t)], axis=1)


def shadow_part(cam: Camera, sun: np.ndarray, x: float, z: float, w: float, h: float) -> Part:
    """Ground shadow of an upright object of width w and height h standing at (x, z)."""
    d = sun * h
    xz = np.array(
        [[x - w / 2, z], [x + w / 2, z], [x + w / 2 + d[0], z + d[1]], [x - w / 2 + d[0], z + d[1]]]
    )
    xz[:, 1] = np.maximum(xz[:, 1], Z_NEAR)
    return Part([cam.ground(xz)], IMAGE_ONLY, Role.SHADOW, (0, 0, 0), shade=scene_shade(sun))


def scene_shade(sun: np.ndarray) -> float:
    # A low sun (long shadows) is a softer light, so its shadows are less dark.
    return float(np.clip(0.45 + 0.12 * np.hypot(*sun), 0.45, 0.75))


def _strip(cam: Camera, x0: float, x1: float, z0: float, z1: float) -> np.ndarray:
    """A rectangle on the ground, X in [x0, x1], Z in [z0, z1], in pixels."""
    return cam.ground(np.array([[x0, z0], [x1, z0], [x1, z1], [x0, z1]], dtype=np.float64))


def _ground(scene: Scene, style: Style, rng: np.random.Generator) -> None:
    st, cam = scene.street, scene.street.cam
    H, W = scene.size
    below = rect(-W, cam.horizon, 2 * W, 2 * H)
    scene.parts.append(Part([below], SIDEWALK, Role.SIDEWALK, style.color(Role.SIDEWALK, rng)))
    road = _strip(cam, st.road_left, st.road_right, Z_NEAR, Z_FAR)
    scene.parts.append(Part([road], ROAD, Role.ROAD, style.color(Role.ROAD, rng)))
    if style.photographic:
        curbs = [
            _strip(cam, st.road_left - 0.25, st.road_left, Z_NEAR, Z_FAR),
            _strip(cam, st.road_right, st.road_right + 0.25, Z_NEAR, Z_FAR),
        ]
        scene.parts.append(Part(curbs, SIDEWALK, Role.CURB, style.color(Role.CURB, rng)))
    # Lane markings: one continuous middle line in sim, dashed lane lines in photo.
    width = st.road_right - st.road_left
    lanes = max(2, int(width // 3.2))
    xs = st.road_left + width * np.arange(1, lanes) / lanes
    marks = []
    if style.photographic:
        for x in xs:
            for z in np.arange(Z_NEAR + rng.uniform(0, 9), 120, 9.0):
                marks.append(_strip(cam, x - 0.08, x + 0.08, z, z + 3))
        if rng.random() < 0.3:  # a zebra crossing
            z = rng.uniform(6, 20)
            for x in np.arange(st.road_left + 0.3, st.road_right - 0.3, 1.0):
                marks.append(_strip(cam, x, x + 0.5, z, z + 3))
    else:
        x = xs[len(xs) // 2]
        marks.append(_strip(cam, x - 0.12, x + 0.12, Z_NEAR, Z_FAR))
    scene.parts.append(Part(marks, IMAGE_ONLY, Role.MARKING, style.color(Role.MARKING, rng)))


def _skyline(scene: Scene, style: Style, rng: np.random.Generator) -> None:
    """Distant blocks at the end of the street, so the horizon is not a bare line."""
    cam = scene.street.cam
    H, W = scene.size
    x, polys = -0.2 * W, []
    while x < 1.2 * W:
        w = rng.uniform(0.05, 0.2) * W
        h = rng.uniform(0.02, 0.12) * H
        if rng.random() < 0.8:
            polys.append(rect(x, cam.horizon - h, x + w, cam.horizon + 1))
        x += w
    if polys:
        scene.parts.append(Part(polys, BUILDING, Role.BUILDING, style.color(Role.BUILDING, rng)))


def _windows(
    cam: Camera, xf: float, z0: float, z1: float, h: float, style: Style, rng
) -> Part | None:
    floor_h, col_w = rng.uniform(3.0, 3.6), rng.uniform(2.5, 4.0)
    win_w, win_h = col_w * rng.uniform(0.35, 0.6), floor_h * rng.uniform(0.4, 0.6)
    zs = np.arange(z0 + col_w / 2, z1 - win_w, col_w)
    ys = np.arange(floor_h * 0.35, h - win_h, floor_h)
    if len(zs) == 0 or len(ys) == 0:
        return None
    zz, yy = np.meshgrid(zs, ys)
    zz, yy = zz.ravel(), yy.ravel()
    keep = zz > 2.0  # windows right beside the camera are huge smears; skip them
    zz, yy = zz[keep], yy[keep]
    corners = np.stack(
        [
            np.stack([np.full_like(zz, xf), yy + dy, zz + dz], axis=1)
            for dz, dy in ((0, 0), (win_w, 0), (win_w, win_h), (0, win_h))
        ],
        axis=1,
    )
    pix = cam.project(corners.reshape(-1, 3)).reshape(-1, 4, 2)
    pix = pix[(pix[:, :, 0].max(1) - pix[:, :, 0].min(1)) >= 1.0]
    if len(pix) == 0:
        return None
    return Part(list(pix), IMAGE_ONLY, Role.WINDOW, style.color(Role.WINDOW, rng))


def _buildings(scene: Scene, style: Style, rng: np.random.Generator, sun: np.ndarray) -> list[Part]:
    """Facades on both sides, returned far-to-near; their shadows go straight into the scene."""
    st, cam, lay = scene.street, scene.street.cam, style.layout
    blocks = []
    for side in (-1, 1):
        z = rng.uniform(-4.0, 6.0)
        while z < 160:
            length = rng.uniform(8, 28)
            if rng.random() < lay.building_gap_prob:
                z += rng.uniform(3, 10)
            xf = st.facade(side) + side * rng.uniform(0, 1.5)
            h = rng.uniform(*lay.building_height)
            blocks.append((z, side, xf, length, h))
            z += length
    parts: list[tuple[float, Part]] = []
    for z, side, xf, length, h in blocks:
        z0, z1 = max(z, Z_NEAR), z + length
        if z1 <= Z_NEAR + 0.5:
            continue
        color = style.color(Role.BUILDING, rng)
        face = cam.project(np.array([[xf, 0, z0], [xf, h, z0], [xf, h, z1], [xf, 0, z1]], float))
        group = [Part([face], BUILDING, Role.BUILDING, color)]
        if rng.random() < lay.window_prob:
            win = _windows(cam, xf, z0, z1, h, style, rng)
            if win is not None:
                group.append(win)
        if z > Z_NEAR + 1:  # the end wall facing the camera, shaded darker (flat shading)
            d = side * 12.0
            end = cam.project(
                np.array([[xf, 0, z], [xf + d, 0, z], [xf + d, h, z], [xf, h, z]], float)
            )
            group.append(Part([end], BUILDING, Role.BUILDING_SIDE, tuple(c * 0.7 for c in color)))
        parts.extend((z1, p) for p in group)
        if (
            style.shadows and sun[0] * side < 0
        ):  # sun behind this side: its shadow falls on the street
            d = sun * h
            xz = np.array([[xf, z0], [xf, z1], [xf + d[0], z1 + d[1]], [xf + d[0], z0 + d[1]]])
            xz[:, 1] = np.maximum(xz[:, 1], Z_NEAR)
            shade = scene_shade(sun)
            scene.parts.append(
                Part([cam.ground(xz)], IMAGE_ONLY, Role.SHADOW, (0, 0, 0), shade=shade)
            )
    parts.sort(key=lambda t: -t[0])  # stable: a block's facade stays below its own windows
    return [p for _, p in parts]


def _fences(scene: Scene, style: Style, rng: np.random.Generator) -> None:
    st, cam = scene.street, scene.street.cam
    for side in (-1, 1):
        if rng.random() >= style.layout.fence_prob:
            continue
        x = st.facade(side) - side * 0.15
        z0 = rng.uniform(2, 15)
        z1 = z0 + rng.uniform(8, 40)
        h = rng.uniform(0.9, 1.5)
        color = style.color(Role.FENCE, rng)
        z0c = max(z0, Z_NEAR)
        quad = cam.project(np.array([[x, 0, z0c], [x, h, z0c], [x, h, z1], [x, 0, z1]], float))
        scene.parts.append(Part([quad], FENCE, Role.FENCE, color))
        if style.photographic:  # posts and rails: structure a flat sim fence never has
            posts = [
                cam.project(
                    np.array([[x, 0, z], [x, h, z], [x, h, z + 0.12], [x, 0, z + 0.12]], float)
                )
                for z in np.arange(z0c, z1, rng.uniform(1.0, 2.5))
            ]
            rail = cam.project(
                np.array([[x, h - 0.1, z0c], [x, h, z0c], [x, h, z1], [x, h - 0.1, z1]], float)
            )
            dark = tuple(c * 0.6 for c in color)
            scene.parts.append(Part([*posts, rail], FENCE, Role.FENCE, dark))


def sample_scene(style: Style, size: tuple[int, int], rng: np.random.Generator) -> Scene:
    """Lay out one street scene in painter's order."""
    from .objects import place_objects  # objects builds on the helpers above

    H, W = size
    lay = style.layout
    cam = Camera(
        f=W * rng.uniform(*lay.focal),
        cx=W / 2 + W * rng.uniform(-0.08, 0.08),
        horizon=H * rng.uniform(*lay.horizon),
        height=rng.uniform(1.3, 1.7),
    )
    road = rng.uniform(*lay.road_width)
    left = -road * rng.uniform(0.3, 0.7)
    street = Street(cam, left, left + road, tuple(rng.uniform(*lay.sidewalk, size=2)))
    scene = Scene(size, street)
    angle = rng.uniform(0, 2 * np.pi)
    sun = rng.uniform(0.3, 1.4) * np.array([np.cos(angle), np.sin(angle)])

    scene.parts.append(
        Part([rect(-W, -H, 2 * W, 2 * H)], SKY, Role.SKY, style.color(Role.SKY, rng))
    )
    _skyline(scene, style, rng)
    _ground(scene, style, rng)
    # Shadows lie on the ground, so they go in before anything standing on it covers them.
    buildings = _buildings(scene, style, rng, sun)
    shadows, objects = place_objects(street, style, rng)
    if style.shadows:
        scene.parts.extend(shadow_part(cam, sun, *footprint) for footprint in shadows)
    scene.parts.extend(buildings)
    _fences(scene, style, rng)
    scene.parts.extend(objects)
    return scene
