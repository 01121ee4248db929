"""The generalization table: one checkpoint, val-chosen thresholds, other datasets' unseen videos.

Pure table logic: rows from scored frames, which videos a run has seen, the Markdown note.
Scoring the faces is the inference layer's job (:mod:`deepfake_exp.inference.scoring`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from deepfake_exp.evaluation.scores import BootstrapSettings, metric_block
from deepfake_exp.evaluation.tables import SUMMARY_KEYS, format_interval, write_table

CROSS_COLUMNS = [
    "dataset", "faces_dir", "splits", "videos", "videos_without_face", "videos_failed",
    "videos_seen_excluded", "faces", "threshold",
    "accuracy", "precision", "recall", "f1", "roc_auc", "roc_auc_ci", "log_loss",
    "face_accuracy", "face_roc_auc", "face_roc_auc_ci", "face_log_loss",
]  # fmt: skip
INTERVAL_COLUMNS = ("roc_auc_ci", "face_roc_auc_ci")
SEEN_SPLITS = ("train", "val")


def resolve_faces_dir(name_or_path: str | Path, faces_root: str | Path) -> Path:
    """A preprocessed faces folder from a dataset name (under ``faces_root``) or a path."""
    candidates = [Path(name_or_path), Path(faces_root) / str(name_or_path)]
    for candidate in candidates:
        if (candidate / "manifest.csv").is_file():
            return candidate
    tried = ", ".join(str(c.resolve()) for c in candidates)
    raise FileNotFoundError(
        f"eval dataset {name_or_path!r}: no manifest.csv in {tried}; preprocess it first with "
        f"`python -m deepfake_exp.preprocess dataset=<option> dataset.name={Path(name_or_path).name}`"
    )


def cross_dataset_row(
    name: str,
    faces_dir: Path,
    splits: str,
    faces: pd.DataFrame,
    videos: pd.DataFrame,
    thresholds: dict[str, float],
    failed: pd.DataFrame | None = None,
    seen_excluded: int = 0,
    bootstrap: BootstrapSettings | None = None,
) -> dict:
    """One line of the generalization table: video metrics first, a few face metrics after
    (video and face AUC each with its group-bootstrap interval, as the field reports them)."""
    video = metric_block(videos, thresholds["video"], bootstrap)
    face = metric_block(faces, thresholds["face"], bootstrap)
    return {
        "dataset": name,
        "faces_dir": str(faces_dir.resolve()),
        "splits": splits,
        "videos": video["n"],
        "videos_without_face": int((videos["num_faces"] == 0).sum()),
        "videos_failed": 0 if failed is None else len(failed),
        "videos_seen_excluded": int(seen_excluded),
        "faces": face["n"],
        "threshold": thresholds["video"],
        **{key: video[key] for key in SUMMARY_KEYS},
        "roc_auc_ci": video.get("roc_auc_ci"),
        **{f"face_{key}": face[key] for key in ("accuracy", "roc_auc", "log_loss")},
        "face_roc_auc_ci": face.get("roc_auc_ci"),
    }


def _video_keys(frame: pd.DataFrame, by_source: bool) -> pd.Series:
    """``source/video_id`` (or the bare ``video_id``) of each row, to match videos across folders."""
    video_ids = frame["video_id"].astype(str)
    if not by_source:
        return video_ids
    return frame["source"].astype(str) + "\x00" + video_ids


def drop_seen(frame: pd.DataFrame, seen: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frame`` whose video is not among ``seen``.

    Two folders may hold crops of the same source videos (York's and Emory's faces of one
    DFDC video): a video is "unseen" by what it is (``source``, ``video_id``), not by the
    folder its faces are in. Without a ``source`` column on either side, ``video_id`` alone
    decides (the cautious choice).
    """
    by_source = "source" in frame and "source" in seen
    return frame[~_video_keys(frame, by_source).isin(set(_video_keys(seen, by_source)))]


def write_cross_dataset_table(
    rows: Sequence[dict], thresholds: dict[str, float], csv_path: Path
) -> pd.DataFrame:
    """``cross_dataset.csv`` and its ``.md`` with the note that says how each row was scored."""
    table = pd.DataFrame(list(rows), columns=CROSS_COLUMNS)
    for column in INTERVAL_COLUMNS:
        table[column] = [format_interval(ci) for ci in table[column]]
    note = (
        "One checkpoint, thresholds chosen on its own validation split and applied unchanged "
        f"(video {thresholds['video']:.3f}, face {thresholds['face']:.3f}). Row 1 is the "
        "training dataset's test split; every other dataset is scored on ALL its faces "
        "(train, val and test splits alike) except those of videos this run trained or "
        "validated on, matched by (source, video_id) whatever the folder "
        "(`videos_seen_excluded`). Metrics are video level unless prefixed `face_`; videos "
        "without a face score 0.5; failed inputs (missing, corrupt) are left out and counted "
        "(`videos_failed`). `roc_auc_ci`, `face_roc_auc_ci`: 95% bootstrap intervals over groups."
    )
    write_table(table, csv_path, "Cross-dataset evaluation", note)
    return table
