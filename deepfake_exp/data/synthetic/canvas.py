"""Drawing primitives of the sprite painter: shapes in nominal units, layers, compositing.

Images are planar (channel-first) premultiplied RGBA: numpy's inner loops stay long, and
layers composite with one multiply-add (``over``).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from deepfake_exp.data.synthetic.config import rng_stream
from deepfake_exp.data.synthetic.identities import NOMINAL_H, NOMINAL_W

Paint = Callable[[np.ndarray, "Pen"], None]


class Pen:
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


class Canvas:
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
        """Alpha mask from cv2 drawing calls made through a ``Pen``."""
        mask = np.zeros(self.shape, np.uint8)
        paint(mask, Pen(self.k))
        alpha = mask.astype(np.float32) / 255.0
        return cv2.GaussianBlur(alpha, (0, 0), blur * self.k) if blur > 0 else alpha

    def noise(self, key: int, sigma_x: float, sigma_y: float) -> np.ndarray:
        """Unit-variance smooth noise (hair strands, skin texture) fixed by the identity."""
        field = rng_stream(self.texture_seed, key).standard_normal(self.shape, dtype=np.float32)
        field = cv2.GaussianBlur(field, (0, 0), sigmaX=sigma_x * self.k, sigmaY=sigma_y * self.k)
        return field / (field.std() + 1e-6)


def planar(color: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """A colour as a (3, 1, 1) array, so it broadcasts over planar (3, H, W) images."""
    return np.asarray(color, np.float32).reshape(3, 1, 1)


class Layers:
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


def lambert(u: np.ndarray, v: np.ndarray, light: tuple[float, float, float]) -> np.ndarray:
    """Diffuse term of an ellipsoid at normalised coordinates (u, v)."""
    nz = np.sqrt(np.clip(1.0 - u * u - v * v, 0.02, 1.0))
    lx, ly, lz = np.asarray(light) / np.linalg.norm(light)
    return np.clip((u * lx + v * ly + nz * lz) / np.sqrt(u * u + v * v + nz * nz), 0.0, 1.0)


def over(*layers: np.ndarray) -> np.ndarray:
    """Composite planar premultiplied RGBA layers, first at the back."""
    out = layers[0]
    for top in layers[1:]:
        out = top + out * (1.0 - top[3])
    return out


def interleave(planes: np.ndarray) -> np.ndarray:
    return cv2.merge(list(planes))
