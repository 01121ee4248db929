"""The files of one video under ``parts/``: where they live and what they say about frames.

A part is written atomically before the next video starts (its CSV last: the done marker),
so the runner resumes from them and ``merge`` assembles the manifest from them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, NamedTuple

# Per-video frame accounting kept in each part (a truncated file decodes fewer than expected).
FRAME_COLUMNS = ["total_frames", "expected_frames", "decoded_frames", "truncated"]
PARTS_DIR = "parts"


def safe_name(video_id: str) -> str:
    """A file-system-safe, collision-free stem for a ``video_id`` (which may contain '/')."""
    digest = hashlib.sha1(video_id.encode()).hexdigest()[:8]
    readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in video_id)[-80:]
    readable = readable.lstrip(".")  # never a hidden file (temporaries are hidden)
    return f"{readable}-{digest}"


class PartPaths(NamedTuple):
    """A video's files under ``parts/``: faces CSV (the done marker), its meta, a failure."""

    csv: Path
    meta: Path
    failed: Path


def part_paths(parts_dir: Path, video_id: str) -> PartPaths:
    """The part files of ``video_id`` in ``parts_dir``."""
    stem = parts_dir / safe_name(video_id)
    return PartPaths(
        stem.with_name(f"{stem.name}.csv"),
        stem.with_name(f"{stem.name}.meta.json"),
        stem.with_name(f"{stem.name}.failed.json"),
    )


def part_frames(out_dir: str | Path, video_id: str) -> dict[str, Any]:
    """A video's frame accounting from its part, for ``videos.csv`` (``FRAME_COLUMNS``).

    ``expected_frames`` were sampled from the frame count the file declares; fewer
    ``decoded_frames`` mean the file is cut off or broken (``truncated``). All ``None`` for a
    video whose part does not say (failed before decoding, or made by an older version).
    """
    paths = part_paths(Path(out_dir) / PARTS_DIR, video_id)
    for path in (paths.meta, paths.failed):
        if path.is_file():
            data = json.loads(path.read_text())
            return {key: data.get(key) for key in FRAME_COLUMNS}
    return dict.fromkeys(FRAME_COLUMNS)
