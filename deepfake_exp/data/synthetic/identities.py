"""The people of a synthetic set: palettes, skin-tone buckets and each identity's looks.

Lengths are nominal sprite units (a 256x320 sprite, face centre ``CX, CY``), so an identity
is the same at any rendering scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepfake_exp.data.synthetic.config import SyntheticConfig, rng_stream

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


def skin_tone_buckets() -> list[str]:
    """Skin-tone bucket names, light to dark: the keys of per-bucket detection reports."""
    return list(SKIN_TONES)


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
    rng = rng_stream(seed, 1, index)
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
