"""Frame sampling, decoding only what is needed, crop geometry, box mapping, detector traps."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from deepfake_exp.data.video import (
    MediaReadError,
    pyav_available,
    read_image,
    read_media,
    read_video_frames,
    sample_frame_indices,
    video_seed,
)
from deepfake_exp.faces.crop import crop_face, square_box_with_margin
from deepfake_exp.faces.detectors import Detection, WholeImageDetector, select_faces


def write_counter_video(path: Path, frames: int, size=(64, 48)) -> Path:
    """Each frame's brightness encodes its index, so decoded frames can be identified."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), i * 8, np.uint8))
    writer.release()
    return path


_CONTAINER_ATOMS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


def _atoms(data: bytes | bytearray, start: int, end: int):
    while start < end:
        size, kind = struct.unpack(">I4s", data[start : start + 8])
        yield kind, start, size
        start += size


def write_truncated_video(path: Path, frames: int, keep: float = 2 / 3) -> Path:
    """A cv2 mp4 whose header (``moov``) is moved to the front, cut to ``keep`` of its bytes.

    cv2 writes the header last, so cutting its file loses the header and nothing decodes; with
    the header first (as streamed/"faststart" files have it) the file declares ``frames``
    frames but the data ends early: the truncated video that still decodes some frames.
    """
    data = bytearray(write_counter_video(path, frames).read_bytes())
    top = {kind: (at, size) for kind, at, size in _atoms(data, 0, len(data))}
    at, size = top[b"moov"]
    moov = bytearray(data[at : at + size])

    def shift_chunk_offsets(start: int, end: int) -> None:
        for kind, pos, length in _atoms(moov, start, end):
            if kind in _CONTAINER_ATOMS:
                shift_chunk_offsets(pos + 8, pos + length)
            elif kind == b"stco":  # chunk offsets into mdat, which moves back by len(moov)
                (count,) = struct.unpack(">I", moov[pos + 12 : pos + 16])
                for q in range(pos + 16, pos + 16 + 4 * count, 4):
                    moov[q : q + 4] = struct.pack(
                        ">I", struct.unpack(">I", moov[q : q + 4])[0] + size
                    )

    shift_chunk_offsets(8, size)
    ftyp_at, ftyp_size = top[b"ftyp"]
    head = data[ftyp_at : ftyp_at + ftyp_size]
    whole = bytes(head + moov + data[ftyp_at + ftyp_size : at] + data[at + size :])
    path.write_bytes(whole[: int(len(whole) * keep)])
    return path


BACKENDS = ["opencv", *(["pyav"] if pyav_available() else [])]


def test_even_sampling_spans_the_whole_video() -> None:
    indices = sample_frame_indices(300, 32, "even")
    assert len(indices) == 32 and indices[0] == 0 and indices[-1] == 299
    assert np.all(np.diff(indices) > 0)


def test_every_k_and_random_sampling() -> None:
    assert sample_frame_indices(10, 0, "every_k", every_k=3) == [0, 3, 6, 9]
    assert sample_frame_indices(10, 2, "every_k", every_k=3) == [0, 3]
    one = sample_frame_indices(100, 1, "random", seed=7)
    assert one == sample_frame_indices(100, 1, "random", seed=7) and 0 <= one[0] < 100


def test_random_sampling_is_seeded_per_video() -> None:
    """One seed for all videos drew the same frames in every video of a length."""
    first, second = video_seed(0, "a.mp4"), video_seed(0, "b.mp4")
    assert sample_frame_indices(300, 8, "random", seed=first) != sample_frame_indices(
        300, 8, "random", seed=second
    )
    assert video_seed(0, "a.mp4") == first and video_seed(1, "a.mp4") != first
    assert sample_frame_indices(300, 8, "random", seed=first) == sample_frame_indices(
        300, 8, "random", seed=video_seed(0, "a.mp4")
    )


def test_short_videos_give_fewer_frames_without_duplicates() -> None:
    assert sample_frame_indices(5, 32, "even") == [0, 1, 2, 3, 4]
    assert sample_frame_indices(0, 8) == []
    with pytest.raises(ValueError, match="strategy"):
        sample_frame_indices(10, 2, "middle")


def test_decodes_exactly_the_sampled_frames(tmp_path: Path) -> None:
    video = write_counter_video(tmp_path / "v.mp4", 20)
    decoded = read_video_frames(video, 4)
    assert decoded.indices == sample_frame_indices(20, 4) and decoded.total_frames == 20
    brightness = [int(f.mean()) for f in decoded.frames]
    assert all(abs(b - i * 8) <= 3 for b, i in zip(brightness, decoded.indices, strict=True))


@pytest.mark.parametrize("backend", BACKENDS)
def test_several_counts_decode_the_union_of_their_samples(tmp_path: Path, backend: str) -> None:
    video = write_counter_video(tmp_path / "v.mp4", 20)
    decoded = read_video_frames(video, [4, 7], backend=backend)
    union = sorted(set(sample_frame_indices(20, 4)) | set(sample_frame_indices(20, 7)))
    assert decoded.indices == union and decoded.expected_frames == len(union)
    assert not decoded.truncated


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_video_reports_decoded_vs_expected_frames(tmp_path: Path, backend: str) -> None:
    whole = read_video_frames(write_truncated_video(tmp_path / "w.mp4", 30, keep=1.0), 8)
    assert not whole.truncated and whole.decoded_frames == whole.expected_frames == 8
    decoded = read_video_frames(write_truncated_video(tmp_path / "t.mp4", 30), 8, backend=backend)
    assert decoded.truncated and decoded.total_frames == 30 and decoded.expected_frames == 8
    assert 0 < decoded.decoded_frames < 8
    assert (
        decoded.indices == sample_frame_indices(30, 8)[: decoded.decoded_frames]
    )  # the first ones
    brightness = [int(f.mean()) for f in decoded.frames]  # sampled frames are >= 4 apart
    assert all(abs(b - i * 8) <= 5 for b, i in zip(brightness, decoded.indices, strict=True))


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "empty_file"), (b"this is not a video at all" * 10, "unreadable_video")],
)
def test_bad_videos_raise_with_reason(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(MediaReadError) as error:
        read_video_frames(path, 4)
    assert error.value.reason == reason


def test_truncated_video_fails_or_returns_only_real_frames(tmp_path: Path) -> None:
    video = write_counter_video(tmp_path / "v.mp4", 30)
    data = video.read_bytes()
    truncated = tmp_path / "t.mp4"
    truncated.write_bytes(data[: len(data) // 3])
    try:
        decoded = read_video_frames(truncated, 8)
    except MediaReadError as error:
        assert error.reason in {"unreadable_video", "no_frames", "undecodable_video"}
    else:
        assert 0 < len(decoded.frames) <= 8


def test_images_of_any_depth_become_rgb_uint8(tmp_path: Path) -> None:
    gray = tmp_path / "g.png"
    cv2.imwrite(str(gray), np.full((10, 12), 200, np.uint8))
    rgba = tmp_path / "a.png"
    cv2.imwrite(str(rgba), np.full((10, 12, 4), 100, np.uint8))
    deep = tmp_path / "d.png"
    cv2.imwrite(str(deep), np.full((10, 12, 3), 65535, np.uint16))
    for path in (gray, rgba, deep):
        frame = read_image(path).frames[0]
        assert frame.shape == (10, 12, 3) and frame.dtype == np.uint8
    assert read_image(deep).frames[0].max() == 255
    with pytest.raises(MediaReadError, match="unsupported_type"):
        read_media(tmp_path / "notes.txt", 1)


def test_square_margin_box_is_centred_and_sized() -> None:
    x1, y1, x2, y2 = square_box_with_margin((40, 30, 60, 60), 0.5, 200, 200)
    assert x2 - x1 == y2 - y1 == 45
    assert abs((x1 + x2) / 2 - 50) <= 1 and abs((y1 + y2) / 2 - 45) <= 1


@pytest.mark.parametrize("box", [(0, 0, 30, 30), (90, 70, 120, 100), (-5, -5, 10, 10)])
def test_margin_box_stays_inside_at_borders(box) -> None:
    x1, y1, x2, y2 = square_box_with_margin(box, 0.7, 120, 100)
    assert 0 <= x1 < x2 <= 120 and 0 <= y1 < y2 <= 100 and x2 - x1 == y2 - y1


def test_margin_box_larger_than_frame_is_shrunk_to_fit() -> None:
    x1, y1, x2, y2 = square_box_with_margin((0, 0, 90, 90), 1.0, 100, 60)
    assert (x2 - x1, y2 - y1) == (60, 60) and y1 == 0


def test_crop_face_returns_requested_size_and_content() -> None:
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[40:60, 40:60] = 255
    crop = crop_face(frame, (40, 40, 60, 60), margin=0.0, size=32)
    assert crop.shape == (32, 32, 3) and crop.mean() > 250


def test_select_faces_policies() -> None:
    small = Detection((0, 0, 10, 10), 0.99)
    big = Detection((0, 0, 50, 50), 0.95)
    mid = Detection((0, 0, 20, 20), 0.97)
    assert select_faces([small, big, mid], "largest", 2) == [big]
    assert select_faces([small, big, mid], "top_k", 2) == [big, mid]
    assert len(select_faces([small, big, mid], "all", 2)) == 3
    with pytest.raises(ValueError):
        select_faces([], "biggest", 1)


def test_whole_image_detector_returns_full_frame_boxes() -> None:
    found = WholeImageDetector().detect([np.zeros((30, 40, 3), np.uint8)])
    assert found[0][0].box == (0.0, 0.0, 40.0, 30.0)
