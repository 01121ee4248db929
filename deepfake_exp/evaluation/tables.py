"""Text of an evaluation: Markdown tables and the console summary of ``metrics.json``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from deepfake_exp.utils.io import atomic_write, write_csv

SUMMARY_KEYS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
SUMMARY_NAMES = {
    "roc_auc": "ROC-AUC",
    "accuracy": "accuracy",
    "precision": "precision",
    "recall": "recall",
    "f1": "F1",
    "log_loss": "log-loss",
}


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".4f") -> str:
    """A GitHub Markdown table (via ``tabulate``) for reports."""
    return frame.to_markdown(index=False, floatfmt=floatfmt)


def write_table(frame: pd.DataFrame, csv_path: Path, title: str, note: str = "") -> Path:
    """The same table as CSV and as Markdown next to it (``.md``)."""
    write_csv(csv_path, frame)
    text = f"# {title}\n\n{note}\n\n{markdown_table(frame)}\n" if note else markdown_table(frame)
    return atomic_write(csv_path.with_suffix(".md"), lambda p: p.write_text(text))


def format_interval(interval: Sequence[float | None] | None, digits: int = 2) -> str:
    """``[0.91, 0.99]``, or an empty string without an interval."""
    if interval is None or not isinstance(interval, list | tuple) or interval[0] is None:
        return ""
    return f"[{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def with_interval(name: str, block: dict, key: str) -> str:
    """``ROC-AUC 0.954 [0.91, 0.99]`` (without brackets when there is no interval)."""
    interval = format_interval(block.get(f"{key}_ci"))
    return f"{name} {block[key]:.3f}" + (f" {interval}" if interval else "")


def format_failures(split: dict) -> str:
    """``2 failed (missing_file 1, decode_error 1)`` or an empty string."""
    if not split.get("n_failed"):
        return ""
    reasons = ", ".join(f"{k} {v}" for k, v in split.get("failed_reasons", {}).items())
    return f"{split['n_failed']} failed ({reasons})"


def _level_line(level: str, block: dict) -> str:
    values = "  ".join(
        with_interval(SUMMARY_NAMES[k], block, k) for k in SUMMARY_KEYS if not np.isnan(block[k])
    )
    counts = f"n={block['n']}"
    if "n_groups" in block:
        counts += f" in {block['n_groups']} group" + ("s" if block["n_groups"] != 1 else "")
    if level == "video" and block.get("n_no_face"):
        counts += f", {block['n_no_face']} without a face at 0.5"
    return f"test {level:5s} ({counts}, threshold={block['threshold']:.3f}): {values}"


def format_summary(metrics: dict) -> str:
    """The test metrics with their intervals (and the cross-dataset table, if any)."""
    test = metrics["test"]
    rows = [_level_line(level, test[level]) for level in ("face", "video")]
    failures = format_failures(test)
    if failures:
        rows.append(f"test videos left out of the metrics: {failures}")
    settings = metrics.get("bootstrap")
    if settings:
        rows.append(
            f"[intervals: {settings['level']:.0%} bootstrap over {settings['unit']}s, "
            f"{settings['n_resamples']} resamples, seed {settings['seed']}; none where a "
            "metric is undefined or there is one group]"
        )
    calibration = metrics.get("calibration")
    if calibration:
        rows.append(
            f"calibration (videos): T={calibration['temperature']:.3f}  log_loss "
            f"{calibration['test_log_loss_before']:.4f} -> {calibration['test_log_loss_after']:.4f}"
            f"  ECE {calibration['test_ece_before']:.4f} -> {calibration['test_ece_after']:.4f}"
        )
    robustness = metrics.get("robustness")
    if robustness:
        means = {k: robustness.get(f"mean_{k}_auc") for k in ("video", "face")}
        shown = ", ".join(f"{k} {v:.3f}" for k, v in means.items() if v is not None)
        rows.append(f"robustness (mean ROC-AUC under perturbation): {shown or 'undefined'}")
    if metrics.get("cross_dataset"):
        table = pd.DataFrame(metrics["cross_dataset"])
        columns = ["dataset", "splits", "videos", *SUMMARY_KEYS]
        if "roc_auc_ci" in table:
            table["roc_auc_ci"] = [format_interval(ci) for ci in table["roc_auc_ci"]]
            columns.insert(columns.index("roc_auc") + 1, "roc_auc_ci")
        rows.append("cross-dataset (videos):\n" + markdown_table(table[columns]))
    return "\n".join(rows)
