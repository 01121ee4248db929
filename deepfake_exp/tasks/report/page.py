"""The report page: ``report.csv``, ``report.md`` (results, protocol, cross-dataset tables)
and ``plots/`` (test AUC per run, ROC overlay)."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from omegaconf import DictConfig

from deepfake_exp.evaluation import plots
from deepfake_exp.runs import RunDir
from deepfake_exp.tasks.report.cross_dataset import cross_dataset_table
from deepfake_exp.utils.io import atomic_write, write_csv

MARKDOWN_COLUMNS = [
    "name", "status", "model", "optimizer", "lr", "weight_decay", "scheduler", "best_epoch",
    "val_metric", "best_val", "accuracy", "precision", "recall", "f1", "roc_auc [95% CI]",
    "log_loss", "n_test_videos", "face_roc_auc", "robust_video_auc", "train_minutes",
]  # fmt: skip
#: Shown in ``report.md`` only when some run has a value (e.g. runs evaluated with robustness).
OPTIONAL_MARKDOWN_COLUMNS = ("robust_video_auc",)
SCIENTIFIC_COLUMNS = ("lr", "weight_decay")  # 1.0e-05, not 0.0000
INTEGER_COLUMNS = ("epochs", "best_epoch", "n_test_videos")
TEXT_COLUMNS = (
    "name", "status", "model", "optimizer", "scheduler", "val_metric", "roc_auc [95% CI]",
    "paired", "protocol", "published / measured", "note", "dataset", "splits",
    "video AUC [95% CI]", "face AUC [95% CI]",
)  # fmt: skip
#: Words for each face -> video aggregation in the report's text.
AGGREGATION_WORDS = {
    "mean": "averaged",
    "max": "reduced to their highest score",
    "confident": "averaged over the confident faces when enough agree (else all)",
}


def plot_metric_bars(table: pd.DataFrame, title: str = "Test ROC-AUC per run") -> Figure:
    """Video and face test ROC-AUC per run, side by side, with the value on each bar."""
    finished = table[table["status"] == "ok"]
    names = finished["name"].tolist()
    figure = plots.new_figure(max(5.0, 1.2 * len(names) + 2.0), 4.5)
    axes = figure.add_subplot()
    x = np.arange(len(names))
    width = 0.38
    for offset, column, label in (
        (-width / 2, "roc_auc", "video"),
        (width / 2, "face_roc_auc", "face"),
    ):
        values = pd.to_numeric(finished[column], errors="coerce").fillna(0.0).to_numpy()
        bars = axes.bar(x + offset, values, width, label=label)
        axes.bar_label(bars, fmt="%.3f", fontsize=7)
    axes.axhline(0.5, color="grey", ls="--", lw=1, label="chance")
    axes.set_xticks(x, labels=names, rotation=20, ha="right")
    axes.set(ylim=(0, 1.08), ylabel="test ROC-AUC", title=title)
    axes.legend(loc="lower right", fontsize=8)
    return figure


def roc_curves(table: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each finished run's test video predictions (``predictions_test_videos.csv``)."""
    curves = {}
    for name, run_dir, status in table[["name", "run_dir", "status"]].itertuples(index=False):
        path = RunDir(run_dir).predictions_csv("test")
        if status == "ok" and path.is_file():
            videos = pd.read_csv(path)
            curves[name] = (videos["label"].to_numpy(), videos["prob"].to_numpy())
    return curves


def _number(value: Any, style: str) -> str:
    """``value`` in ``style`` (a format spec, or ``sci``: ``3.0e-04``, ``0`` for zero)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return str(value)
    if style == "sci":
        return "0" if value == 0 else f"{value:.1e}"
    return f"{value:{style}}"


def _auc_with_ci(auc: Any, low: Any, high: Any) -> str:
    """``0.912 [0.850, 0.960]``; the bare AUC when the interval is missing."""
    shown = _number(auc, ".3f")
    if shown and _number(low, ".3f") and _number(high, ".3f"):
        return f"{shown} [{low:.3f}, {high:.3f}]"
    return shown


def _delta_columns(table: pd.DataFrame) -> list[str]:
    """``delta_auc_vs_<baseline>`` (not its interval bounds)."""
    return [
        c
        for c in table.columns
        if c.startswith("delta_auc_vs_") and not c.endswith(("_low", "_high"))
    ]


def _markdown(shown: pd.DataFrame) -> str:
    align = ["left" if c in TEXT_COLUMNS else "right" for c in shown.columns]
    return shown.to_markdown(index=False, disable_numparse=True, colalign=align)


def shown_table(table: pd.DataFrame) -> str:
    """The results table: 4 decimals, learning rates as ``1.0e-05``, AUC with its 95% CI,
    the paired difference with the baseline and its p-value, blanks for gaps."""
    intervals = [
        _auc_with_ci(row.get("roc_auc"), row.get("roc_auc_low"), row.get("roc_auc_high"))
        for _, row in table.iterrows()
    ]
    table = table.assign(**{"roc_auc [95% CI]": intervals})
    deltas = _delta_columns(table)
    columns = [
        c
        for c in MARKDOWN_COLUMNS
        if c in table.columns and not (c in OPTIONAL_MARKDOWN_COLUMNS and table[c].isna().all())
    ]
    if deltas:
        at = columns.index("log_loss") + 1 if "log_loss" in columns else len(columns)
        columns[at:at] = [*deltas, "p_value"]
    shown = table[columns].astype(object)
    for column in shown.columns:
        style = (
            "sci" if column in SCIENTIFIC_COLUMNS
            else ".0f" if column in INTEGER_COLUMNS
            else "+.3f" if column in deltas
            else ".3g" if column == "p_value"
            else ".4f"
        )  # fmt: skip
        shown[column] = [_number(v, style) for v in shown[column]]
    return _markdown(shown)


def protocol_text(row: pd.Series) -> str:
    """One row's protocol in words (which split chose what, how faces become a video score)."""
    if not row.get("selected_on"):
        return ""
    return (
        f"checkpoint: {row['selected_on']}; threshold: {row['threshold_on']}; "
        f"temperature: {row['temperature_on']}; video = {row['aggregation']} of "
        f"{row['faces_per_video']} faces; identity-disjoint: {row['identity_disjoint']}"
    )


def protocol_table(table: pd.DataFrame) -> str:
    """Per row: protocol, the study's published figures next to the measured ones, notes."""
    shown = pd.DataFrame(
        {
            "name": table["name"],
            "protocol": table.apply(protocol_text, axis=1),
            "published / measured": table["published"].fillna(""),
            "note": table["note"].fillna(""),
        }
    )
    if "paired" in table:
        shown.insert(2, "paired", table["paired"].fillna(""))
    return _markdown(shown.astype(str))


def cross_dataset_markdown(cross: pd.DataFrame | None) -> list[str]:
    """The cross-dataset section of ``report.md``: per run and dataset, video and face AUC
    with their intervals ([] when no run was evaluated on other datasets)."""
    if cross is None or cross.empty:
        return []
    shown = pd.DataFrame(
        {
            "name": cross["name"],
            "dataset": cross["dataset"],
            "splits": cross["splits"].fillna(""),
            "videos": [_number(v, ".0f") for v in cross["videos"]],
            "video AUC [95% CI]": [
                _auc_with_ci(*v)
                for v in cross[["video_auc", "video_auc_low", "video_auc_high"]].to_numpy()
            ],
            "face AUC [95% CI]": [
                _auc_with_ci(*v)
                for v in cross[["face_auc", "face_auc_low", "face_auc_high"]].to_numpy()
            ],
            "accuracy": [_number(v, ".4f") for v in cross["accuracy"]],
            "log_loss": [_number(v, ".4f") for v in cross["log_loss"]],
        }
    )
    return [
        "Cross-dataset (each run's own test split first, then every other dataset it was "
        "evaluated on, on the videos it never trained or validated on, at its val-chosen "
        "thresholds; all columns: `cross_dataset.csv`):",
        "",
        _markdown(shown.astype(str)),
        "",
    ]


def aggregation_words(table: pd.DataFrame) -> str:
    """How faces became video scores, in the words of the runs' actual aggregation."""
    used = sorted({str(a) for a in table.get("aggregation", pd.Series(dtype=str)).dropna() if a})
    if len(used) == 1:
        return f"faces {AGGREGATION_WORDS.get(used[0], f'combined by {used[0]}')} per video"
    if not used:
        return "faces combined per video as each run was trained"
    parts = ", ".join(f"{a}: {AGGREGATION_WORDS.get(a, a)}" for a in used)
    return f"faces combined per video as each run was trained ({parts})"


def report_markdown(
    table: pd.DataFrame,
    report: DictConfig,
    elapsed: float | None,
    cross: pd.DataFrame | None = None,
) -> str:
    """The report page: what was run, the tables, the plots, how to read them.

    ``cross``: :func:`cross_dataset_table` of the runs (its section is left out when empty).
    """
    baseline = report.get("baseline")
    paired = (
        f" `delta_auc_vs_{baseline}`: this run's test video ROC-AUC minus {baseline}'s on the "
        "same test videos, `p_value`: DeLong's two-sided test of that difference (runs on "
        "other test videos are not paired)."
        if baseline
        else ""
    )
    lines = [
        f"# Report: {report.name}",
        "",
        report.description.strip() if report.get("description") else "",
        "",
        f"Generated {datetime.now():%Y-%m-%d %H:%M}. Test metrics are video level "
        f"({aggregation_words(table)}) at the threshold chosen on that run's validation "
        "split; `roc_auc [95% CI]`: bootstrap interval resampled over identities; "
        "`face_roc_auc` is face level. `best_val` is the validation metric the checkpoint was "
        f"selected on (`val_metric`).{paired}",
        "",
        shown_table(table),
        "",
        "Protocol (what chose the checkpoint, threshold and temperature; how a video is "
        "scored; whether test identities are unseen in train, from `split_report.json`) and "
        "the figures each study published next to ours (`published / measured`, video level "
        "on the named split):",
        "",
        protocol_table(table),
        "",
        *cross_dataset_markdown(cross),
    ]
    minutes = pd.to_numeric(table["train_minutes"], errors="coerce").dropna()
    if elapsed is not None:
        trained = f"; the runs took {minutes.sum():.1f} min in all" if len(minutes) else ""
        lines += [f"Wall time of this report: {elapsed / 60:.1f} min{trained}.", ""]
    failed = table[~table["status"].isin(["ok"])]
    for name, status, message in zip(
        failed["name"],
        failed["status"],
        failed.get("message", pd.Series([""] * len(failed))).fillna(""),
        strict=False,
    ):
        verb = "is stale" if status == "stale" else "did not finish"
        lines += [f"- **{name}** {verb}: {message}".rstrip(), ""]
    lines += [
        "![test ROC-AUC per run](plots/test_auc.png)",
        "",
        "![ROC curves of the test videos](plots/roc_test_videos.png)",
        "",
        "Per-run details (ROC, confusion matrix, calibration, Grad-CAM, galleries): "
        "`<run_dir>/plots/`; all columns, run directories included: `report.csv`.",
        "",
    ]
    return "\n".join(lines)


def write_report(
    table: pd.DataFrame, out_dir: Path, report: DictConfig, elapsed: float | None = None
) -> list[Path]:
    """``report.csv``, ``report.md`` and the plots."""
    written = [write_csv(out_dir / "report.csv", table)]
    cross = cross_dataset_table(table)
    if not cross.empty:
        written.append(write_csv(out_dir / "cross_dataset.csv", cross))
    text = report_markdown(table, report, elapsed, cross)
    written.append(atomic_write(out_dir / "report.md", lambda p: p.write_text(text)))
    figures = {"test_auc": plot_metric_bars(table)}
    curves = roc_curves(table)
    if curves:
        figures["roc_test_videos"] = plots.plot_roc_overlay(
            curves, "ROC of the test videos, per run"
        )
    for name, figure in figures.items():
        written.append(plots.save_figure(figure, out_dir / "plots" / f"{name}.png"))
    return written
