"""Figures for evaluation reports and TensorBoard.

Every figure is a bare :class:`matplotlib.figure.Figure` drawn on an Agg canvas, never through
``pyplot``: nothing depends on a display or on the global backend, and figures are not kept
alive by pyplot's registry across a long evaluation loop.
"""

from __future__ import annotations

import io
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image
from sklearn.metrics import (
    auc,
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from deepfake_exp.evaluation.metrics import (
    as_binary_arrays,
    calibration_bins,
    equal_error_rate,
    expected_calibration_error,
    has_both_classes,
)
from deepfake_exp.utils.io import atomic_write

CLASS_COLOURS = {0: "tab:blue", 1: "tab:red"}
CLASS_NAMES = {0: "real", 1: "fake"}
HISTORY_INDEX_COLUMNS = frozenset({"epoch", "step"})


def new_figure(width: float = 5.0, height: float = 4.5) -> Figure:
    """A figure bound to its own Agg canvas, independent of ``pyplot`` and of any display."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _one_class_note(figure: Figure, what: str, labels: np.ndarray) -> Figure:
    """Keep a report going when a split holds one class: say so on the figure instead."""
    axes = figure.add_subplot()
    axes.text(
        0.5,
        0.5,
        f"{what} undefined:\nonly {CLASS_NAMES[int(labels[0])]} samples ({labels.size})",
        ha="center",
        va="center",
        transform=axes.transAxes,
    )
    axes.set_axis_off()
    return figure


def _roc_axes(axes: Any, title: str, legend_size: float | None = None) -> None:
    """The chance diagonal, unit limits, axis names, legend and grid every ROC plot shares."""
    axes.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="chance")
    axes.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="False positive rate (real called fake)",
        ylabel="True positive rate (fake caught)",
        title=title,
    )
    axes.legend(loc="lower right", fontsize=legend_size)
    axes.grid(alpha=0.3)


def plot_roc(y_true: Any, y_prob: Any, title: str = "ROC curve") -> Figure:
    """ROC curve with its AUC and the equal-error-rate point."""
    labels, probs = as_binary_arrays(y_true, y_prob)
    figure = new_figure()
    if not has_both_classes(labels):
        return _one_class_note(figure, "ROC curve", labels)
    fpr, tpr, _ = roc_curve(labels, probs)
    eer, eer_threshold = equal_error_rate(labels, probs)
    axes = figure.add_subplot()
    axes.plot(fpr, tpr, color="tab:red", lw=2, label=f"ROC (AUC = {auc(fpr, tpr):.4f})")
    axes.scatter(
        [eer], [1.0 - eer], color="black", zorder=3, label=f"EER = {eer:.4f} @ {eer_threshold:.3f}"
    )
    _roc_axes(axes, title)
    return figure


def plot_pr(y_true: Any, y_prob: Any, title: str = "Precision-recall curve") -> Figure:
    """Precision-recall curve with average precision and the prevalence (chance) line."""
    labels, probs = as_binary_arrays(y_true, y_prob)
    figure = new_figure()
    if not has_both_classes(labels):
        return _one_class_note(figure, "Precision-recall curve", labels)
    precision, recall, _ = precision_recall_curve(labels, probs)
    average_precision = average_precision_score(labels, probs)
    prevalence = labels.mean()
    axes = figure.add_subplot()
    axes.step(recall, precision, where="post", color="tab:red", lw=2)
    axes.plot([], [], color="tab:red", lw=2, label=f"AP = {average_precision:.4f}")
    axes.axhline(prevalence, color="grey", ls="--", lw=1, label=f"chance = {prevalence:.3f}")
    axes.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="Recall (fakes caught)",
        ylabel="Precision (called fake that are fake)",
        title=title,
    )
    axes.legend(loc="lower left")
    axes.grid(alpha=0.3)
    return figure


def plot_confusion_matrix(
    cm: Any, labels: Sequence[str] = ("REAL", "FAKE"), title: str = "Confusion matrix"
) -> Figure:
    """Counts with row percentages (share of each true class), rows = truth, columns = prediction."""
    matrix = np.asarray(cm, dtype=np.int64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] != len(labels):
        raise ValueError(
            f"cm must be a square {len(labels)}x{len(labels)} matrix matching labels "
            f"{list(labels)}, got shape {matrix.shape}"
        )
    row_totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(
        matrix, row_totals, out=np.zeros(matrix.shape, dtype=np.float64), where=row_totals > 0
    )
    figure = new_figure(4.5, 4.0)
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, label="share of true class")
    for row, col in np.ndindex(matrix.shape):
        axes.text(
            col,
            row,
            f"{matrix[row, col]}\n{shares[row, col]:.1%}",
            ha="center",
            va="center",
            color="white" if shares[row, col] > 0.5 else "black",
        )
    ticks = np.arange(len(labels))
    axes.set_xticks(ticks, labels=list(labels))
    axes.set_yticks(ticks, labels=list(labels))
    axes.set(xlabel="Predicted", ylabel="True", title=title)
    return figure


def plot_score_histogram(
    y_true: Any,
    y_prob: Any,
    threshold: float = 0.5,
    title: str = "Score distribution",
    bins: int = 30,
) -> Figure:
    """Per-class histograms of P(fake) with the decision threshold: shows where errors sit."""
    labels, probs = as_binary_arrays(y_true, y_prob)
    edges = np.linspace(0.0, 1.0, bins + 1)
    figure = new_figure(6.0, 4.0)
    axes = figure.add_subplot()
    for label in (0, 1):
        scores = probs[labels == label]
        if scores.size:
            axes.hist(
                scores,
                bins=edges,
                alpha=0.6,
                color=CLASS_COLOURS[label],
                label=f"{CLASS_NAMES[label]} (n={scores.size})",
            )
    axes.axvline(threshold, color="black", ls="--", lw=1.5, label=f"threshold = {threshold:.3f}")
    axes.set(xlim=(0, 1), xlabel="P(fake)", ylabel="count", title=title)
    axes.legend()
    return figure


def plot_reliability(
    y_true: Any, y_prob: Any, n_bins: int = 15, title: str = "Reliability diagram"
) -> Figure:
    """Observed fraction of fakes per probability bin against the diagonal, with the ECE."""
    mean_prob, frac_fake, counts = calibration_bins(y_true, y_prob, n_bins)
    ece = expected_calibration_error(y_true, y_prob, n_bins)
    filled = counts > 0
    width = 1.0 / n_bins
    centres = (np.arange(n_bins) + 0.5) * width
    figure = new_figure()
    axes = figure.add_subplot()
    axes.bar(
        centres[filled],
        frac_fake[filled],
        width=width,
        edgecolor="black",
        color="tab:blue",
        alpha=0.7,
        label="observed fraction fake",
    )
    axes.plot(mean_prob[filled], frac_fake[filled], "o", color="tab:red", label="bin mean P(fake)")
    axes.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect calibration")
    axes.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="Predicted P(fake)",
        ylabel="Fraction fake",
        title=f"{title} (ECE = {ece:.4f})",
    )
    axes.legend(loc="upper left")
    return figure


def _metric_groups(history: pd.DataFrame) -> dict[str, list[str]]:
    """Group ``train/loss`` with ``val/loss`` etc.: curves sharing a name share a panel."""
    groups: dict[str, list[str]] = {}
    for column in history.columns:
        if column in HISTORY_INDEX_COLUMNS or not pd.api.types.is_numeric_dtype(history[column]):
            continue
        if history[column].notna().any():
            groups.setdefault(str(column).rsplit("/", 1)[-1], []).append(column)
    return groups


def plot_training_curves(history: pd.DataFrame, title: str = "Training curves") -> Figure:
    """One panel per metric name (``loss``, ``auc``…), one line per stage (``train``, ``val``).

    Args:
        history: One row per epoch (as in Lightning's ``metrics.csv``): an ``epoch`` column and
            numeric metric columns such as ``train/loss``, ``val/loss``, ``val/auc``. Rows
            where a metric is NaN (logged at another step) are skipped for that metric.
    """
    if "epoch" not in history.columns:
        raise ValueError(f"history needs an 'epoch' column, it has {list(history.columns)}")
    groups = _metric_groups(history)
    if not groups:
        raise ValueError(f"history has no numeric metric columns: {list(history.columns)}")
    ncols = min(3, len(groups))
    nrows = math.ceil(len(groups) / ncols)
    figure = new_figure(4.5 * ncols, 3.5 * nrows)
    figure.suptitle(title)
    for position, (name, columns) in enumerate(groups.items(), start=1):
        axes = figure.add_subplot(nrows, ncols, position)
        for column in columns:
            points = history[["epoch", column]].dropna()
            axes.plot(points["epoch"], points[column], marker="o", ms=3, label=column)
        axes.set(xlabel="epoch", ylabel=name, title=name)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        axes.legend()
    return figure


def plot_gallery(
    images: Sequence[np.ndarray],
    captions: Sequence[str],
    ncols: int = 4,
    title: str | None = None,
) -> Figure:
    """A grid of face crops with captions, e.g. the most confident false positives."""
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    for index, image in enumerate(images):
        shape = np.shape(image)
        if not (len(shape) == 2 or (len(shape) == 3 and shape[2] in (3, 4))):
            raise ValueError(f"image {index} must be HxW or HxWx3, got shape {shape}")
    if not images:
        figure = new_figure(4.0, 2.0)
        axes = figure.add_subplot()
        axes.text(0.5, 0.5, "no images", ha="center", va="center", transform=axes.transAxes)
        axes.set_axis_off()
        if title:
            figure.suptitle(title)
        return figure
    ncols = min(ncols, len(images))
    nrows = math.ceil(len(images) / ncols)
    figure = new_figure(2.5 * ncols, 2.8 * nrows)
    if title:
        figure.suptitle(title)
    for position, (image, caption) in enumerate(zip(images, captions, strict=True), start=1):
        axes = figure.add_subplot(nrows, ncols, position)
        axes.imshow(image, cmap="gray" if np.ndim(image) == 2 else None)
        axes.set_title(caption, fontsize=8)
        axes.set_axis_off()
    return figure


def plot_roc_overlay(curves: dict[str, tuple[Any, Any]], title: str = "ROC curves") -> Figure:
    """One ROC curve per named ``(labels, probs)`` pair on shared axes (runs or datasets)."""
    figure = new_figure(6.0, 5.0)
    axes = figure.add_subplot()
    for name, (labels, probs) in curves.items():
        labels = np.asarray(labels)
        if not has_both_classes(labels):
            axes.plot([], [], ls=":", label=f"{name} (one class only)")
            continue
        fpr, tpr, _ = roc_curve(labels, probs)
        axes.plot(fpr, tpr, lw=2, label=f"{name} (AUC = {roc_auc_score(labels, probs):.3f})")
    _roc_axes(axes, title, legend_size=8)
    return figure


def sample_faces(faces: pd.DataFrame, k: int, seed: int = 0) -> pd.DataFrame:
    """A seeded sample of ``k`` faces, half real and half fake, from as many videos as possible."""
    if k <= 0 or faces.empty:
        return faces.iloc[:0]
    picked = []
    groups = [g for _, g in faces.groupby("label", sort=True)]
    for i, group in enumerate(groups):
        share = k // len(groups) + (1 if i < k % len(groups) else 0)
        shuffled = group.sample(frac=1.0, random_state=seed)
        repeat = shuffled.groupby("video_id", sort=False).cumcount()  # 0: a video's first face
        picked.append(shuffled.iloc[np.argsort(repeat.to_numpy(), kind="stable")[:share]])
    return pd.concat(picked)


def most_confident_errors(
    frame: pd.DataFrame, threshold: float = 0.5, k: int = 16
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``k`` worst false positives (highest P(fake) among reals) and false negatives.

    Uses the same ``prob >= threshold`` rule as :func:`binary_metrics`. Rows keep every column
    and their original index, so a caller can load the face crops for :func:`plot_gallery`.

    Returns:
        ``(false_positives sorted by prob descending, false_negatives sorted by prob ascending)``.
    """
    missing = [c for c in ("label", "prob") if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks columns {missing}; it has {list(frame.columns)}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    predicted_fake = frame["prob"] >= threshold
    false_positives = frame[(frame["label"] == 0) & predicted_fake]
    false_negatives = frame[(frame["label"] == 1) & ~predicted_fake]
    return (
        false_positives.sort_values("prob", ascending=False, kind="stable").head(k),
        false_negatives.sort_values("prob", ascending=True, kind="stable").head(k),
    )


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render a figure to an ``HxWx3`` ``uint8`` array (TensorBoard ``add_image``, HWC)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    buffer.seek(0)
    with Image.open(buffer) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int | None = None) -> Path:
    """Write a figure as PNG atomically and release it.

    Written through :func:`deepfake_exp.utils.io.atomic_write`, so a report never picks up a
    half-written image from an interrupted run (and the file gets the usual permissions).
    """
    try:
        return atomic_write(
            Path(path),
            lambda tmp: fig.savefig(tmp, format="png", dpi=dpi if dpi is not None else "figure"),
        )
    finally:
        _close(fig)


def _close(fig: Figure) -> None:
    """Drop a figure from pyplot's registry if a caller created it there; ours never are."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(fig)
