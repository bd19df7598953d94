"""Rasterise a `Scene` into an RGB image and a train-id mask.

`sim` stops after the flat fill. `photo` then adds what separates a photograph from a flat
render: role-dependent noise textures (asphalt grain, foliage, facade weathering), a sky
gradient with clouds, exposure / white balance / time-of-day tint, vignetting, defocus or motion
blur, sensor noise and JPEG artifacts. The mask is never touched by any of these.
"""

from __future__ import annotations

import cv2
import numpy as np

from .scene import IMAGE_ONLY, Scene
from .styles import Role, Style

_SHIFT = 4  # sub-pixel precision of cv2 polygon filling: coordinates are in 1/16 pixels

# Texture amplitude per role: (fine grain, medium blotches, coarse shading).
_TEXTURE = np.zeros((len(Role), 3), np.float32)
_TEXTURE[:] = (0.04, 0.04, 0.06)
_TEXTURE[Role.ROAD] = (0.10, 0.06, 0.12)
_TEXTURE[Role.SIDEWALK] = (0.07, 0.10, 0.12)
_TEXTURE[Role.BUILDING] = (0.05, 0.12, 0.16)
_TEXTURE[Role.BUILDING_SIDE] = (0.05, 0.12, 0.16)
_TEXTURE[Role.TREE] = (0.30, 0.30, 0.12)
_TEXTURE[Role.FENCE] = (0.10, 0.08, 0.08)
_TEXTURE[Role.SKY] = (0.0, 0.0, 0.0)

_TINTS = np.array(
    [
        (1.0, 1.0, 1.0),  # neutral daylight
        (1.15, 1.0, 0.78),  # evening, warm
        (0.85, 0.95, 1.12),  # overcast, cool
        (1.05, 0.92, 1.05),  # sodium-free dusk, magenta
        (0.95, 1.05, 0.9),  # fluorescent-ish green cast
    ],
    np.float32,
)


def _fixed(poly: np.ndarray) -> np.ndarray:
    return np.round(poly * (1 << _SHIFT)).astype(np.int32)


def rasterize(scene: Scene, antialias: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paint parts in order; returns RGB uint8, train-id mask uint8 and a role map uint8."""
    H, W = scene.size
    image = np.zeros((H, W, 3), np.uint8)
    mask = np.full((H, W), 255, np.uint8)
    roles = np.zeros((H, W), np.uint8)
    aa = cv2.LINE_AA if antialias else cv2.LINE_8
    shade = None
    for part in scene.parts:
        pts = [_fixed(p) for p in part.polys]
        if part.role == Role.SHADOW:
            # Consecutive shadows are merged first so overlapping ones do not darken twice.
            if shade is None:
                shade = np.ones((H, W), np.float32)
            cv2.fillPoly(shade, pts, part.shade, cv2.LINE_8, _SHIFT)
            continue
        if shade is not None:
            image = (image * shade[..., None]).astype(np.uint8)
            shade = None
        color = tuple(round(c) for c in part.color)
        if part.thickness > 0:
            t = max(1, round(part.thickness))
            cv2.polylines(image, pts, False, color, t, aa, _SHIFT)
            cv2.polylines(roles, pts, False, int(part.role), t, cv2.LINE_8, _SHIFT)
            if part.label != IMAGE_ONLY:
                cv2.polylines(mask, pts, False, part.label, t, cv2.LINE_8, _SHIFT)
            continue
        cv2.fillPoly(image, pts, color, aa, _SHIFT)
        cv2.fillPoly(roles, pts, int(part.role), cv2.LINE_8, _SHIFT)
        if part.label != IMAGE_ONLY:
            cv2.fillPoly(mask, pts, part.label, cv2.LINE_8, _SHIFT)
    return image, mask, roles


def _noise(rng: np.random.Generator, size: tuple[int, int], cell: int) -> np.ndarray:
    """Smooth zero-mean, unit-ish noise with features about `cell` pixels wide."""
    H, W = size
    small = rng.standard_normal((max(2, H // cell + 2), max(2, W // cell + 2))).astype(np.float32)
    return cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC)


def _photograph(
    image: np.ndarray, roles: np.ndarray, scene: Scene, rng: np.random.Generator
) -> np.ndarray:
    H, W = scene.size
    img = image.astype(np.float32)

    fine = rng.standard_normal((H, W)).astype(np.float32)
    medium, coarse = _noise(rng, (H, W), 4), _noise(rng, (H, W), 16)
    amp = _TEXTURE[roles]
    texture = 1 + amp[..., 0] * fine + amp[..., 1] * medium + amp[..., 2] * coarse
    img *= texture[..., None]
    if rng.random() < 0.6:  # brick / panel courses on facades, a few pixels apart
        rows = (np.arange(H) % int(rng.integers(2, 5)) == 0).astype(np.float32)[:, None]
        facade = (roles == Role.BUILDING) | (roles == Role.BUILDING_SIDE)
        img *= (1 - 0.12 * rows * facade)[..., None]
    foliage = roles == Role.TREE  # foliage varies in hue too, not only in brightness
    img[foliage] *= 1 + 0.15 * np.stack([medium, -medium, fine], -1)[foliage]

    sky = roles == Role.SKY
    if sky.any():
        ys = np.arange(H, dtype=np.float32)[:, None] / max(scene.horizon, 1.0)
        top = np.clip(ys, 0, 1)  # 0 at the top, 1 at the horizon: brighter, paler near it
        grad = (0.75 + 0.35 * top)[..., None] * np.ones((1, W, 1), np.float32)
        clouds = np.clip(_noise(rng, (H, W), 12) * rng.uniform(0.0, 0.5), 0, None)[..., None]
        sky_img = img * grad * (1 - clouds) + 235 * clouds
        img = np.where(sky[..., None], sky_img, img)

    tint = _TINTS[rng.integers(len(_TINTS))] * rng.uniform(0.92, 1.08, 3).astype(np.float32)
    img *= tint * rng.uniform(0.6, 1.35)
    gamma = rng.uniform(0.8, 1.25)
    img = 255 * (np.clip(img, 0, 255) / 255) ** gamma

    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    r2 = ((xx - W / 2) / (W / 2)) ** 2 + ((yy - H / 2) / (H / 2)) ** 2
    img *= (1 - rng.uniform(0.1, 0.45) * r2 / 2)[..., None]

    if rng.random() < 0.3:  # motion blur: the camera moves forward and shakes sideways
        k = int(rng.integers(3, 6))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2] = 1.0 / k
        angle = rng.uniform(-30, 30)
        rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), angle, 1.0)
        kernel = cv2.warpAffine(kernel, rot, (k, k))
        img = cv2.filter2D(img, -1, kernel / max(kernel.sum(), 1e-6))
    else:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.1))

    sigma = rng.uniform(2, 9)
    img += rng.normal(0, sigma, (H, W, 1)).astype(np.float32)  # luminance noise
    img += rng.normal(0, sigma * 0.4, (H, W, 3)).astype(np.float32)  # chroma noise
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)

    quality = int(rng.integers(25, 75))
    ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("in-memory JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def render(scene: Scene, style: Style, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Scene -> (H, W, 3) RGB uint8 image and (H, W) uint8 train-id mask."""
    image, mask, roles = rasterize(scene, antialias=style.photographic)
    if style.photographic:
        image = _photograph(image, roles, scene, rng)
    return image, mask
