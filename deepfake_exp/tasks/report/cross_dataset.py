"""The report's cross-dataset table: per run, every dataset it was evaluated on (its own test
split first, then each ``eval_datasets`` entry), video and face ROC-AUC side by side with
their 95% intervals, read from ``metrics.json["cross_dataset"]``.

Rows come from what evaluation wrote; a run evaluated without ``eval_datasets`` adds none.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from deepfake_exp.runs import RunDir

CROSS_COLUMNS = [
    "name", "dataset", "splits", "videos", "videos_seen_excluded", "threshold",
    "video_auc", "video_auc_low", "video_auc_high", "face_auc", "face_auc_low", "face_auc_high",
    "accuracy", "log_loss", "run_dir",
]  # fmt: skip


def _interval(value: Any) -> tuple[float | None, float | None]:
    """``[low, high]`` as evaluation stores it (``None`` / malformed: no interval)."""
    if isinstance(value, list | tuple) and len(value) == 2:
        return value[0], value[1]
    return None, None


def cross_dataset_rows(name: str, run_dir: str) -> list[dict[str, Any]]:
    """One row per dataset of the run's ``metrics.json["cross_dataset"]``."""
    rows = []
    for entry in RunDir(run_dir).read_metrics().get("cross_dataset") or []:
        video_low, video_high = _interval(entry.get("roc_auc_ci"))
        face_low, face_high = _interval(entry.get("face_roc_auc_ci"))
        rows.append(
            {
                "name": name,
                "dataset": entry.get("dataset"),
                "splits": entry.get("splits"),
                "videos": entry.get("videos"),
                "videos_seen_excluded": entry.get("videos_seen_excluded"),
                "threshold": entry.get("threshold"),
                "video_auc": entry.get("roc_auc"),
                "video_auc_low": video_low,
                "video_auc_high": video_high,
                "face_auc": entry.get("face_roc_auc"),
                "face_auc_low": face_low,
                "face_auc_high": face_high,
                "accuracy": entry.get("accuracy"),
                "log_loss": entry.get("log_loss"),
                "run_dir": run_dir,
            }
        )
    return rows


def cross_dataset_table(table: pd.DataFrame) -> pd.DataFrame:
    """The finished runs' cross-dataset rows, in the report's run order (empty when none)."""
    rows = []
    for name, run_dir, status in table[["name", "run_dir", "status"]].itertuples(index=False):
        if status == "ok":
            rows += cross_dataset_rows(name, run_dir)
    return pd.DataFrame(rows, columns=CROSS_COLUMNS)
