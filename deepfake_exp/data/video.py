"""Frame sampling and decoding that only decodes the frames it keeps."""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Iterator, Sequence
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


def video_seed(seed: int, video_id: str) -> int:
    """A per-video seed from ``(seed, video_id)`` for ``strategy=random``.

    One seed for all videos would draw the same frame positions in every video of a length;
    hashing the id keeps each video reproducible while videos differ from each other.
    """
    digest = hashlib.sha256(f"{seed}\0{video_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


FrameCounts = int | Sequence[int]


def _wanted(
    total: int, num_frames: FrameCounts, strategy: str, every_k: int, seed: int
) -> list[int]:
    """The union of the samples of each count in ``num_frames`` (one int: one sample)."""
    counts = [num_frames] if isinstance(num_frames, int) else list(num_frames)
    picked: set[int] = set()
    for count in counts:
        picked.update(sample_frame_indices(total, count, strategy, every_k, seed))
    return sorted(picked)


@dataclass
class DecodedFrames:
    """Sampled frames (RGB uint8) with their indices, and what was expected of the file.

    Attributes:
        indices: Frame indices of ``frames``, increasing.
        frames: The decoded frames.
        total_frames: Frames the file declares; the sample was spread over these, so
            ``sample_frame_indices(total_frames, ...)`` recovers which frames a count chose.
        expected_frames: Frames the sample asked for (``None``: as many as were decoded).
    """

    indices: list[int]
    frames: list[np.ndarray]
    total_frames: int
    expected_frames: int | None = None

    def __post_init__(self) -> None:
        if self.expected_frames is None:
            self.expected_frames = len(self.frames)

    @property
    def decoded_frames(self) -> int:
        return len(self.frames)

    @property
    def truncated(self) -> bool:
        """Fewer frames decoded than sampled: the file ends (or breaks) before it says it does."""
        return self.decoded_frames < self.expected_frames


def _check_file(path: Path) -> None:
    if not path.exists():
        raise MediaReadError("missing_file", f"{path} does not exist")
    if path.stat().st_size == 0:
        raise MediaReadError("empty_file", f"{path} is 0 bytes")


def _open_video(path: Path) -> tuple[cv2.VideoCapture, int]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise MediaReadError("unreadable_video", f"{path} could not be opened as a video")
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    if total <= 0:
        capture.release()
        raise MediaReadError("no_frames", f"{path} reports 0 frames")
    return capture, total


def _read_opencv(
    path: Path, num_frames: FrameCounts, strategy: str, every_k: int, seed: int
) -> DecodedFrames:
    """OpenCV: ``grab()`` skips the colour conversion of unwanted frames (it still decodes)."""
    capture, total = _open_video(path)
    wanted = _wanted(total, num_frames, strategy, every_k, seed)
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
    return DecodedFrames(indices, frames, total_frames=total, expected_frames=len(wanted))


def pyav_available() -> bool:
    """True when PyAV (``pip install av``) is installed: it decodes sampled frames faster."""
    return importlib.util.find_spec("av") is not None


def _packets(container, stream) -> Iterator:
    """Data packets of ``stream`` in decode order, stopping quietly where a file is cut off."""
    import av

    demuxer = container.demux(stream)
    while True:
        try:
            packet = next(demuxer)
        except StopIteration:
            return
        except av.error.FFmpegError:
            return
        if packet.size:
            yield packet


def _read_pyav(
    path: Path, num_frames: FrameCounts, strategy: str, every_k: int, seed: int
) -> DecodedFrames | None:
    """PyAV: only reference frames and the sampled frames are decoded at all.

    ``grab()`` decodes every frame; here each packet is sent with ``skip_frame=NONREF`` unless
    it holds a sampled frame, so the decoder skips the non-reference (most B-) frames nobody
    needs, and only sampled frames are converted to RGB. Frame indices are ranks of the
    presentation timestamps (read in a first, decode-free pass), i.e. the order OpenCV counts
    in; files whose packets lack timestamps return ``None`` (use OpenCV). A file cut off
    before the frame count its header declares is sampled over the declared count, as OpenCV
    does, so the sampled frames past the cut are missing and the result says ``truncated``.
    """
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaReadError("unreadable_video", f"{path} has no video stream")
            declared = container.streams.video[0].frames or 0
            stamps = [p.pts for p in _packets(container, container.streams.video[0])]
    except av.error.FFmpegError as error:
        raise MediaReadError("unreadable_video", f"{path} could not be opened: {error}") from error
    if any(pts is None for pts in stamps):
        return None
    stamps = sorted(set(stamps))
    if not stamps:
        raise MediaReadError("no_frames", f"{path} holds no video frames")
    total = max(declared, len(stamps))
    wanted = _wanted(total, num_frames, strategy, every_k, seed)
    index_of = {stamps[i]: i for i in wanted if i < len(stamps)}
    frames: dict[int, np.ndarray] = {}

    def collect(codec, packet) -> None:
        try:
            decoded = codec.decode(packet)
        except av.error.FFmpegError:
            return  # a corrupt packet: OpenCV skips it too
        for frame in decoded:
            index = index_of.get(frame.pts)
            if index is not None and index not in frames:
                rgb = frame.to_ndarray(format="rgb24")
                turns = round((frame.rotation or 0) / 90) % 4  # phone videos: as OpenCV shows them
                frames[index] = np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            codec = stream.codec_context
            for packet in _packets(container, stream):
                codec.skip_frame = "DEFAULT" if packet.pts in index_of else "NONREF"
                collect(codec, packet)
                if len(frames) == len(index_of):
                    break
            else:
                codec.skip_frame = "DEFAULT"
                collect(codec, None)  # drain the frames still inside the decoder
    except av.error.FFmpegError as error:
        raise MediaReadError("decode_error", f"{path}: {error}") from error
    indices = sorted(frames)
    return DecodedFrames(indices, [frames[i] for i in indices], total, expected_frames=len(wanted))


def read_video_frames(
    path: str | Path,
    num_frames: FrameCounts,
    strategy: str = "even",
    every_k: int = 1,
    seed: int = 0,
    backend: str = "auto",
) -> DecodedFrames:
    """Decode only the sampled frames (RGB uint8), in increasing frame order.

    Args:
        path: Video file.
        num_frames: Frames to sample (see ``sample_frame_indices``), or several counts:
            the union of their samples is decoded (extraction's eval and train samples).
        strategy: ``even``, ``every_k`` or ``random``.
        every_k: Step for ``every_k``.
        seed: Seed for ``random`` (per video: ``video_seed(seed, video_id)``).
        backend: ``pyav`` (fastest: skips decoding unneeded non-reference frames), ``opencv``
            (``grab``/``retrieve``), or ``auto``: PyAV when installed, else OpenCV. Both
            return the same frames and indices.

    Returns:
        The decoded frames; ``truncated`` when the file ended before some sampled frames
        (those are left out, the rest are returned).

    Raises:
        MediaReadError: missing/empty/unreadable files, 0-frame videos, or a video that
            ends before any sampled frame could be decoded.
    """
    if backend not in {"auto", "pyav", "opencv"}:
        raise ValueError(f"unknown video backend {backend!r}: use auto, pyav or opencv")
    path = Path(path)
    _check_file(path)
    decoded = None
    if backend == "pyav" or (backend == "auto" and pyav_available()):
        decoded = _read_pyav(path, num_frames, strategy, every_k, seed)
    if decoded is None:
        decoded = _read_opencv(path, num_frames, strategy, every_k, seed)
    if not decoded.frames:
        raise MediaReadError("undecodable_video", f"{path}: no frame could be decoded")
    return decoded


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
    _check_file(path)
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise MediaReadError("unreadable_image", f"{path} could not be decoded as an image")
    return DecodedFrames(indices=[0], frames=[to_rgb_uint8(image)], total_frames=1)


def read_media(
    path: str | Path,
    num_frames: FrameCounts,
    strategy: str = "even",
    every_k: int = 1,
    seed: int = 0,
) -> DecodedFrames:
    """Sampled frames of a video, or the single frame of an image, chosen by extension."""
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return read_video_frames(path, num_frames, strategy, every_k, seed)
    if suffix in IMAGE_EXTENSIONS:
        return read_image(path)
    raise MediaReadError(
        "unsupported_type", f"{path}: extension {suffix!r} is not a video or image"
    )
