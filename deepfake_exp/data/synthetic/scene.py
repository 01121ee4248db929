"""Scenes: the room, each person's head motion, the lighting, sensor noise and compression.

A REAL video's scene is drawn from its own seeded streams and its fakes replay it exactly,
so a fake differs from its original only where a face was swapped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from deepfake_exp.data.synthetic.config import SyntheticConfig, rng_stream
from deepfake_exp.data.synthetic.identities import CX, CY, FACE_HEIGHT, draw_identity


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
    return int(rng_stream(config.seed, 7, identity, video).integers(2))


def draw_motion(config: SyntheticConfig, identity: int, video: int, person: int = 0) -> Motion:
    """Pose, motion and lighting of a person of REAL video ``video`` of identity ``identity``.

    Faces span 36-50% of the frame height (26-40% for each of two people) and move by a
    few percent with a few degrees of roll, so a detector sees varied but always frontal
    faces. ``person`` 0 is the target (whose motion also sets the scene's lighting), 1 the
    companion of a two-person video, standing in the other half of the frame.
    """
    key = (identity, video) if person == 0 else (identity, video, person)
    rng = rng_stream(config.seed, 2, *key)
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
    rng = rng_stream(config.seed, 3, identity, video)
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


class Scene:
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
        self.rng = rng_stream(config.seed, 6, identity, video)
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
