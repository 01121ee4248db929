"""Frame sampling and decoding that only decodes the frames it keeps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from deepfake_exp.data.records import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS


class MediaReadError(Exception):
    """A file could not be read; ``reason`` is a short machine-friendly tag for failures.csv."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def sample_frame_indices(
    total_frames: int,
    num_frames: int,
    strategy: str = "even",
    every_k: int = 1,
    seed: int = 0,
) -> list[int]:
    """Indices of the frames to keep.

    ``even`` spreads ``num_frames`` over the whole video with ``linspace`` (not the first N);
    ``every_k`` keeps every k-th frame (at most ``num_frames`` if positive); ``random`` draws
    ``num_frames`` frames fixed by ``seed`` (the Emory study used one random frame per video).
    Short videos give fewer indices, never duplicates.
    """
    if total_frames <= 0:
        return []
    if strategy == "even":
        n = min(num_frames, total_frames)
        return sorted({int(round(i)) for i in np.linspace(0, total_frames - 1, n)})
    if strategy == "every_k":
        indices = list(range(0, total_frames, max(every_k, 1)))
        return indices[:num_frames] if num_frames > 0 else indices
    if strategy == "random":
        rng = np.random.default_rng(seed)
        n = min(num_frames, total_frames)
        return sorted(int(i) for i in rng.choice(total_frames, size=n, replace=False))
    raise ValueError(f"unknown frame sampling strategy {strategy!r}: use even, every_k or random")


@dataclass
class DecodedFrames:
    """Frames (RGB uint8) with their indices and the video's frame count."""

    indices: list[int]
    frames: list[np.ndarray]
    total_frames: int


def _open_video(path: Path) -> tuple[cv2.VideoCapture, int]:
    if not path.exists():
        raise MediaReadError("missing_file", f"{path} does not exist")
    if path.stat().st_size == 0:
        raise MediaReadError("empty_file", f"{path} is 0 bytes")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise MediaReadError("unreadable_video", f"{path} could not be opened as a video")
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    if total <= 0:
        capture.release()
        raise MediaReadError("no_frames", f"{path} reports 0 frames")
    return capture, total


def read_video_frames(
    path: str | Path,
    num_frames: int,
    strategy: str = "even",
    every_k: int = 1,
    seed: int = 0,
) -> DecodedFrames:
    """Decode only the sampled frames: ``grab()`` skips, ``retrieve()`` only what is kept.

    Raises:
        MediaReadError: missing/empty/unreadable files, 0-frame videos, or a video that
            ends before any sampled frame could be decoded.
    """
    path = Path(path)
    capture, total = _open_video(path)
    wanted = sample_frame_indices(total, num_frames, strategy, every_k, seed)
    wanted_set = set(wanted)
    indices, frames = [], []
    try:
        for index in range(wanted[-1] + 1):
            if not capture.grab():
                break
            if index in wanted_set:
                ok, frame = capture.retrieve()
                if ok and frame is not None:
                    indices.append(index)
                    frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    if not frames:
        raise MediaReadError("undecodable_video", f"{path}: no frame could be decoded")
    return DecodedFrames(indices=indices, frames=frames, total_frames=total)


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Normalise grayscale, RGBA and 16-bit images (as cv2 reads them, BGR) to RGB uint8."""
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image(path: str | Path) -> DecodedFrames:
    """An image as a one-frame ``DecodedFrames`` so images and videos share one pipeline."""
    path = Path(path)
    if not path.exists():
        raise MediaReadError("missing_file", f"{path} does not exist")
    if path.stat().st_size == 0:
        raise MediaReadError("empty_file", f"{path} is 0 bytes")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise MediaReadError("unreadable_image", f"{path} could not be decoded as an image")
    return DecodedFrames(indices=[0], frames=[to_rgb_uint8(image)], total_frames=1)


def read_media(
    path: str | Path, num_frames: int, strategy: str = "even", every_k: int = 1, seed: int = 0
) -> DecodedFrames:
    """Sampled frames of a video, or the single frame of an image, chosen by extension."""
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return read_video_frames(path, num_frames, strategy, every_k, seed)
    if suffix in IMAGE_EXTENSIONS:
        return read_image(path)
    raise MediaReadError("unsupported_type", f"{path}: extension {suffix!r} is not a video or image")
