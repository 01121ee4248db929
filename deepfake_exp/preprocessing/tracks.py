"""Link a video's faces across its sampled frames into tracks: one track per person.

A DFDC video can show two people of whom a fake swaps one; scoring each person apart
(``aggregation=track_max``) needs to know which faces are the same person. Frames are
sampled sparsely (32 of 300), so a face can move far between two samples: a face links to a
track when their boxes overlap (IoU) *or* their centres lie within ``max_distance`` face
sides; pairs are matched greedily, best overlap first, each track and face at most once per
frame. No appearance model: a person who leaves and comes back near another's place may
join that track; a person who reappears elsewhere starts a new one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

Box = tuple[float, float, float, float]

MIN_IOU = 0.3
MAX_DISTANCE = 1.0  # centre distance in units of the two faces' mean side
UNTRACKED = -1  # track_id of a face in a manifest made before tracks


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes (0 for empty ones)."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(width, 0.0) * max(height, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def centre_distance(a: Box, b: Box) -> float:
    """Distance of the boxes' centres over their mean side: scale-free, so 1080p or 64 px."""
    side = (max(a[2] - a[0], a[3] - a[1]) + max(b[2] - b[0], b[3] - b[1])) / 2.0
    dx = (a[0] + a[2] - b[0] - b[2]) / 2.0
    dy = (a[1] + a[3] - b[1] - b[3]) / 2.0
    return math.hypot(dx, dy) / side if side > 0 else math.inf


def link_tracks(
    frames: Sequence[Sequence[Box]],
    min_iou: float = MIN_IOU,
    max_distance: float = MAX_DISTANCE,
) -> list[list[int]]:
    """Track ids (0-based, in order of first appearance) for every box of every frame.

    Args:
        frames: The boxes of each sampled frame, in frame order.
        min_iou: Overlap with a track's last box that links a face to it.
        max_distance: Centre distance (in face sides) that links a face without overlap.

    Returns:
        ``ids[f][i]``: the track of ``frames[f][i]``.
    """
    last: list[Box] = []  # each track's latest box
    result = []
    for boxes in frames:
        pairs = []
        for track, previous in enumerate(last):
            for face, box in enumerate(boxes):
                overlap, distance = box_iou(previous, box), centre_distance(previous, box)
                if overlap >= min_iou or distance <= max_distance:
                    pairs.append((-overlap, distance, track, face))
        ids = [UNTRACKED] * len(boxes)
        taken: set[int] = set()
        for _, _, track, face in sorted(pairs):
            if track not in taken and ids[face] == UNTRACKED:
                ids[face] = track
                taken.add(track)
        for face, box in enumerate(boxes):
            if ids[face] == UNTRACKED:
                ids[face] = len(last)
                last.append(box)
            else:
                last[ids[face]] = box
        result.append(ids)
    return result


def track_ids(faces: pd.DataFrame) -> pd.Series:
    """``track_id`` of each row of one video's faces (columns ``frame``, ``face_index``, box).

    Computed from the stored boxes, so a manifest merged from parts of any age gets tracks,
    and a fake cropped at its original's boxes gets its original's tracks.
    """
    if faces.empty:
        return pd.Series(dtype="int64", index=faces.index)
    ordered = faces.sort_values(["frame", "face_index"])
    groups = [group for _, group in ordered.groupby("frame", sort=True)]
    boxes = [list(group[["x1", "y1", "x2", "y2"]].itertuples(index=False)) for group in groups]
    ids = link_tracks([[tuple(map(float, b)) for b in frame] for frame in boxes])
    labelled = pd.concat(
        [pd.Series(frame_ids, index=g.index) for g, frame_ids in zip(groups, ids, strict=True)]
    )
    return labelled.reindex(faces.index).astype("int64")
