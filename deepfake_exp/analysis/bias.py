"""Per-cluster bias table: who is in each cluster and how well the detector serves them.

The York study found its embeddings (and so its detector) served darker-skinned faces worse.
A table of size, fake share and, given a checkpoint's predictions, accuracy / ROC-AUC /
log-loss per cluster, worst-served first, puts such groups at the top instead of averaging
them away in one overall score. Metrics come from :func:`binary_metrics`, so a cluster's
numbers mean exactly what the evaluation report's numbers mean.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from deepfake_exp.analysis.clusters import NOISE
from deepfake_exp.evaluation.metrics import as_binary_arrays, binary_metrics

COUNT_COLUMNS = ["cluster", "size", "share", "n_fake", "fake_share"]
SCORE_COLUMNS = ["accuracy", "error_rate", "roc_auc", "log_loss", "mean_prob"]


def cluster_table(
    clusters: Any, y_true: Any, y_prob: Any | None = None, threshold: float = 0.5
) -> pd.DataFrame:
    """One row per cluster (noise, ``-1``, included as its own group).

    Args:
        clusters: Cluster label per face.
        y_true: 0 real / 1 fake per face.
        y_prob: P(fake) per face from a detector, or ``None`` for counts only.
        threshold: ``prob >= threshold`` is called fake (as in :func:`binary_metrics`).

    Returns:
        Columns ``cluster, size, share, n_fake, fake_share`` (+ ``accuracy, error_rate,
        roc_auc, log_loss, mean_prob`` with predictions; ROC-AUC is NaN in a one-class
        cluster). Sorted worst-served first (error rate, then log-loss) with predictions,
        largest first without.
    """
    clusters = np.asarray(clusters).reshape(-1)
    labels = np.asarray(y_true).reshape(-1)
    probs = None
    if y_prob is not None:
        labels, probs = as_binary_arrays(labels, y_prob)
    if len(clusters) != len(labels) or len(labels) == 0:
        raise ValueError(f"{len(clusters)} cluster labels for {len(labels)} faces")
    rows = []
    for cluster in np.unique(clusters):
        members = clusters == cluster
        row: dict[str, Any] = {
            "cluster": int(cluster),
            "size": int(members.sum()),
            "share": float(members.mean()),
            "n_fake": int(labels[members].sum()),
            "fake_share": float(labels[members].mean()),
        }
        if probs is not None:
            metrics = binary_metrics(labels[members], probs[members], threshold)
            row.update(
                accuracy=metrics["accuracy"],
                error_rate=1.0 - metrics["accuracy"],
                roc_auc=metrics["roc_auc"],
                log_loss=metrics["log_loss"],
                mean_prob=float(probs[members].mean()),
            )
        rows.append(row)
    table = pd.DataFrame(rows, columns=COUNT_COLUMNS + (SCORE_COLUMNS if probs is not None else []))
    order = ["error_rate", "log_loss", "size"] if probs is not None else ["size", "cluster"]
    ascending = [False, False, False] if probs is not None else [False, True]
    return table.sort_values(order, ascending=ascending, kind="stable").reset_index(drop=True)


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, float | np.floating):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub Markdown table (no extra dependency); NaN shown as an en dash."""
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---:" for _ in frame.columns) + "|"
    body = [
        "| " + " | ".join(_cell(v, digits) for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body])


def bias_markdown(table: pd.DataFrame, overall: dict[str, float] | None = None) -> str:
    """The bias report: a one-line overall summary, then the table with noise named."""
    shown = table.astype({"cluster": object})
    shown.loc[shown["cluster"] == NOISE, "cluster"] = "noise"
    lines = ["# Clusters, worst-served first" if "error_rate" in table else "# Clusters", ""]
    if overall:
        lines += ["All faces: " + ", ".join(f"{k} {_cell(v, 4)}" for k, v in overall.items()), ""]
    return "\n".join([*lines, markdown_table(shown), ""])
