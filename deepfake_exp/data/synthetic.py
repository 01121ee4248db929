"""Embedded synthetic DFDC-style dataset: procedurally drawn faces, real and face-swapped videos.

Why it exists: the pipeline needs data that costs nothing to obtain, is tiny in CI and large in
a benchmark, and still has the structure the studies rely on: identities (for identity-disjoint
splits), fakes made from a named original, face-swap artefacts (another person's inner face
blended in through a blurred, slightly colour-mismatched mask), and a skin-tone range wide
enough to measure detector bias per bucket, as the York study did on DFDC.

Speed comes from rendering each identity once as a shaded RGBA sprite; a frame only warps the
sprite (rotate / scale / translate) and composites it over a cluttered background.

The output is DFDC's layout: ``<root>/*.mp4`` plus ``<root>/metadata.json`` mapping
``name.mp4 -> {label, original, split, identity, skin_tone[, source_identity]}``. Swap sources
are drawn within small same-tone pools (``swap_pools``), so grouping by target *and* source
identity still leaves many small groups and the default sets split identity-disjointly.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

GENERATOR_VERSION = 2  # bump when a config's output changes, so stored sets regenerate
GENERATOR_FILE = "generator.json"
METADATA_FILE = "metadata.json"

NOMINAL_W, NOMINAL_H = 256, 320  # sprite geometry is written in units of a 256x320 sprite
CX, CY = 128.0, 118.0  # face centre in nominal sprite units
FACE_HEIGHT = 150.0  # nominal chin-to-forehead height the frame scale is computed from

# Base skin colours (sRGB, 0..1), light to dark; buckets are assigned round-robin.
SKIN_TONES: dict[str, tuple[float, float, float]] = {
    "very_light": (0.96, 0.84, 0.76),
    "light": (0.90, 0.74, 0.62),
    "medium": (0.80, 0.60, 0.46),
    "tan": (0.68, 0.48, 0.34),
    "dark": (0.48, 0.32, 0.22),
    "very_dark": (0.33, 0.22, 0.155),
}
HAIR_COLORS: dict[str, tuple[float, float, float]] = {
    "black": (0.06, 0.05, 0.05),
    "dark_brown": (0.20, 0.13, 0.08),
    "brown": (0.38, 0.25, 0.14),
    "blonde": (0.80, 0.66, 0.40),
    "red": (0.58, 0.24, 0.10),
    "grey": (0.58, 0.58, 0.58),
    "white": (0.88, 0.87, 0.85),
}
# Irises read darker than skin in video, light ones included (shadowed by the upper lid).
EYE_COLORS: dict[str, tuple[float, float, float]] = {
    "dark_brown": (0.12, 0.07, 0.04),
    "brown": (0.26, 0.15, 0.08),
    "hazel": (0.32, 0.26, 0.12),
    "green": (0.18, 0.31, 0.17),
    "blue": (0.19, 0.32, 0.50),
    "grey": (0.32, 0.35, 0.39),
}
GLASSES_COLORS = ((0.05, 0.05, 0.05), (0.25, 0.15, 0.08), (0.70, 0.60, 0.35), (0.65, 0.65, 0.68))
HAIR_STYLES = ("short", "long", "curly", "bald", "bun")

SWAP_PEOPLE = ("one", "all")  # which faces of a two-person fake are swapped
# Fields added after GENERATOR_VERSION 2 with the value that reproduces the earlier output;
# generator.json leaves them out at that value, so sets stored before them stay current.
ADDED_FIELDS: dict[str, object] = {"people_per_video": 1, "swap_people": "one"}

# Only files named like this generator's output are ever deleted from a root.
_OWN_VIDEO = re.compile(r"^\.?id_\d+_r\d+(_f\d+)?(\.tmp)?\.mp4$")


def skin_tone_buckets() -> list[str]:
    """Skin-tone bucket names, light to dark: the keys of per-bucket detection reports."""
    return list(SKIN_TONES)


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and difficulty of a synthetic dataset.

    The defaults are the ``make train`` set (about a minute on 2 CPU cores). The manipulation
    fields set how visible the swap is: a benchmark gets harder with a weak colour mismatch,
    a wide mask blur, no face blur and a blend ratio of 1, and easier the other way round.

    Attributes:
        num_identities: Distinct procedurally drawn people (skin tones assigned round-robin).
        videos_per_identity: REAL videos per identity.
        fakes_per_real: FAKE videos made from each REAL video.
        num_frames: Frames per video.
        width: Frame width in pixels (even: the mp4v codec needs it).
        height: Frame height in pixels (even).
        fps: Frames per second (head motion is in seconds, so it sets the motion per frame).
        seed: Fixes every random choice; the same seed gives identical files.
        mask_blur: Gaussian sigma of the swap mask's edge in sprite pixels (the face is about
            110 px wide in the sprite); larger hides the seam.
        color_mismatch: 0 colour-corrects the swapped face to the target's skin exactly;
            1 leaves the source's colour uncorrected and adds a random tint.
        blend_ratio: Opacity of the swapped face inside the mask (below 1 ghosts the target).
        jpeg_quality: Per-frame JPEG round trip before mp4 encoding (emulates compression;
            lower is harder), or ``None`` to skip it.
        face_blur: Gaussian sigma (sprite pixels) of the swapped face, emulating the lower
            resolution at which swap models synthesise faces; 0 disables.
        swap_jitter: Per-frame misalignment of the swapped face in sprite pixels (the
            flicker of frame-by-frame swaps); 0 disables.
        people_per_video: People in every video: 1, or 2 side by side (DFDC films pairs of
            actors), the second one (the *companion*) drawn from the target's swap pool so
            identity-disjoint groups stay the same.
        swap_people: Which faces a two-person fake swaps: ``one`` (the target's only, so a
            detector that keeps the largest face sees the untouched one about half the
            time) or ``all``.
    """

    num_identities: int = 48
    videos_per_identity: int = 2
    fakes_per_real: int = 1
    num_frames: int = 32
    width: int = 320
    height: int = 240
    fps: int = 16
    seed: int = 0
    mask_blur: float = 6.0
    color_mismatch: float = 0.5
    blend_ratio: float = 1.0
    jpeg_quality: int | None = 90
    face_blur: float = 1.0
    swap_jitter: float = 1.0
    people_per_video: int = 1
    swap_people: str = "one"

    def __post_init__(self) -> None:
        def fail(name: str, rule: str) -> None:
            raise ValueError(f"SyntheticConfig.{name} {rule}, got {getattr(self, name)!r}")

        for name in ("num_identities", "videos_per_identity", "num_frames", "fps"):
            if getattr(self, name) < 1:
                fail(name, "must be >= 1")
        if self.fakes_per_real < 0:
            fail("fakes_per_real", "must be >= 0")
        if self.fakes_per_real and self.num_identities < 2:
            fail("num_identities", "must be >= 2 when fakes_per_real > 0 (a face to swap in)")
        for name in ("width", "height"):
            if getattr(self, name) < 64 or getattr(self, name) % 2:
                fail(name, "must be even and >= 64")
        for name in ("color_mismatch", "blend_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                fail(name, "must be in [0, 1]")
        for name in ("mask_blur", "face_blur", "swap_jitter"):
            if getattr(self, name) < 0:
                fail(name, "must be >= 0")
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            fail("jpeg_quality", "must be in 1..100 or None")
        if self.people_per_video not in (1, 2):
            fail("people_per_video", "must be 1 or 2")
        if self.swap_people not in SWAP_PEOPLE:
            fail("swap_people", f"must be one of {SWAP_PEOPLE}")
        if self.people_per_video == 2 and self.num_identities < 2:
            fail("num_identities", "must be >= 2 when people_per_video is 2 (a companion)")

    @property
    def sprite_scale(self) -> int:
        """Sprite pixels per nominal unit: large frames get a sharper sprite, not an upscaled one."""
        return int(np.clip(math.ceil(min(self.width, self.height) / 400), 1, 4))


# --------------------------------------------------------------------------------------------
# Identities
# --------------------------------------------------------------------------------------------


def _rng(seed: int, *keys: int) -> np.random.Generator:
    """An independent stream per (seed, purpose, index...), so adding draws never shifts others."""
    return np.random.default_rng([seed, *keys])


@dataclass(frozen=True)
class Identity:
    """Appearance of one synthetic person; lengths are nominal sprite units."""

    name: str
    skin_tone: str
    skin: tuple[float, float, float]
    half_width: float
    half_height: float
    jaw: float
    hairline: float
    hair_style: str
    hair_color: str
    eye_color: str
    eye_spacing: float
    eye_width: float
    eye_height: float
    gaze: float
    brow_thickness: float
    brow_arch: float
    nose_width: float
    mouth_width: float
    lip_fullness: float
    glasses: bool
    glasses_round: bool
    glasses_color: tuple[float, float, float]
    beard: bool
    clothes_color: tuple[float, float, float]
    light: tuple[float, float, float]
    texture_seed: int

    @property
    def eye_y(self) -> float:
        return CY - 0.08 * self.half_height

    @property
    def nose_y(self) -> float:
        return CY + 0.30 * self.half_height

    @property
    def mouth_y(self) -> float:
        return CY + 0.54 * self.half_height


def draw_identity(index: int, seed: int) -> Identity:
    """Draw identity ``index``; its skin-tone bucket is round-robin so a few cover every bucket."""
    rng = _rng(seed, 1, index)
    buckets = skin_tone_buckets()
    tone = buckets[index % len(buckets)]
    darkness = buckets.index(tone) / (len(buckets) - 1)
    undertone = np.array([1.0 + rng.uniform(-0.03, 0.04), 1.0, 1.0 + rng.uniform(-0.05, 0.03)])
    skin = np.clip(np.array(SKIN_TONES[tone]) * undertone * rng.uniform(0.96, 1.04), 0.0, 1.0)
    # Darker skin goes mostly with dark hair and eyes, as in the population DFDC filmed.
    hair_w = np.array([3, 2, 2, 2 - 1.5 * darkness, 1 - 0.8 * darkness, 1, 0.5])
    eye_w = np.array([2 + 2 * darkness, 2, 1, 1 - 0.8 * darkness, 1 - 0.8 * darkness, 1])
    half_width = rng.uniform(50.0, 58.0)
    return Identity(
        name=f"id_{index:03d}",
        skin_tone=tone,
        skin=tuple(float(c) for c in skin),
        half_width=half_width,
        half_height=min(half_width * rng.uniform(1.25, 1.42), 78.0),
        jaw=rng.uniform(0.1, 0.45),
        hairline=rng.uniform(0.55, 0.75),
        hair_style=HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
        hair_color=list(HAIR_COLORS)[rng.choice(len(HAIR_COLORS), p=hair_w / hair_w.sum())],
        eye_color=list(EYE_COLORS)[rng.choice(len(EYE_COLORS), p=eye_w / eye_w.sum())],
        eye_spacing=rng.uniform(0.38, 0.45),
        eye_width=rng.uniform(0.18, 0.22),
        eye_height=rng.uniform(0.06, 0.08),
        gaze=rng.uniform(-0.15, 0.15),
        brow_thickness=rng.uniform(3.0, 5.0),
        brow_arch=rng.uniform(0.02, 0.06),
        nose_width=rng.uniform(0.85, 1.25),
        mouth_width=rng.uniform(0.32, 0.42),
        lip_fullness=rng.uniform(0.85, 1.3),
        glasses=bool(rng.random() < 0.3),
        glasses_round=bool(rng.random() < 0.5),
        glasses_color=GLASSES_COLORS[rng.integers(len(GLASSES_COLORS))],
        beard=bool(rng.random() < 0.3),
        clothes_color=tuple(float(c) for c in rng.uniform(0.1, 0.8, 3)),
        light=(rng.uniform(-0.5, 0.5), rng.uniform(-0.6, -0.2), 0.8),
        texture_seed=int(rng.integers(2**31)),
    )


def draw_identities(config: SyntheticConfig) -> list[Identity]:
    """All identities of a config (identity ``i`` is the same whatever ``num_identities``)."""
    return [draw_identity(i, config.seed) for i in range(config.num_identities)]


# --------------------------------------------------------------------------------------------
# Sprite rendering
# --------------------------------------------------------------------------------------------

Paint = Callable[[np.ndarray, "_Pen"], None]


class _Pen:
    """Converts nominal coordinates to cv2's 4-bit fixed point (``shift=4``) at scale ``k``."""

    shift = 4

    def __init__(self, k: int) -> None:
        self.k = k

    def pt(self, x: float, y: float) -> tuple[int, int]:
        return round(((x + 0.5) * self.k - 0.5) * 16), round(((y + 0.5) * self.k - 0.5) * 16)

    def size(self, w: float, h: float) -> tuple[int, int]:
        return round(w * self.k * 16), round(h * self.k * 16)

    def th(self, t: float) -> int:
        return max(1, round(t * self.k))


class _Canvas:
    """Evaluates shapes written in nominal units on a grid ``k`` times finer."""

    def __init__(self, k: int, texture_seed: int) -> None:
        self.k = k
        self.shape = (NOMINAL_H * k, NOMINAL_W * k)
        xs = (np.arange(self.shape[1], dtype=np.float32) + 0.5) / k - 0.5
        ys = (np.arange(self.shape[0], dtype=np.float32) + 0.5) / k - 0.5
        self.xx, self.yy = np.meshgrid(xs, ys)
        self.texture_seed = texture_seed

    def ellipse(self, cx: float, cy: float, ax: float, ay: float, soft: float = 1.0) -> np.ndarray:
        """Anti-aliased filled ellipse; ``soft`` is the edge width in output pixels."""
        u, v = (self.xx - cx) / ax, (self.yy - cy) / ay
        r = np.sqrt(u * u + v * v) + 1e-6
        grad = np.sqrt((u / ax) ** 2 + (v / ay) ** 2) / r + 1e-6
        return np.clip(0.5 - (r - 1.0) / grad * (self.k / soft), 0.0, 1.0)

    def blob(self, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
        return np.exp(-0.5 * (((self.xx - cx) / sx) ** 2 + ((self.yy - cy) / sy) ** 2))

    def step(self, distance: np.ndarray, soft: float = 1.0) -> np.ndarray:
        """Soft ``distance > 0`` for a signed distance in nominal units."""
        return np.clip(0.5 + distance * (self.k / soft), 0.0, 1.0)

    def draw(self, paint: Paint, blur: float = 0.0) -> np.ndarray:
        """Alpha mask from cv2 drawing calls made through a ``_Pen``."""
        mask = np.zeros(self.shape, np.uint8)
        paint(mask, _Pen(self.k))
        alpha = mask.astype(np.float32) / 255.0
        return cv2.GaussianBlur(alpha, (0, 0), blur * self.k) if blur > 0 else alpha

    def noise(self, key: int, sigma_x: float, sigma_y: float) -> np.ndarray:
        """Unit-variance smooth noise (hair strands, skin texture) fixed by the identity."""
        field = _rng(self.texture_seed, key).standard_normal(self.shape, dtype=np.float32)
        field = cv2.GaussianBlur(field, (0, 0), sigmaX=sigma_x * self.k, sigmaY=sigma_y * self.k)
        return field / (field.std() + 1e-6)


def _rgb(color: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """A colour as a (3, 1, 1) array, so it broadcasts over planar (3, H, W) images."""
    return np.asarray(color, np.float32).reshape(3, 1, 1)


class _Layers:
    """Back-to-front compositing of coloured masks into planar premultiplied RGBA.

    Planar (channel-first) arrays keep numpy's inner loops long; interleaved (H, W, 3)
    arithmetic broadcast over a size-3 axis is several times slower.
    """

    def __init__(self, shape: tuple[int, int]) -> None:
        self.rgb = np.zeros((3, *shape), np.float32)
        self.alpha = np.zeros(shape, np.float32)

    def paint(self, mask: np.ndarray, color: np.ndarray | tuple[float, float, float]) -> None:
        """Paint ``color`` (an RGB triple or a planar image) through ``mask``, inside the mask's
        bounding box only: most features cover a small part of the sprite."""
        x, y, w, h = cv2.boundingRect((mask > 1e-4).astype(np.uint8))
        if w == 0:
            return
        box = (slice(y, y + h), slice(x, x + w))
        color = np.asarray(color, np.float32)
        color = color.reshape(3, 1, 1) if color.size == 3 else color[:, box[0], box[1]]
        m = mask[box]
        rgb, alpha = self.rgb[:, box[0], box[1]], self.alpha[box]
        rgb += (color - rgb) * m
        alpha += m * (1.0 - alpha)

    def planes(self) -> np.ndarray:
        """(4, H, W): premultiplied R, G, B and alpha."""
        return np.concatenate([np.clip(self.rgb, 0.0, self.alpha), self.alpha[None]]).astype(
            np.float32
        )


def _lambert(u: np.ndarray, v: np.ndarray, light: tuple[float, float, float]) -> np.ndarray:
    """Diffuse term of an ellipsoid at normalised coordinates (u, v)."""
    nz = np.sqrt(np.clip(1.0 - u * u - v * v, 0.02, 1.0))
    lx, ly, lz = np.asarray(light) / np.linalg.norm(light)
    return np.clip((u * lx + v * ly + nz * lz) / np.sqrt(u * u + v * v + nz * nz), 0.0, 1.0)


def _face_oval(c: _Canvas, ident: Identity) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face mask and its normalised coordinates; the jaw narrows the lower half."""
    a, b = ident.half_width, ident.half_height
    v = (c.yy - CY) / b
    u = (c.xx - CX) / (a * (1.0 - ident.jaw * 0.35 * np.clip(v, 0.0, 1.0) ** 2))
    mask = c.step((1.0 - np.sqrt(u * u + v * v)) * min(a, b) * 0.9, soft=1.2)
    return mask, u, v


def _hair_rgb(c: _Canvas, ident: Identity) -> np.ndarray:
    if ident.hair_style == "curly":
        texture = np.tanh(1.5 * c.noise(11, 1.6, 1.6))
    else:
        texture = 0.8 * c.noise(12, 0.7, 5.0) + 0.4 * c.noise(13, 3.0, 3.0)
    shade = 0.55 + 0.5 * _lambert((c.xx - CX) / 75.0, (c.yy - CY + 30.0) / 95.0, ident.light)
    return (
        _rgb(HAIR_COLORS[ident.hair_color]) * (np.clip(0.85 + 0.22 * texture, 0.45, 1.4) * shade)
        + 0.02
    )


def _paint_back(c: _Canvas, layers: _Layers, ident: Identity, hair: np.ndarray) -> None:
    """Everything behind the face: back hair, ears, neck (with the jaw's shadow), shoulders
    fading out towards the sprite's bottom edge."""
    a, b = ident.half_width, ident.half_height
    if ident.hair_style == "long":
        top = c.ellipse(CX, CY - 0.15 * b, a * 1.22, b * 1.05)
        body = c.ellipse(CX, CY + 0.9 * b, a * 1.25, b * 1.3) * c.step(c.yy - CY + 0.1 * b)
        layers.paint(np.maximum(top, body), hair)
    elif ident.hair_style == "curly":
        layers.paint(c.ellipse(CX, CY - 0.3 * b, a * 1.45, b * 1.05, soft=2.5), hair)
    elif ident.hair_style == "bun":
        layers.paint(c.ellipse(CX, CY - 1.12 * b, a * 0.45, b * 0.3, soft=1.5), hair)
    skin = _rgb(ident.skin)
    fade = np.clip((NOMINAL_H - 2.0 - c.yy) / 40.0, 0.0, 1.0)
    dx = (c.xx - CX) / (0.5 * a)
    neck = c.step((1.0 - np.abs(dx)) * 0.5 * a) * c.step(c.yy - (CY + 0.4 * b))
    neck *= c.step(CY + 1.5 * b - c.yy)
    shade = 0.55 + 0.35 * np.sqrt(np.clip(1.0 - dx * dx, 0.0, 1.0))
    shade *= 1.0 - 0.5 * np.exp(-(((c.yy - (CY + 1.0 * b)) / (0.14 * b)) ** 2))
    layers.paint(neck * fade, skin * shade)
    shoulders = c.ellipse(CX, CY + 1.45 * b + 0.85 * a, 2.05 * a, 1.1 * a)
    neckline = c.ellipse(CX, CY + 1.38 * b, 0.55 * a, 0.22 * b, soft=1.5)
    cloth_shade = 0.72 + 0.04 * c.noise(21, 2.0, 2.0) + 0.2 * (1.0 - np.abs(c.xx - CX) / 128.0)
    layers.paint(shoulders * (1.0 - neckline) * fade, _rgb(ident.clothes_color) * cloth_shade)
    for side in (-1.0, 1.0):
        ex, ey = CX + side * a * 0.97, ident.eye_y + 0.1 * b
        inner = c.ellipse(ex + side * 0.02 * a, ey, 0.08 * a, 0.15 * b, soft=2.0)
        layers.paint(c.ellipse(ex, ey, 0.17 * a, 0.25 * b), skin * (0.72 - 0.22 * inner))


def _face_rgb(
    c: _Canvas, ident: Identity, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Skin colour with 3-D shading (ellipsoid light, sockets, nose, cheeks, lips, chin),
    specular sheen and texture; returns (rgb, shade) so features can follow the light."""
    a, b = ident.half_width, ident.half_height
    ey, ny, my, nw = ident.eye_y, ident.nose_y, ident.mouth_y, ident.nose_width
    shade = 0.42 + 0.64 * _lambert(u, v * 0.9, ident.light)
    sheen = 0.06 * c.blob(CX, CY - 0.5 * b, 0.35 * a, 0.14 * b)
    for side in (-1.0, 1.0):
        ex = CX + side * ident.eye_spacing * a
        shade *= 1.0 - 0.22 * c.blob(ex, ey + 0.01 * b, 0.27 * a, 0.13 * b)
        shade *= 1.0 + 0.07 * c.blob(ex, ey - 0.24 * b, 0.25 * a, 0.05 * b)
        shade *= 1.0 + 0.06 * c.blob(CX + side * 0.46 * a, CY + 0.16 * b, 0.18 * a, 0.13 * b)
        shade *= 1.0 - 0.2 * c.blob(CX + side * 0.13 * a * nw, CY + 0.14 * b, 0.045 * a, 0.15 * b)
        shade *= 1.0 - 0.12 * c.blob(CX + side * 0.3 * a, my - 0.1 * b, 0.05 * a, 0.12 * b)
        sheen += 0.05 * c.blob(CX + side * 0.42 * a, CY + 0.08 * b, 0.12 * a, 0.06 * b)
    shade *= 1.0 + 0.12 * c.blob(CX, CY + 0.08 * b, 0.045 * a, 0.2 * b)
    shade *= 1.0 + 0.12 * c.blob(CX, ny - 0.03 * b, 0.07 * a * nw, 0.045 * b)
    shade *= 1.0 - 0.3 * c.blob(CX, ny + 0.07 * b, 0.14 * a * nw, 0.03 * b)
    shade *= 1.0 - 0.2 * c.blob(CX, my + 0.13 * b, 0.15 * a, 0.035 * b)
    shade *= 1.0 + 0.07 * c.blob(CX, CY + 0.84 * b, 0.16 * a, 0.06 * b)
    sheen += 0.07 * c.blob(CX, CY + 0.12 * b, 0.035 * a, 0.16 * b)
    sheen += 0.06 * c.blob(CX, ny - 0.04 * b, 0.05 * a, 0.03 * b)
    shade *= 1.0 + 0.012 * c.noise(31, 0.6, 0.6) + 0.025 * c.noise(32, 7.0, 7.0)
    # Light scattered under the skin reddens the shadows a little.
    rgb = _rgb(ident.skin) * shade * (1.0 - _rgb((0.0, 0.07, 0.12)) * (1.0 - shade))
    blush = 0.04 * sum(c.blob(CX + s * 0.45 * a, CY + 0.2 * b, 12.0, 9.0) for s in (-1.0, 1.0))
    return rgb + blush * _rgb((0.6, -0.2, -0.2)) + 0.9 * sheen, shade


def _paint_nose_and_mouth(c: _Canvas, layers: _Layers, ident: Identity, shade: np.ndarray) -> None:
    a, b = ident.half_width, ident.half_height
    skin = _rgb(ident.skin)
    ny, my, nw = ident.nose_y, ident.mouth_y, ident.nose_width
    for side in (-1.0, 1.0):
        nostril = c.ellipse(
            CX + side * 0.085 * a * nw, ny + 0.03 * b, 0.05 * a * nw, 0.022 * b, soft=1.5
        )
        layers.paint(nostril * 0.9, skin * 0.25)

    def alae(mask: np.ndarray, pen: _Pen) -> None:
        for side, (start, end) in ((-1.0, (80, 250)), (1.0, (-70, 100))):
            centre = pen.pt(CX + side * 0.14 * a * nw, ny)
            axes = pen.size(0.06 * a * nw, 0.05 * b)
            cv2.ellipse(mask, centre, axes, 0, start, end, 255, pen.th(1.2), cv2.LINE_AA, pen.shift)

    layers.paint(c.draw(alae, blur=0.6) * 0.55, skin * 0.4)

    lip = skin * _rgb((0.80, 0.55, 0.56)) + _rgb((0.12, 0.02, 0.04))
    mw, lf = ident.mouth_width * a, ident.lip_fullness
    bow = [
        (-1.0, 0.0),
        (-0.45, 0.075),
        (-0.18, 0.095),
        (0.0, 0.07),
        (0.18, 0.095),
        (0.45, 0.075),
        (1.0, 0.0),
    ]

    def upper(mask: np.ndarray, pen: _Pen) -> None:
        pts = np.array([pen.pt(CX + x * mw, my - y * b * lf) for x, y in bow], np.int32)
        cv2.fillPoly(mask, [pts], 255, cv2.LINE_AA, pen.shift)

    layers.paint(c.draw(upper, blur=0.5), lip * 0.75 * shade)
    lower = c.ellipse(CX, my, 0.88 * mw, 0.1 * b * lf) * c.step(c.yy - my)
    gloss = 0.2 * c.blob(CX, my + 0.045 * b * lf, 0.3 * mw, 0.02 * b)
    layers.paint(lower, lip * (shade + gloss))

    def line(mask: np.ndarray, pen: _Pen) -> None:
        ts = np.linspace(-1.0, 1.0, 15)
        pts = np.array(
            [pen.pt(CX + t * mw, my + 0.012 * b - 0.022 * b * t * t) for t in ts], np.int32
        )
        cv2.polylines(mask, [pts], False, 255, pen.th(1.6), cv2.LINE_AA, pen.shift)

    layers.paint(c.draw(line, blur=0.4), lip * 0.3)


def _paint_eyes(c: _Canvas, layers: _Layers, ident: Identity, shade: np.ndarray) -> None:
    """Sclera, iris, pupil, catch-light, lids, lashes and crease: what makes a face a face."""
    a, b = ident.half_width, ident.half_height
    ey, ew, eh = ident.eye_y, ident.eye_width * a, ident.eye_height * b
    for side in (-1.0, 1.0):
        ex = CX + side * ident.eye_spacing * a
        sclera = c.ellipse(ex, ey, ew, np.where(c.yy < ey, eh * 1.15, eh * 0.8))
        corner = np.clip(np.abs(c.xx - ex) / ew, 0.0, 1.0) ** 2
        lid_shadow = np.clip((ey - c.yy) / (1.2 * eh), 0.0, 1.0)
        eye_shade = (0.8 + 0.16 * shade) * (1.0 - 0.25 * corner) * (1.0 - 0.3 * lid_shadow)
        layers.paint(sclera, _rgb((0.94, 0.91, 0.88)) * eye_shade)
        ix, r = ex + ident.gaze * ew, eh * 1.1
        rr = np.sqrt((c.xx - ix) ** 2 + (c.yy - ey) ** 2) / r
        # A dark limbal ring and a large pupil keep the eye readable on any iris colour.
        limbus = (0.3 + 0.9 * np.sqrt(np.clip(1.0 - rr, 0.0, 1.0))) * (1.0 - 0.3 * lid_shadow)
        layers.paint(c.ellipse(ix, ey, r, r) * sclera, _rgb(EYE_COLORS[ident.eye_color]) * limbus)
        layers.paint(c.ellipse(ix, ey, 0.48 * r, 0.48 * r) * sclera, (0.02, 0.02, 0.02))
        glint = c.blob(ix - 0.35 * r, ey - 0.35 * r, 0.12 * r + 0.3, 0.12 * r + 0.3)
        layers.paint(np.clip(1.3 * glint, 0.0, 1.0) * sclera, (0.97, 0.97, 0.97))

        def lids(mask: np.ndarray, pen: _Pen, ex: float = ex, side: float = side) -> None:
            axes = pen.size(ew * 1.02, eh * 1.18)
            cv2.ellipse(
                mask, pen.pt(ex, ey), axes, 0, 180, 360, 255, pen.th(2.4), cv2.LINE_AA, pen.shift
            )
            for t in np.linspace(0.15, 0.95, 6) if side > 0 else np.linspace(0.05, 0.85, 6):
                ang = math.pi * (1.0 + t)
                x0, y0 = ex + ew * math.cos(ang), ey + eh * 1.18 * math.sin(ang)
                tip = pen.pt(x0 + 2.6 * (0.6 * math.cos(ang) + 0.35 * side), y0 - 2.6)
                cv2.line(mask, pen.pt(x0, y0), tip, 255, pen.th(0.9), cv2.LINE_AA, pen.shift)

        layers.paint(c.draw(lids, blur=0.35), (0.06, 0.045, 0.04))

        def creases(mask: np.ndarray, pen: _Pen, ex: float = ex) -> None:
            upper, lower = pen.size(ew * 1.1, eh * 2.1), pen.size(ew * 0.98, eh * 0.85)
            cv2.ellipse(
                mask,
                pen.pt(ex, ey + 0.2 * eh),
                upper,
                0,
                195,
                345,
                255,
                pen.th(1.0),
                cv2.LINE_AA,
                pen.shift,
            )
            cv2.ellipse(
                mask, pen.pt(ex, ey), lower, 0, 15, 165, 255, pen.th(1.0), cv2.LINE_AA, pen.shift
            )

        layers.paint(c.draw(creases, blur=0.7) * 0.55, _rgb(ident.skin) * 0.5 * shade)


def _paint_brows(c: _Canvas, layers: _Layers, ident: Identity) -> None:
    a, b = ident.half_width, ident.half_height
    brow = np.minimum(_rgb(HAIR_COLORS[ident.hair_color]) * 0.7, _rgb(ident.skin) * 0.35) + 0.01
    brow = brow * np.clip(0.85 + 0.15 * c.noise(41, 0.5, 0.5), 0.5, 1.2)
    ts = np.linspace(0.0, 1.0, 12)
    by = ident.eye_y - 0.22 * b
    for side in (-1.0, 1.0):
        inner = CX + side * 0.12 * a
        outer = CX + side * (ident.eye_spacing + ident.eye_width + 0.1) * a
        xs = inner + (outer - inner) * ts
        ys = by - 6.0 * ident.brow_arch * b * ts * (1.0 - ts) + 0.03 * b * ts

        def stroke(mask: np.ndarray, pen: _Pen, xs: np.ndarray = xs, ys: np.ndarray = ys) -> None:
            pts = np.array([pen.pt(x, y) for x, y in zip(xs, ys, strict=True)], np.int32)
            cv2.polylines(
                mask, [pts[:9]], False, 255, pen.th(ident.brow_thickness), cv2.LINE_AA, pen.shift
            )
            cv2.polylines(
                mask,
                [pts[6:]],
                False,
                255,
                pen.th(0.6 * ident.brow_thickness),
                cv2.LINE_AA,
                pen.shift,
            )

        layers.paint(c.draw(stroke, blur=0.6) * 0.92, brow)


def _paint_beard(
    c: _Canvas, layers: _Layers, ident: Identity, face: np.ndarray, hair: np.ndarray
) -> None:
    a, b = ident.half_width, ident.half_height
    mw, my = ident.mouth_width * a, ident.mouth_y
    region = face * c.step(c.yy - (CY + 0.32 * b - 0.14 * b * ((c.xx - CX) / a) ** 2), soft=3.0)
    region = np.maximum(region, c.ellipse(CX, my - 0.12 * b, mw * 1.05, 0.05 * b, soft=2.0))
    region *= 1.0 - c.ellipse(CX, my + 0.01 * b, mw * 0.95, 0.1 * b * ident.lip_fullness, soft=1.5)
    density = np.clip(0.85 + 0.15 * c.noise(51, 0.8, 0.8), 0.0, 1.0)
    layers.paint(region * density * 0.92, hair * 0.9)


def _paint_front_hair(
    c: _Canvas, layers: _Layers, ident: Identity, face: np.ndarray, hair: np.ndarray
) -> None:
    if ident.hair_style == "bald":
        return
    a, b = ident.half_width, ident.half_height
    cap = c.ellipse(CX, CY - 0.18 * b, a * 1.1, b * 1.0, soft=1.5) * c.step(
        CY - 0.05 * b - c.yy, soft=3.0
    )
    hairline = CY - ident.hairline * b + 0.3 * b * ((c.xx - CX) / a) ** 2
    layers.paint(cap * (1.0 - face * c.step(c.yy - hairline, soft=2.5)), hair)


def _paint_glasses(c: _Canvas, layers: _Layers, ident: Identity) -> None:
    a, b = ident.half_width, ident.half_height
    ey = ident.eye_y + 0.01 * b
    rx, ry = ident.eye_width * a * 1.55, ident.eye_height * b * 2.5
    left, right = (CX + side * ident.eye_spacing * a for side in (-1.0, 1.0))

    def frame(mask: np.ndarray, pen: _Pen) -> None:
        def line(x0: float, y0: float, x1: float, y1: float) -> None:
            cv2.line(mask, pen.pt(x0, y0), pen.pt(x1, y1), 255, pen.th(1.2), cv2.LINE_AA, pen.shift)

        for ex in (left, right):
            if ident.glasses_round:
                cv2.ellipse(
                    mask,
                    pen.pt(ex, ey),
                    pen.size(rx, ry),
                    0,
                    0,
                    360,
                    255,
                    pen.th(1.4),
                    cv2.LINE_AA,
                    pen.shift,
                )
            else:
                corners = pen.pt(ex - rx, ey - 0.85 * ry), pen.pt(ex + rx, ey + 0.85 * ry)
                cv2.rectangle(mask, *corners, 255, pen.th(1.4), cv2.LINE_AA, pen.shift)
        line(left + rx, ey - 0.3 * ry, right - rx, ey - 0.3 * ry)
        line(left - rx, ey - 0.2 * ry, CX - 0.98 * a, ey)
        line(right + rx, ey - 0.2 * ry, CX + 0.98 * a, ey)

    lenses = c.ellipse(left, ey, rx, ry) + c.ellipse(right, ey, rx, ry)
    glare = np.clip(2.0 * np.sin(0.25 * (c.xx + c.yy)) - 1.4, 0.0, 1.0)
    layers.paint(lenses * (0.06 + 0.12 * glare), (0.95, 0.97, 1.0))
    layers.paint(c.draw(frame, blur=0.3), ident.glasses_color)


def _over(*layers: np.ndarray) -> np.ndarray:
    """Composite planar premultiplied RGBA layers, first at the back."""
    out = layers[0]
    for top in layers[1:]:
        out = top + out * (1.0 - top[3])
    return out


SPRITE_PARTS = ("back", "face", "beard", "front", "glasses")


# Small: one job needs its target and a few sources; at 1080p a sprite set is ~60 MB.
@lru_cache(maxsize=8)
def _render_parts(ident: Identity, k: int) -> dict[str, np.ndarray]:
    """Planar premultiplied layers of an identity, back to front; a swap replaces ``face``."""
    c = _Canvas(k, ident.texture_seed)
    parts = {name: _Layers(c.shape) for name in SPRITE_PARTS}
    hair = _hair_rgb(c, ident)
    _paint_back(c, parts["back"], ident, hair)
    face, u, v = _face_oval(c, ident)
    face_rgb, shade = _face_rgb(c, ident, u, v)
    parts["face"].paint(face, face_rgb)
    _paint_eyes(c, parts["face"], ident, shade)
    _paint_brows(c, parts["face"], ident)
    _paint_nose_and_mouth(c, parts["face"], ident, shade)
    if ident.beard:
        _paint_beard(c, parts["beard"], ident, face, hair)
    _paint_front_hair(c, parts["front"], ident, face, hair)
    if ident.glasses:
        _paint_glasses(c, parts["glasses"], ident)
    planes = {name: layer.planes() for name, layer in parts.items()}
    for array in planes.values():
        array.setflags(write=False)
    return planes


def render_identity(ident: Identity, scale: int = 1, part: str = "full") -> np.ndarray:
    """Render a shaded sprite of ``ident``; frames only warp it, so this runs once per identity.

    Args:
        ident: The person to draw.
        scale: Sprite pixels per nominal unit (the sprite is ``320*scale x 256*scale``).
        part: ``full`` or one layer: ``back`` (hair behind the head, ears, neck, shoulders),
            ``face`` (skin, eyes, brows, nose, mouth: what a swap replaces), ``beard``,
            ``front`` (hair over the forehead) or ``glasses``.

    Returns:
        ``(H, W, 4)`` float32 RGBA in [0, 1] with straight (not premultiplied) alpha.
    """
    if part != "full" and part not in SPRITE_PARTS:
        raise ValueError(f"unknown sprite part {part!r}: use full or one of {SPRITE_PARTS}")
    parts = _render_parts(ident, scale)
    planes = _over(*parts.values()) if part == "full" else parts[part]
    alpha = planes[3]
    rgb = np.clip(planes[:3] / np.maximum(alpha, 1e-6), 0.0, 1.0)
    return np.ascontiguousarray(np.concatenate([rgb, alpha[None]]).transpose(1, 2, 0))


def inner_face_mask(ident: Identity, scale: int, blur: float) -> np.ndarray:
    """The region a face swap replaces (brows to chin, cheek to cheek) with a blurred edge.

    Args:
        ident: The target, whose face geometry the mask follows.
        scale: Sprite pixels per nominal unit.
        blur: Edge sigma in nominal sprite pixels.
    """
    c = _Canvas(scale, ident.texture_seed)
    a, b = ident.half_width, ident.half_height
    face, _, _ = _face_oval(c, ident)
    mask = c.ellipse(CX, CY + 0.1 * b, 0.74 * a, 0.72 * b) * face
    return cv2.GaussianBlur(mask, (0, 0), blur * scale) if blur > 0 else mask


# --------------------------------------------------------------------------------------------
# Scenes: background, motion, lighting
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Motion:
    """Smooth head motion and lighting drift of one REAL video (its fakes reuse it)."""

    x0: float
    y0: float
    scale: float
    angle: float
    amp_x: float
    amp_y: float
    amp_angle: float
    amp_scale: float
    freq: float
    phases: tuple[float, ...]
    gain: float
    amp_gain: float
    gradient: tuple[float, float]
    gradient_strength: float
    tint: tuple[float, float, float]
    noise: float

    def pose(self, seconds: float) -> tuple[float, float, float, float]:
        """Face centre x, y (frame pixels), roll (degrees) and sprite-to-frame scale."""
        w, p = 2.0 * math.pi * self.freq * seconds, self.phases
        return (
            self.x0 + self.amp_x * math.sin(w + p[0]),
            self.y0 + self.amp_y * math.sin(1.3 * w + p[1]),
            self.angle + self.amp_angle * math.sin(0.8 * w + p[2]),
            self.scale * (1.0 + self.amp_scale * math.sin(0.6 * w + p[3])),
        )

    def matrix(self, seconds: float, k: int) -> np.ndarray:
        """Affine map from sprite pixels (``k`` per nominal unit) to frame pixels."""
        x, y, angle, scale = self.pose(seconds)
        cx, cy = (CX + 0.5) * k - 0.5, (CY + 0.5) * k - 0.5
        m = cv2.getRotationMatrix2D((cx, cy), angle, scale / k)
        m[:, 2] += (x - cx, y - cy)
        return m

    def light(self, seconds: float) -> tuple[float, float]:
        """Global gain and strength of the directional gradient at this time."""
        w = 2.0 * math.pi * self.freq * seconds
        gain = self.gain * (1.0 + self.amp_gain * math.sin(0.7 * w + self.phases[4]))
        return gain, self.gradient_strength * (1.0 + 0.3 * math.sin(w))


@dataclass(frozen=True)
class _Slot:
    """Where a person may stand: ranges (fractions of the frame) of centre x, face height
    and horizontal sway."""

    x: tuple[float, float]
    scale: tuple[float, float]
    sway: tuple[float, float]


_ALONE = _Slot(x=(0.36, 0.64), scale=(0.36, 0.5), sway=(0.01, 0.06))
# Two people: smaller faces, one per half, swaying less so they never overlap.
_PAIR = (
    _Slot(x=(0.2, 0.32), scale=(0.26, 0.4), sway=(0.01, 0.03)),
    _Slot(x=(0.68, 0.8), scale=(0.26, 0.4), sway=(0.01, 0.03)),
)


def target_side(config: SyntheticConfig, identity: int, video: int) -> int:
    """Half of a two-person frame (0 left, 1 right) the target stands in, drawn by seed."""
    return int(_rng(config.seed, 7, identity, video).integers(2))


def draw_motion(config: SyntheticConfig, identity: int, video: int, person: int = 0) -> Motion:
    """Pose, motion and lighting of a person of REAL video ``video`` of identity ``identity``.

    Faces span 36-50% of the frame height (26-40% for each of two people) and move by a
    few percent with a few degrees of roll, so a detector sees varied but always frontal
    faces. ``person`` 0 is the target (whose motion also sets the scene's lighting), 1 the
    companion of a two-person video, standing in the other half of the frame.
    """
    key = (identity, video) if person == 0 else (identity, video, person)
    rng = _rng(config.seed, 2, *key)
    w, h = config.width, config.height
    if config.people_per_video == 1:
        slot = _ALONE
    else:
        slot = _PAIR[(target_side(config, identity, video) + person) % 2]
    direction = rng.uniform(-math.pi, math.pi)
    # Cameras meter on the face: darker skin gets a longer exposure (and a brighter room).
    luma = float(np.dot(draw_identity(identity, config.seed).skin, (0.299, 0.587, 0.114)))
    exposure = float(np.clip((0.55 / luma) ** 0.4, 1.0, 1.4))
    return Motion(
        x0=rng.uniform(*slot.x) * w,
        y0=rng.uniform(0.40, 0.50) * h,
        scale=rng.uniform(*slot.scale) * min(w, h) / FACE_HEIGHT,
        angle=rng.uniform(-4.0, 4.0),
        amp_x=rng.uniform(*slot.sway) * w,
        amp_y=rng.uniform(0.01, 0.03) * h,
        amp_angle=rng.uniform(1.0, 6.0),
        amp_scale=rng.uniform(0.0, 0.06),
        freq=rng.uniform(0.2, 0.7),
        phases=tuple(float(p) for p in rng.uniform(0.0, 2.0 * math.pi, 5)),
        gain=rng.uniform(0.9, 1.12) * exposure,
        amp_gain=rng.uniform(0.0, 0.06),
        gradient=(math.cos(direction), math.sin(direction)),
        gradient_strength=rng.uniform(0.0, 0.18),
        tint=tuple(float(x) for x in 1.0 + rng.uniform(-0.05, 0.05, 3)),
        noise=rng.uniform(0.004, 0.012),
    )


def render_background(config: SyntheticConfig, identity: int, video: int) -> np.ndarray:
    """A cluttered room: graded wall, floor band, furniture-like shapes, slight defocus."""
    rng = _rng(config.seed, 3, identity, video)
    w, h = config.width, config.height
    top, bottom = rng.uniform(0.15, 0.85, 3), rng.uniform(0.1, 0.75, 3)
    ramp = np.linspace(0.0, 1.0, h)[:, None, None]
    canvas = np.empty((h, w, 3), np.uint8)
    canvas[:] = ((top * (1 - ramp) + bottom * ramp) * 255).astype(np.uint8)
    if rng.random() < 0.6:
        canvas[int(rng.uniform(0.65, 0.85) * h) :] = (rng.uniform(0.1, 0.6, 3) * 255).astype(
            np.uint8
        )
    for _ in range(int(rng.integers(6, 15))):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        size = int(rng.uniform(0.05, 0.3) * min(w, h))
        thickness = -1 if rng.random() < 0.7 else max(1, size // 12)
        kind = int(rng.integers(4))
        if kind == 0:
            corner = (x + size, y + int(size * rng.uniform(0.3, 2.5)))
            cv2.rectangle(canvas, (x, y), corner, color, thickness, cv2.LINE_AA)
        elif kind == 1:
            cv2.circle(canvas, (x, y), size // 2, color, thickness, cv2.LINE_AA)
        elif kind == 2:
            end = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(canvas, (x, y), end, color, max(1, size // 10), cv2.LINE_AA)
        else:
            pts = (rng.integers(-size, size + 1, (5, 2)) + (x, y)).astype(np.int32)
            cv2.fillPoly(canvas, [pts], color, cv2.LINE_AA)
    out = cv2.GaussianBlur(canvas.astype(np.float32) / 255.0, (0, 0), rng.uniform(0.6, 1.8))
    texture = cv2.GaussianBlur(rng.standard_normal((h, w), dtype=np.float32), (0, 0), 1.0)
    return np.clip(out * (1.0 + 0.04 * texture[..., None]), 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# Videos
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoPlan:
    """One file to write: a REAL video of ``identity`` or a FAKE made from one.

    A two-person video also shows ``companion``; its fake swaps ``companion_source``'s face
    onto the companion too when that is set (``swap_people: all``).
    """

    name: str
    identity: int
    video: int
    fake: int | None = None
    source: int | None = None
    companion: int | None = None
    companion_source: int | None = None

    @property
    def original(self) -> str | None:
        return None if self.fake is None else real_name(self.identity, self.video)

    @property
    def people(self) -> list[tuple[int, int | None]]:
        """``(person, face swapped in or None)`` of everyone shown, the target first."""
        people = [(self.identity, self.source)]
        if self.companion is not None:
            people.append((self.companion, self.companion_source))
        return people


def real_name(identity: int, video: int) -> str:
    """File name of a REAL video; its fakes add ``_f<k>`` before the extension."""
    return f"id_{identity:03d}_r{video}.mp4"


def swap_pools(num_identities: int) -> list[list[int]]:
    """Identities whose faces are swapped only into each other's videos: pairs of one skin tone.

    A swap links its target and source, and an identity-disjoint split keeps linked people
    together; drawing sources inside small pools keeps those groups small (two people, three
    at most), so the set splits cleanly at any size. Same-tone pairs (DFDC paired look-alikes)
    keep the colour artefact under ``color_mismatch``'s control. A tone with one identity
    (small sets) pools with the other lone tones, nearest first.
    """
    tones = len(SKIN_TONES)

    def pairs(members: list[int]) -> list[list[int]]:
        chunks = [members[k : k + 2] for k in range(0, len(members), 2)]
        if len(chunks) > 1 and len(chunks[-1]) == 1:
            last = chunks.pop()
            chunks[-1] += last
        return chunks

    pools, lone = [], []
    for tone in range(tones):
        members = list(range(tone, num_identities, tones))
        if len(members) == 1:
            lone += members
        elif members:
            pools += pairs(members)
    if lone:
        lone_pools = pairs(lone)
        if len(lone_pools[-1]) == 1 and pools:
            pools[-1] += lone_pools.pop()
        pools += lone_pools
    return pools


def _pick_other(config: SyntheticConfig, pool: list[int], person: int, *key: int) -> int:
    """Another person of ``person``'s swap pool, drawn by seed from the stream ``key``."""
    others = [i for i in pool if i != person]
    return others[int(_rng(config.seed, *key).integers(len(others)))]


def plan_videos(
    config: SyntheticConfig, identities: list[Identity] | None = None
) -> list[VideoPlan]:
    """Every video of the dataset: each REAL video followed by the fakes made from it.

    A fake's source is drawn from its target's ``swap_pools`` pool, which depends on the
    identity index only; ``identities`` is accepted for callers that already hold them.
    """
    del identities
    pool_of = {i: pool for pool in swap_pools(config.num_identities) for i in pool}
    two = config.people_per_video == 2
    plans = []
    for i in range(config.num_identities):
        for v in range(config.videos_per_identity):
            companion = _pick_other(config, pool_of[i], i, 8, i, v) if two else None
            plans.append(VideoPlan(real_name(i, v), i, v, companion=companion))
            for f in range(config.fakes_per_real):
                source = _pick_other(config, pool_of[i], i, 4, i, v, f)
                companion_source = None
                if companion is not None and config.swap_people == "all":
                    companion_source = _pick_other(config, pool_of[i], companion, 9, i, v, f)
                name = f"id_{i:03d}_r{v}_f{f}.mp4"
                plans.append(VideoPlan(name, i, v, f, source, companion, companion_source))
    return plans


def metadata_entry(plan: VideoPlan, identities: list[Identity]) -> dict:
    """The video's ``metadata.json`` entry: a fake names its target's ``identity`` and the
    ``source_identity`` swapped in, so a split can keep both people on one side."""
    ident = identities[plan.identity]
    entry = {
        "label": "REAL" if plan.fake is None else "FAKE",
        "original": plan.original,
        "split": "train",
        "identity": ident.name,
        "skin_tone": ident.skin_tone,
    }
    if plan.source is not None:
        entry["source_identity"] = identities[plan.source].name
    if plan.companion is not None:
        entry["companion_identity"] = identities[plan.companion].name
    if plan.companion_source is not None:
        entry["companion_source_identity"] = identities[plan.companion_source].name
    return entry


def dataset_metadata(config: SyntheticConfig) -> dict[str, dict]:
    """``metadata.json``'s content for ``config``, computed without rendering a frame.

    Split and grouping tests read it to check a set's splits in milliseconds.
    """
    identities = draw_identities(config)
    return {p.name: metadata_entry(p, identities) for p in plan_videos(config, identities)}


def person_boxes(config: SyntheticConfig, name: str) -> np.ndarray:
    """Ground-truth face boxes ``(people, num_frames, 4)`` as ``x1, y1, x2, y2`` in pixels.

    Person 0 is the target (the face a fake swaps), person 1 the companion of a two-person
    video. A box bounds the face oval (forehead to chin, cheek to cheek) of the person's own
    geometry, which a swap keeps; tests and benchmarks use it to check that a detector found
    *the* face rather than background clutter, and which person a track follows.
    """
    plan = next((p for p in plan_videos(config) if p.name == name), None)
    if plan is None:
        raise KeyError(f"no video named {name!r} in this synthetic config")
    boxes = np.zeros((len(plan.people), config.num_frames, 4), np.float32)
    for person, (index, _) in enumerate(plan.people):
        ident = draw_identity(index, config.seed)
        motion = draw_motion(config, plan.identity, plan.video, person)
        a, b = ident.half_width, ident.half_height
        for i in range(config.num_frames):
            x, y, angle, scale = motion.pose(i / config.fps)
            th = math.radians(angle)
            hx = scale * math.hypot(a * math.cos(th), b * math.sin(th))
            hy = scale * math.hypot(a * math.sin(th), b * math.cos(th))
            boxes[person, i] = (x - hx, y - hy, x + hx, y + hy)
    return boxes


def face_boxes(config: SyntheticConfig, name: str) -> np.ndarray:
    """Ground-truth face boxes ``(num_frames, 4)`` of the target (``person_boxes``' person 0)."""
    return person_boxes(config, name)[0]


def _interleave(planes: np.ndarray) -> np.ndarray:
    return cv2.merge(list(planes))


class _Swap:
    """Pastes a source's inner face into the target's sprite frame by frame, as swap tools do.

    The source face is scaled onto the target's face geometry (landmark alignment), blurred
    (synthesis resolution), colour-corrected towards the target's skin only partly
    (``color_mismatch``), jittered per frame and blended through the target's blurred
    inner-face mask; the target's hair, beard and glasses stay in front (occlusion-aware).
    """

    def __init__(
        self, config: SyntheticConfig, target: Identity, source: Identity, key: tuple[int, ...]
    ) -> None:
        k = config.sprite_scale
        self.rng = _rng(config.seed, 5, *key)
        parts = _render_parts(target, k)
        self.back, self.face = parts["back"], parts["face"]
        self.front = _over(parts["beard"], parts["front"], parts["glasses"])
        source_face = _interleave(_render_parts(source, k)["face"])
        if config.face_blur > 0:
            source_face = cv2.GaussianBlur(source_face, (0, 0), config.face_blur * k)
        self.source = source_face
        sx, sy = target.half_width / source.half_width, target.half_height / source.half_height
        cx, cy = (CX + 0.5) * k - 0.5, (CY + 0.5) * k - 0.5
        mask = inner_face_mask(target, k, config.mask_blur)
        # Only the mask's bounding box changes from frame to frame.
        x, y, w, h = cv2.boundingRect((mask > 1e-3).astype(np.uint8))
        self.box = (slice(y, y + h), slice(x, x + w))
        self.size = (w, h)
        self.align = np.array([[sx, 0.0, cx - sx * cx - x], [0.0, sy, cy - sy * cy - y]])
        self.mask = mask[self.box] * config.blend_ratio
        self.unswapped = _over(self.back, self.face, self.front)
        self.jitter = config.swap_jitter * k
        correction = (np.asarray(target.skin) / np.asarray(source.skin)) ** (
            1.0 - config.color_mismatch
        )
        tint = 1.0 + 0.2 * config.color_mismatch * self.rng.uniform(-1.0, 1.0, 3)
        self.gain = _rgb(correction * tint)

    def next_sprite(self) -> np.ndarray:
        """Planar premultiplied sprite of the next frame."""
        m = self.align.copy()
        if self.jitter > 0:
            m[:, 2] += self.rng.normal(0.0, self.jitter, 2)
        src = np.stack(cv2.split(cv2.warpAffine(self.source, m, self.size, flags=cv2.INTER_LINEAR)))
        straight = np.clip(src[:3] / np.maximum(src[3], 1e-3) * self.gain, 0.0, 1.0)
        ys, xs = self.box
        face = self.face[:, ys, xs].copy()
        face[:3] += (straight * face[3] - face[:3]) * (self.mask * src[3])
        sprite = self.unswapped.copy()
        sprite[:, ys, xs] = _over(self.back[:, ys, xs], face, self.front[:, ys, xs])
        return sprite


class _Scene:
    """Background, lighting ramp and noise stream of one REAL video; its fakes replay them.

    The target's motion (person 0) sets the lighting; each person moves on their own.
    """

    def __init__(self, config: SyntheticConfig, identity: int, video: int) -> None:
        self.config = config
        self.motions = [
            draw_motion(config, identity, video, person)
            for person in range(config.people_per_video)
        ]
        self.motion = self.motions[0]
        # Back to front: the person nearer the camera (larger) covers the other.
        self.order = sorted(range(len(self.motions)), key=lambda p: self.motions[p].scale)
        self.background = np.ascontiguousarray(
            render_background(config, identity, video).transpose(2, 0, 1)
        )
        self.rng = _rng(config.seed, 6, identity, video)
        h, w = config.height, config.width
        gx, gy = self.motion.gradient
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        self.ramp = ((xx - w / 2) * gx + (yy - h / 2) * gy) / (0.5 * max(w, h))

    def _warp(self, sprites: list[np.ndarray], seconds: float) -> list[np.ndarray]:
        """Planes of the people's warped (H, W, 4) premultiplied sprites, composited."""
        cfg = self.config
        layers = []
        for person in self.order:
            matrix = self.motions[person].matrix(seconds, cfg.sprite_scale)
            warped = cv2.warpAffine(
                sprites[person], matrix, (cfg.width, cfg.height), flags=cv2.INTER_LINEAR
            )
            layers.append(cv2.split(warped))
        out = layers[0]
        for top in layers[1:]:
            out = [t + o * (1.0 - top[3]) for t, o in zip(top, out, strict=True)]
        return out

    def frame(self, sprites: list[np.ndarray], index: int) -> np.ndarray:
        """One BGR uint8 frame: warp each person's (H, W, 4) premultiplied sprite,
        composite, light, add sensor noise, JPEG round trip."""
        cfg, motion = self.config, self.motion
        seconds = index / cfg.fps
        warped = self._warp(sprites, seconds)
        uncovered = 1.0 - warped[3]
        gain, strength = motion.light(seconds)
        light = (255.0 * gain) * (1.0 + strength * self.ramp)
        # Uniform sensor noise from raw bytes: 15x cheaper than Gaussian draws, same look.
        noise = np.frombuffer(self.rng.bytes(3 * cfg.height * cfg.width), np.int8)
        noise = noise.reshape(3, cfg.height, cfg.width).astype(np.float32)
        channels = []
        for c in (2, 1, 0):  # BGR, as cv2 writes
            value = (self.background[c] * uncovered + warped[c]) * (light * motion.tint[c])
            value += noise[c] * (255.0 * motion.noise / 73.9) + 0.5  # int8 uniform: std 73.9
            channels.append(np.clip(value, 0.0, 255.0).astype(np.uint8))
        frame = cv2.merge(channels)
        if cfg.jpeg_quality is None:
            return frame
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(cfg.jpeg_quality)])
        if not ok:
            raise RuntimeError("JPEG encoding of a synthetic frame failed")
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def render_video(
    config: SyntheticConfig, plan: VideoPlan, identities: list[Identity]
) -> list[np.ndarray]:
    """BGR frames of one video. A fake replays its original's scene, motion, lighting and noise,
    so the two differ only where the face was swapped."""
    scene = _Scene(config, plan.identity, plan.video)
    streams = [
        _sprite_stream(config, plan, identities, person, shown, swapped_in)
        for person, (shown, swapped_in) in enumerate(plan.people)
    ]
    return [
        scene.frame([next_sprite() for next_sprite in streams], i) for i in range(config.num_frames)
    ]


def _sprite_stream(
    config: SyntheticConfig,
    plan: VideoPlan,
    identities: list[Identity],
    person: int,
    shown: int,
    swapped_in: int | None,
) -> Callable[[], np.ndarray]:
    """Interleaved sprite of one person for each next frame: fixed, or swapped frame by frame."""
    ident = identities[shown]
    if swapped_in is None:
        sprite = _interleave(_over(*_render_parts(ident, config.sprite_scale).values()))
        return lambda: sprite
    key = (plan.identity, plan.video, plan.fake or 0) + ((person,) if person else ())
    swap = _Swap(config, ident, identities[swapped_in], key)
    return lambda: _interleave(swap.next_sprite())


def _write_video(path: Path, frames: list[np.ndarray], config: SyntheticConfig) -> None:
    """Write under a temporary name, then rename: a killed run never leaves a truncated mp4."""
    tmp = path.with_name(f".{path.stem}.tmp.mp4")
    fourcc = cv2.VideoWriter_fourcc(*"mp4v")
    writer = cv2.VideoWriter(str(tmp), fourcc, float(config.fps), (config.width, config.height))
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter cannot write {tmp} with the mp4v codec")
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
    os.replace(tmp, path)


def _write_videos(
    config: SyntheticConfig, plans: list[VideoPlan], identities: list[Identity], root: str
) -> None:
    for plan in plans:
        _write_video(Path(root) / plan.name, render_video(config, plan, identities), config)


def _write_json_atomic(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def config_record(config: SyntheticConfig) -> dict:
    """The config as JSON values, without ``ADDED_FIELDS`` at their earlier value: what a
    set (and the crops made from it) depends on."""
    record = json.loads(json.dumps(asdict(config)))
    return {k: v for k, v in record.items() if k not in ADDED_FIELDS or ADDED_FIELDS[k] != v}


def generator_record(config: SyntheticConfig) -> dict:
    """What ``generator.json`` holds: enough to tell whether a folder matches a config."""
    return {"generator_version": GENERATOR_VERSION, "config": config_record(config)}


def is_current(root: str | Path, config: SyntheticConfig) -> bool:
    """True when ``root`` holds a complete dataset generated from exactly ``config``."""
    root = Path(root)
    meta, record = root / METADATA_FILE, root / GENERATOR_FILE
    if not (meta.is_file() and record.is_file()):
        return False
    try:
        return json.loads(record.read_text()) == generator_record(config)
    except json.JSONDecodeError:
        return False


def generate_dataset(
    root: str | Path, config: SyntheticConfig | None = None, workers: int = 1
) -> Path:
    """Write the dataset under ``root`` and return the path of its ``metadata.json``.

    ``metadata.json`` is deleted first and written last and every file is renamed into place
    only when complete, so an interrupted run is recognisable by the missing metadata.
    Videos of an earlier config that the new plan lacks are deleted (only files named like
    this generator's output are touched).

    Args:
        root: Output folder, created if missing.
        config: Size and difficulty; the default is the ``make train`` set.
        workers: Processes rendering identities in parallel; the output does not depend on it.
    """
    config = config or SyntheticConfig()
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    meta_path = root / METADATA_FILE
    meta_path.unlink(missing_ok=True)
    (root / GENERATOR_FILE).unlink(missing_ok=True)
    identities = draw_identities(config)
    plans = plan_videos(config, identities)
    wanted = {p.name for p in plans}
    for path in root.iterdir():
        if path.is_file() and _OWN_VIDEO.match(path.name) and path.name not in wanted:
            path.unlink()
    # One job per identity: its sprite is rendered once and reused by all of its videos.
    jobs = [[p for p in plans if p.identity == i] for i in range(config.num_identities)]
    if workers > 1:
        # spawn: safe even when the caller has started torch/OpenMP threads (fork is not);
        # one cv2 thread per worker, since the workers already fill the cores.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, context, cv2.setNumThreads, (1,)) as pool:
            n = len(jobs)
            list(pool.map(_write_videos, [config] * n, jobs, [identities] * n, [str(root)] * n))
    else:
        for job in jobs:
            _write_videos(config, job, identities, str(root))
    _write_json_atomic(root / GENERATOR_FILE, generator_record(config))
    _write_json_atomic(meta_path, dataset_metadata(config))
    return meta_path
