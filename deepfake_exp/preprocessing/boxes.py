"""Box reuse: detect faces once per original video and crop its fakes with the same boxes.

A face swap replaces pixels inside the face and keeps the geometry frame by frame, so a
fake's faces sit where its original's are. DFDC is ~83% fakes made from ~19k originals:
detecting only the originals cuts face detection about sixfold. A fake is cropped at its
original's boxes when its record names an ``original`` that is listed too, both decode to
the same frame count and frame size, and the original has a face; otherwise it is detected
itself and the manifest's ``box_fallback`` says why.

The original's boxes are written atomically to ``parts/boxes/<original>.json`` with the
original's stamp, so a resumed run, or a shard that holds a fake but not (any more) the
original's detection, reads them instead of detecting again; and ``shard_key`` keeps an
original and its fakes in one shard so no two shards detect the same original.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepfake_exp.data.records import MediaRecord
from deepfake_exp.data.video import DecodedFrames
from deepfake_exp.faces.detectors import Detection
from deepfake_exp.preprocessing.parts import safe_name
from deepfake_exp.utils.io import write_json

BOXES_DIR = "boxes"  # under parts/
OWN, ORIGINAL = "own", "original"  # manifest column box_source
# Reasons a fake whose record names an original is detected itself (column box_fallback).
ORIGINAL_MISSING = "original_missing"  # not listed, or its file is missing
ORIGINAL_FAILED = "original_failed"  # listed, but it could not be decoded
ORIGINAL_NO_FACE = "original_no_face"
FRAME_COUNT_MISMATCH = "frame_count_mismatch"
FRAME_SIZE_MISMATCH = "frame_size_mismatch"
FRAMES_NOT_COVERED = "frames_not_covered"  # a sampled frame the original was not detected on
_MISSING_REASONS = frozenset({"missing_file", "outside_root"})


@dataclass
class OriginalBoxes:
    """An original's detections at its sampled frames, or why it has none.

    Args:
        video_id: The original's ``video_id``.
        stamp: The original's part stamp (settings, source file, label) they were made with.
        total_frames: Frame count the original declares.
        frame_size: ``(height, width)`` of its frames.
        boxes: Frame index -> detections kept by the detector.
        failure: Fallback reason when the original gave no boxes (``ORIGINAL_FAILED``...).
    """

    video_id: str
    stamp: dict[str, Any]
    total_frames: int | None = None
    frame_size: tuple[int, int] | None = None
    boxes: dict[int, list[Detection]] = field(default_factory=dict)
    failure: str = ""

    @classmethod
    def detected(
        cls,
        video_id: str,
        stamp: Mapping[str, Any],
        decoded: DecodedFrames,
        detections: Sequence[list[Detection]],
    ) -> OriginalBoxes:
        """The boxes of a decoded original and its detections (one list per decoded frame)."""
        height, width = decoded.frames[0].shape[:2] if decoded.frames else (0, 0)
        boxes = dict(zip(decoded.indices, detections, strict=True))
        return cls(video_id, dict(stamp), decoded.total_frames, (height, width), boxes)

    @classmethod
    def failed(cls, video_id: str, stamp: Mapping[str, Any], reason: str) -> OriginalBoxes:
        """No boxes: the original's decode failed with ``reason`` (see ``validate_record``)."""
        why = ORIGINAL_MISSING if reason in _MISSING_REASONS else ORIGINAL_FAILED
        return cls(video_id, dict(stamp), failure=why)

    def to_json(self) -> dict[str, Any]:
        return {
            "video_id": self.video_id,
            "stamp": self.stamp,
            "total_frames": self.total_frames,
            "frame_size": list(self.frame_size) if self.frame_size else None,
            "boxes": {
                str(index): [[*d.box, d.prob] for d in found] for index, found in self.boxes.items()
            },
            "failure": self.failure,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OriginalBoxes:
        boxes = {
            int(index): [Detection(box=tuple(row[:4]), prob=row[4]) for row in found]
            for index, found in data["boxes"].items()
        }
        size = data.get("frame_size")
        return cls(
            data["video_id"],
            data["stamp"],
            data.get("total_frames"),
            tuple(size) if size else None,
            boxes,
            data.get("failure", ""),
        )

    def refusal(self, decoded: DecodedFrames) -> str:
        """Why a fake decoded as ``decoded`` cannot take these boxes (``""``: it can)."""
        if self.failure:
            return self.failure
        if not any(self.boxes.values()):
            return ORIGINAL_NO_FACE
        if decoded.total_frames != self.total_frames:
            return FRAME_COUNT_MISMATCH
        if any(tuple(frame.shape[:2]) != self.frame_size for frame in decoded.frames):
            return FRAME_SIZE_MISMATCH
        if any(index not in self.boxes for index in decoded.indices):
            return FRAMES_NOT_COVERED
        return ""

    def at(self, indices: Sequence[int]) -> list[list[Detection]]:
        """The detections of each frame in ``indices`` (all covered: see ``refusal``)."""
        return [self.boxes[index] for index in indices]


def boxes_path(parts_dir: Path, video_id: str) -> Path:
    """Where an original's boxes are kept."""
    return parts_dir / BOXES_DIR / f"{safe_name(video_id)}.json"


def write_boxes(parts_dir: Path, boxes: OriginalBoxes) -> Path:
    """Write an original's boxes atomically (a reader never sees half a file)."""
    return write_json(boxes_path(parts_dir, boxes.video_id), boxes.to_json())


def read_boxes(parts_dir: Path, video_id: str, stamp: Mapping[str, Any]) -> OriginalBoxes | None:
    """An original's stored boxes if they were made with ``stamp`` (else ``None``)."""
    path = boxes_path(parts_dir, video_id)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("stamp") != json.loads(json.dumps(dict(stamp), default=str)):
        return None
    return OriginalBoxes.from_json(data)


@dataclass
class BoxPlan:
    """Which fakes take which original's boxes, decided from the whole record list.

    Args:
        originals: Fake ``video_id`` -> its listed original's record.
        unlisted: Fake ``video_id`` whose named original is not listed -> ``ORIGINAL_MISSING``.
        with_fakes: Originals whose boxes some fake takes.
    """

    originals: dict[str, MediaRecord] = field(default_factory=dict)
    unlisted: dict[str, str] = field(default_factory=dict)
    with_fakes: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, records: Sequence[MediaRecord], enabled: bool = True) -> BoxPlan:
        """The plan for ``records`` (empty when reuse is off)."""
        if not enabled:
            return cls()
        by_id = {r.video_id: r for r in records}
        plan = cls()
        for record in by_id.values():
            if not record.original or record.original == record.video_id:
                continue
            if record.original in by_id:
                plan.originals[record.video_id] = by_id[record.original]
                plan.with_fakes.add(record.original)
            else:
                plan.unlisted[record.video_id] = ORIGINAL_MISSING
        return plan


def shard_key(record: MediaRecord, by_id: Mapping[str, MediaRecord]) -> str:
    """The ``video_id`` a record is sharded by: the root of its chain of listed originals.

    An original and all its fakes (and fakes of fakes) share it, so one shard detects the
    original once and crops every fake at its boxes.
    """
    seen = {record.video_id}
    while record.original and record.original in by_id and record.original not in seen:
        record = by_id[record.original]
        seen.add(record.video_id)
    return record.video_id
