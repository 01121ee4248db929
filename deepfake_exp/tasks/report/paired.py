"""The paired comparison of each run with the report's baseline run on the same test videos:
DeLong's test of the AUC difference and a paired group-bootstrap interval."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deepfake_exp.evaluation.bootstrap import delong_test, paired_bootstrap_diff
from deepfake_exp.runs import RunDir


def paired_comparison(
    run_dir: Path, baseline_dir: Path, n_resamples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Test video ROC-AUC of a run minus the baseline's, on the same videos.

    Returns ``delta_auc`` and DeLong's two-sided ``p_value``
    (:func:`~deepfake_exp.evaluation.bootstrap.delong_test`), the paired group-bootstrap
    interval of the difference (``delta_auc_low/high``: identities resampled together, which
    DeLong's independence assumption ignores) and ``paired`` (how many videos were paired,
    or why they were not: the runs must have scored the same video ids with the same labels).
    """
    mine_path, theirs_path = (
        RunDir(run_dir).predictions_csv("test"),
        RunDir(baseline_dir).predictions_csv("test"),
    )
    if not mine_path.is_file() or not theirs_path.is_file():
        return {"paired": f"not paired (no {mine_path.name})"}
    mine, theirs = pd.read_csv(mine_path), pd.read_csv(theirs_path)
    mine, theirs = mine.set_index("video_id"), theirs.set_index("video_id")
    if set(mine.index) != set(theirs.index):
        return {"paired": "not paired (different test sets)"}
    theirs = theirs.loc[mine.index]
    if not (mine["label"].to_numpy() == theirs["label"].to_numpy()).all():
        return {"paired": "not paired (labels differ)"}
    labels = mine["label"].to_numpy()
    if len(np.unique(labels)) < 2:
        return {"paired": "not paired (one class in test)"}
    test = delong_test(labels, mine["prob"].to_numpy(), theirs["prob"].to_numpy())
    groups = None
    if "group" in mine:  # a video without a group (face-less, listed only) is its own group
        group = mine["group"].astype(object)
        groups = group.where(group.notna(), mine.index.to_series()).astype(str).to_numpy()
    diff = paired_bootstrap_diff(
        "roc_auc", labels, mine["prob"], theirs["prob"], groups, n_resamples, seed
    )
    return {
        "delta_auc": test["diff"],
        "delta_auc_low": diff["low"],
        "delta_auc_high": diff["high"],
        "p_value": test["p_value"],
        "paired": f"paired on {len(labels)} videos",
    }


def add_paired_columns(table: pd.DataFrame, baseline: str | None) -> pd.DataFrame:
    """``delta_auc_vs_<baseline>``, its interval, ``p_value`` and ``paired`` per row."""
    if not baseline:
        return table
    column = f"delta_auc_vs_{baseline}"
    table = table.copy()
    table[[column, f"{column}_low", f"{column}_high", "p_value"]] = np.nan
    table["paired"] = ""
    done = (table["status"] == "ok") & (table["name"] == baseline)
    if not done.any():
        table["paired"] = f"no finished baseline run {baseline!r}"
        return table
    baseline_dir = Path(table.loc[done, "run_dir"].iloc[0])
    for index, row in table.iterrows():
        if row["name"] == baseline:
            table.loc[index, "paired"] = "baseline"
        elif row["status"] != "ok":
            table.loc[index, "paired"] = f"not paired ({row['status']})"
        else:
            result = paired_comparison(Path(row["run_dir"]), baseline_dir)
            table.loc[index, "paired"] = result["paired"]
            for key, target in (
                ("delta_auc", column),
                ("delta_auc_low", f"{column}_low"),
                ("delta_auc_high", f"{column}_high"),
                ("p_value", "p_value"),
            ):
                if result.get(key) is not None:
                    table.loc[index, target] = result[key]
    return table
