"""The record every source adapter yields: one media file with its label and grouping.

Adapters read a dataset's own layout into records; everything downstream (preprocessing,
splits, manifests) sees only records, so adding a dataset never touches the pipeline.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

REAL, FAKE = 0, 1
LABEL_NAMES = {REAL: "REAL", FAKE: "FAKE"}

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm"})
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def parse_label(value: str | int | bool) -> int:
    """Map the spellings datasets use (REAL/FAKE, 0/1, real/fake) to ``REAL``/``FAKE``."""
    if isinstance(value, bool | int):
        if int(value) not in (REAL, FAKE):
            raise ValueError(f"label must be 0 (real) or 1 (fake), got {value!r}")
        return int(value)
    text = str(value).strip().lower()
    if text in {"fake", "1", "deepfake", "manipulated"}:
        return FAKE
    if text in {"real", "0", "original", "pristine"}:
        return REAL
    raise ValueError(f"unknown label {value!r}: expected REAL/FAKE or 0/1")


@dataclass(frozen=True)
class MediaRecord:
    """One video or image of a dataset.

    Attributes:
        video_id: Unique key of the item within its dataset (never a bare folder name).
        path: Absolute path of the media file.
        label: ``REAL`` (0) or ``FAKE`` (1).
        group: Identity/group key; items sharing it never straddle splits (a fake goes
            with its original so the same face is not in train and test).
        original: ``video_id`` of the source a fake was made from, or ``None``.
        split: Official split (``train``/``val``/``test``) or ``None`` to let the split
            policy decide.
        source: Name of the dataset the record came from.
        identities: People shown, target first then the face-swap source(s), where the
            dataset names them (empty otherwise); identity-disjoint grouping and
            ``split_report.json`` read them.
        method: Manipulation method a fake was made with, where the dataset says
            (FaceForensics++'s folder, e.g. ``Deepfakes``; the synthetic set's method);
            ``None`` for reals and unnamed methods. Cross-manipulation protocols select on it.
    """

    video_id: str
    path: str
    label: int
    group: str
    original: str | None = None
    split: str | None = None
    source: str = ""
    identities: tuple[str, ...] = ()
    method: str | None = None

    @property
    def is_video(self) -> bool:
        return Path(self.path).suffix.lower() in VIDEO_EXTENSIONS

    def to_dict(self) -> dict:
        return asdict(self)
