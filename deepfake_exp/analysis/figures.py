"""Figures of the cluster analysis: 2-D maps, per-cluster galleries, the bias chart.

Built on :mod:`deepfake_exp.evaluation.plots` (Agg figures, never pyplot), so they save and go
to TensorBoard the same way as the evaluation plots.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from deepfake_exp.analysis.clusters import NOISE
from deepfake_exp.evaluation.plots import CLASS_COLOURS, CLASS_NAMES, new_figure, plot_gallery

MAX_LEGEND = 20
MAX_ANNOTATED = 80


def _point_size(n: int) -> float:
    """Smaller dots as the map fills up, so 100k faces do not become one blot."""
    return float(np.clip(4000.0 / max(n, 1), 0.5, 30.0))


def _axes(figure: Figure, title: str):
    axes = figure.add_subplot()
    axes.set(title=title, xticks=[], yticks=[])
    return axes


def plot_label_map(points: np.ndarray, labels: np.ndarray, title: str = "Faces by label") -> Figure:
    """The 2-D map coloured real / fake: do fakes form their own regions?"""
    points, labels = np.asarray(points), np.asarray(labels)
    figure = new_figure(6.5, 6.0)
    axes = _axes(figure, title)
    for label in (0, 1):
        chosen = labels == label
        if chosen.any():
            axes.scatter(
                *points[chosen, :2].T,
                s=_point_size(len(points)),
                c=CLASS_COLOURS[label],
                alpha=0.6,
                linewidths=0,
                rasterized=True,
                label=f"{CLASS_NAMES[label]} ({int(chosen.sum())})",
            )
    axes.legend(loc="best", markerscale=3)
    return figure


def plot_cluster_map(
    points: np.ndarray, clusters: np.ndarray, title: str = "HDBSCAN clusters"
) -> Figure:
    """The 2-D map coloured by cluster (noise grey), cluster ids written at their centres."""
    points, clusters = np.asarray(points), np.asarray(clusters)
    ids = [int(c) for c in np.unique(clusters) if c != NOISE]
    palette = colormaps["tab20"]
    figure = new_figure(6.5, 6.0)
    n_noise = int((clusters == NOISE).sum())
    axes = _axes(figure, f"{title}: {len(ids)} clusters, {n_noise} noise")
    size = _point_size(len(points))
    if n_noise:
        noise = clusters == NOISE
        axes.scatter(*points[noise, :2].T, s=size, c="lightgrey", linewidths=0, rasterized=True)
    for position, cluster in enumerate(ids):
        members = points[clusters == cluster, :2]
        axes.scatter(
            *members.T,
            s=size,
            color=palette(position % palette.N),
            linewidths=0,
            rasterized=True,
            label=str(cluster) if len(ids) <= MAX_LEGEND else None,
        )
        if len(ids) <= MAX_ANNOTATED:
            axes.annotate(str(cluster), np.median(members, axis=0), fontsize=7, ha="center")
    if 0 < len(ids) <= MAX_LEGEND:
        axes.legend(loc="best", fontsize=7, markerscale=3, title="cluster")
    return figure


def plot_value_map(
    points: np.ndarray, values: np.ndarray, title: str = "Detector P(fake)", label: str = "P(fake)"
) -> Figure:
    """The 2-D map coloured by a score in [0, 1] (e.g. the detector's P(fake))."""
    points = np.asarray(points)
    figure = new_figure(7.0, 6.0)
    axes = _axes(figure, title)
    image = axes.scatter(
        *points[:, :2].T,
        s=_point_size(len(points)),
        c=np.asarray(values),
        cmap="coolwarm",
        vmin=0.0,
        vmax=1.0,
        linewidths=0,
        rasterized=True,
    )
    figure.colorbar(image, ax=axes, label=label)
    return figure


def plot_bias_chart(table: pd.DataFrame, max_rows: int = 30) -> Figure:
    """Bars per cluster in table order (worst-served first): error rate and fake share."""
    shown = table.head(max_rows)
    panels = [c for c in ("error_rate", "log_loss", "fake_share") if c in shown]
    names = [
        f"{'noise' if c == NOISE else c} (n={n})"
        for c, n in zip(shown["cluster"], shown["size"], strict=True)
    ]
    figure = new_figure(3.2 * len(panels) + 1.5, 0.28 * len(shown) + 1.5)
    figure.suptitle(f"Per-cluster table, first {len(shown)} of {len(table)} rows")
    positions = np.arange(len(shown))
    for number, column in enumerate(panels, start=1):
        axes = figure.add_subplot(1, len(panels), number)
        axes.barh(positions, shown[column].to_numpy(dtype=float), color="tab:red", alpha=0.75)
        axes.set_yticks(positions, labels=names if number == 1 else [], fontsize=7)
        axes.invert_yaxis()
        axes.set(title=column.replace("_", " "))
        axes.grid(axis="x", alpha=0.3)
    return figure


def read_faces(root: str | Path, face_paths: Sequence[str], size: int | None = None) -> list:
    """RGB crops (optionally resized to ``size`` x ``size``); an unreadable crop raises."""
    faces = []
    for relative in face_paths:
        path = Path(root) / relative
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"cannot read face crop {path}")
        if size is not None:
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        faces.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return faces


def cluster_gallery(
    faces: Sequence[np.ndarray], rows: pd.DataFrame, title: str, ncols: int = 6
) -> Figure:
    """A cluster's most typical faces, captioned with video, label and P(fake) if known."""
    captions = []
    for row in rows.itertuples(index=False):
        text = f"{str(row.video_id)[-14:]}\n{CLASS_NAMES[int(row.label)]}"
        if hasattr(row, "prob"):
            text += f" p={row.prob:.2f}"
        captions.append(text)
    return plot_gallery(list(faces), captions, ncols=ncols, title=title)
