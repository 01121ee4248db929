"""What every benchmark section shares: Hydra composition, synthetic faces with known boxes,
a faces folder made the way preprocessing makes one, and timing helpers.

Configs are composed, never read from ``conf/`` by file path. Inside ``python -m
deepfake_exp.bench`` Hydra is already initialised on the app's config path, so
:func:`compose` uses that search path (whatever an installed package or ``--config-dir``
gives it); called from a test or a notebook it initialises Hydra on the same ``conf/`` the
entrypoints name (``config_path="../conf"`` relative to ``deepfake_exp/``, here one level
deeper). Should ``conf/`` become a package (``deepfake_exp.conf``), :data:`CONFIG_PATH` is
the one line to change, to ``initialize_config_module``.

Faces are the embedded synthetic generator's identities pasted into its rooms, so the true
face box is known for every frame and nothing is downloaded: ``face_frames`` for detectors,
``face_crops`` for augmentation and data loading, ``BenchVideo`` (extraction) for clips.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from hydra import compose as hydra_compose
from hydra import initialize
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import deepfake_exp.config  # noqa: F401  (registers the schemas the primary configs list)
from deepfake_exp.data import synthetic
from deepfake_exp.data.records import MediaRecord
from deepfake_exp.faces.detectors import MTCNNDetector, WholeImageDetector
from deepfake_exp.preprocessing.merge import merge_parts
from deepfake_exp.preprocessing.runner import FaceExtractor
from deepfake_exp.preprocessing.settings import ExtractionConfig

#: ``conf/`` relative to this file, as the entrypoints' ``config_path="../conf"``.
CONFIG_PATH = "../../conf"
#: A detection is "the face" when it overlaps the drawn face this much.
FOUND_IOU = 0.5

Box = tuple[float, float, float, float]


# --------------------------------------------------------------------------------------------
# Hydra composition
# --------------------------------------------------------------------------------------------


@contextmanager
def _hydra() -> Iterator[None]:
    """Hydra's config loader: the running app's, or one initialised on :data:`CONFIG_PATH`."""
    if GlobalHydra.instance().is_initialized():
        yield
        return
    with initialize(version_base="1.3", config_path=CONFIG_PATH, job_name="bench"):
        yield


def compose(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """``config_name`` (``train``, ``preprocess``, ``bench``, ...) composed with ``overrides``."""
    with _hydra():
        return hydra_compose(config_name, overrides=list(overrides))


def group_options(group: str) -> list[str]:
    """The options of a config group (``augmentation`` -> ``basic``, ``dfdc``, ...), sorted."""
    with _hydra():
        return sorted(GlobalHydra.instance().config_loader().get_group_options(group))


def section_frame(function: Callable[..., list[dict]], cfg: DictConfig | None) -> pd.DataFrame:
    """Run a benchmark function with a section's config block as keyword arguments."""
    options = OmegaConf.to_container(cfg, resolve=True) if cfg is not None else {}
    return pd.DataFrame(function(**options))


def config_detector(**overrides: Any) -> MTCNNDetector:
    """``MTCNNDetector`` exactly as ``detector=mtcnn`` builds it, ``overrides`` on top."""
    detector = compose("preprocess", ["detector=mtcnn"]).detector
    return instantiate(OmegaConf.merge(detector, overrides))


def default_data_dir() -> Path:
    """``paths.data_dir`` as the configs resolve it (``DEEPFAKE_EXP_ROOT``, ``conf/local``)."""
    return Path(compose("bench").paths.data_dir)


# --------------------------------------------------------------------------------------------
# Synthetic faces with known boxes
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def face_sprite(index: int, seed: int, scale: int = 2) -> tuple[np.ndarray, Box]:
    """RGBA sprite of synthetic identity ``index`` and the box of its face in sprite pixels.

    The box bounds the sprite's ``face`` layer (skin, brows, eyes, nose, mouth): what a face
    detector should return, whatever the hair, ears and shoulders around it.
    """
    ident = synthetic.draw_identity(index, seed)
    sprite = synthetic.render_identity(ident, scale)
    alpha = synthetic.render_identity(ident, scale, part="face")[..., 3]
    ys, xs = np.nonzero(alpha > 0.5)
    sprite.setflags(write=False)
    return sprite, (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def face_box(sprite_box: Box, centre: tuple[float, float], face_px: float) -> Box:
    """Where ``paste_face`` puts the face: ``face_px`` tall, centred on ``centre``."""
    x1, y1, x2, y2 = sprite_box
    half_w, half_h = face_px * (x2 - x1) / (y2 - y1) / 2.0, face_px / 2.0
    return (centre[0] - half_w, centre[1] - half_h, centre[0] + half_w, centre[1] + half_h)


def paste_face(
    frame: np.ndarray,
    sprite: np.ndarray,
    sprite_box: Box,
    centre: tuple[float, float],
    face_px: float,
) -> tuple[np.ndarray, Box]:
    """Composite ``sprite`` over an RGB uint8 frame so its face is ``face_px`` tall at ``centre``.

    Returns:
        A new frame and the face's box ``(x1, y1, x2, y2)`` in frame pixels.
    """
    x1, y1, x2, y2 = sprite_box
    zoom = face_px / (y2 - y1)
    sx, sy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    matrix = np.array([[zoom, 0.0, centre[0] - zoom * sx], [0.0, zoom, centre[1] - zoom * sy]])
    height, width = frame.shape[:2]
    # Warp only into the sprite's footprint: a 1080p frame is ~30x the face's area.
    sprite_h, sprite_w = sprite.shape[:2]
    left, top = int(max(math.floor(matrix[0, 2]), 0)), int(max(math.floor(matrix[1, 2]), 0))
    right = int(min(math.ceil(matrix[0, 2] + zoom * sprite_w), width))
    bottom = int(min(math.ceil(matrix[1, 2] + zoom * sprite_h), height))
    out = frame.copy()
    if right > left and bottom > top:
        matrix[:, 2] -= (left, top)
        warped = cv2.warpAffine(
            sprite, matrix, (right - left, bottom - top), flags=cv2.INTER_LINEAR
        )
        alpha = warped[..., 3:4]
        region = out[top:bottom, left:right].astype(np.float32) * (1.0 - alpha)
        region += warped[..., :3] * (255.0 * alpha) + 0.5
        out[top:bottom, left:right] = np.clip(region, 0, 255).astype(np.uint8)
    return out, face_box(sprite_box, centre, face_px)


@lru_cache(maxsize=8)
def background(width: int, height: int, index: int, seed: int) -> np.ndarray:
    """A cluttered room (the synthetic generator's) as a read-only RGB uint8 frame."""
    config = synthetic.SyntheticConfig(width=width, height=height, seed=seed)
    frame = (synthetic.render_background(config, index, 0) * 255.0 + 0.5).astype(np.uint8)
    frame.setflags(write=False)
    return frame


def face_frames(
    width: int, height: int, count: int, seed: int = 0, face_px: tuple[float, float] = (150, 300)
) -> list[tuple[np.ndarray, Box]]:
    """``count`` distinct frames (identity, room, face size and place) with their face boxes."""
    rng = np.random.default_rng([seed, width, height])
    frames = []
    for i in range(count):
        sprite, sprite_box = face_sprite(i % 6, seed)  # six identities: every skin-tone bucket
        size = float(rng.uniform(*face_px)) * min(1.0, height / 540)
        margin = 0.8 * size
        centre = (
            float(rng.uniform(margin, width - margin)),
            float(rng.uniform(margin, height - margin)),
        )
        frames.append(
            paste_face(background(width, height, i % 4, seed), sprite, sprite_box, centre, size)
        )
    return frames


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes."""
    inter_w = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    inter_h = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def room(size: int, index: int, seed: int) -> np.ndarray:
    """A square ``size`` px room; rendered at 64 px at least (the generator's smallest)."""
    side = max(64, size + size % 2)
    frame = background(side, side, index, seed)
    return frame if side == size else cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)


def face_crops(count: int, size: int, seed: int = 0, margin: float = 0.5) -> list[np.ndarray]:
    """``count`` square RGB face crops of ``size`` px, framed as preprocessing crops them.

    The face fills ``1 / (1 + margin)`` of the side (``extraction.margin``) over a room, with
    mild sensor noise: crops that cost what real ones cost to encode, decode and augment.
    """
    rng = np.random.default_rng([seed, size])
    scale = 1 if size <= 256 else 2  # the sprite's face is ~150 px per scale unit: no upsampling
    crops = []
    for i in range(count):
        sprite, sprite_box = face_sprite(i % 6, seed, scale)
        face_px = size / (1.0 + margin) * float(rng.uniform(0.9, 1.1))
        centre = tuple(size / 2.0 + float(rng.uniform(-0.04, 0.04)) * size for _ in range(2))
        crop, _ = paste_face(room(size, i % 4, seed), sprite, sprite_box, centre, face_px)
        noise = rng.integers(-5, 6, crop.shape, dtype=np.int16)
        crops.append(np.clip(crop + noise, 0, 255).astype(np.uint8))
    return crops


def write_face_folder(
    out_dir: Path, images: Sequence[np.ndarray], labels: Sequence[int] | None = None
) -> Path:
    """A faces folder (crops + ``manifest.csv``) made the way ``preprocess`` makes one.

    ``images`` are written as an image folder and run through the project's own extraction
    (``FaceExtractor`` with ``detector=none``, as for crop datasets) and ``merge_parts``, all
    in split ``train``; the benchmark never writes a manifest itself.
    """
    out_dir = Path(out_dir)
    source = out_dir / "images"
    source.mkdir(parents=True, exist_ok=True)
    labels = list(labels) if labels is not None else [i % 2 for i in range(len(images))]
    records = []
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = source / f"{index:05d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        video_id = f"bench_{index:05d}"
        records.append(MediaRecord(video_id, str(path), int(label), video_id, split="train"))
    config = ExtractionConfig(crop_size=int(images[0].shape[0]), margin=0.0, num_workers=1)
    FaceExtractor(WholeImageDetector(), out_dir, config, source).run(records, progress=False)
    merge_parts(out_dir, records)
    return out_dir


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


def timed(function: Callable[[], object]) -> tuple[float, object]:
    """Wall-clock seconds of ``function()`` and its result."""
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


@dataclass
class Timing:
    """Wall and CPU seconds (CPU: this process, all threads) of repeated runs of one method."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def run(self, function: Callable[[], object]) -> object:
        cpu = time.process_time()
        seconds, result = timed(function)
        self.wall.append(seconds)
        self.cpu.append(time.process_time() - cpu)
        return result


def load_average() -> float:
    """The 1-minute load average, printed beside every timing (a busy machine shows)."""
    return round(os.getloadavg()[0], 1)


def parse_size(text: str) -> tuple[int, int]:
    """``"1920x1080"`` -> ``(1920, 1080)``."""
    width, height = (int(v) for v in str(text).lower().split("x"))
    return width, height


def found_share(found: Sequence[Box | None], truth: Sequence[Box]) -> float:
    """Share of frames whose returned face is the drawn face (IoU >= ``FOUND_IOU``)."""
    hits = [
        box is not None and iou(box, true) >= FOUND_IOU
        for box, true in zip(found, truth, strict=True)
    ]
    return float(np.mean(hits)) if hits else float("nan")
