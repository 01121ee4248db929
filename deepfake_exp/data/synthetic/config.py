"""What a synthetic set is made from: its config, and the seeded random streams.

Every random choice of the generator draws from ``rng_stream(seed, purpose, index...)``, an
independent stream per purpose, so adding a draw somewhere never shifts any other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GENERATOR_VERSION = 2  # bump when a config's output changes, so stored sets regenerate


SWAP_PEOPLE = ("one", "all")  # which faces of a two-person fake are swapped
# Names of the manipulation methods; swap.METHODS gives each its style (a test keeps the two
# equal). Here, not there, so the config validates without importing the swap code.
METHOD_NAMES = ("blend", "hard_paste", "colour_shift", "soft_face", "box_mask")
# Fields added after GENERATOR_VERSION 2 with the value that reproduces the earlier output;
# generator.json leaves them out at that value, so sets stored before them stay current.
ADDED_FIELDS: dict[str, object] = {
    "people_per_video": 1,
    "swap_people": "one",
    "generator_methods": ["blend"],
    "official_split": None,
}


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
        generator_methods: Named manipulation methods (:data:`METHOD_NAMES`: ``blend``,
            ``hard_paste``, ``colour_shift``, ``soft_face``, ``box_mask``), each leaving its
            own trace; every REAL video gets ``fakes_per_real`` fakes per method, as every
            FaceForensics++ original has one fake per method.
        official_split: ``(train, val, test)`` ratios of swap pools listed in each split of
            ``metadata.json`` (as FaceForensics++'s official pair lists), or ``None``: every
            video says ``train``, as in DFDC's training parts.
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
    generator_methods: tuple[str, ...] = ("blend",)
    official_split: tuple[float, float, float] | None = None

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
        methods = self.generator_methods
        if not methods or len(set(methods)) < len(methods) or not set(methods) <= set(METHOD_NAMES):
            fail("generator_methods", f"must name distinct methods of {sorted(METHOD_NAMES)}")
        split = self.official_split
        if split is not None and (len(split) != 3 or min(split) < 0 or sum(split) <= 0):
            fail("official_split", "must be 3 non-negative ratios (train, val, test) or None")
        if self.people_per_video == 2 and self.num_identities < 2:
            fail("num_identities", "must be >= 2 when people_per_video is 2 (a companion)")

    @property
    def sprite_scale(self) -> int:
        """Sprite pixels per nominal unit: large frames get a sharper sprite, not an upscaled one."""
        return int(np.clip(math.ceil(min(self.width, self.height) / 400), 1, 4))


def rng_stream(seed: int, *keys: int) -> np.random.Generator:
    """An independent stream per (seed, purpose, index...), so adding draws never shifts others."""
    return np.random.default_rng([seed, *keys])
