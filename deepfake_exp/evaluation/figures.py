"""The figure set of one evaluation: curves, confusion, score histograms, error galleries.

Written as PNG under ``<out>/plots/`` and, given a TensorBoard writer, as ``eval/<name>``
images; anything with an ``add_image(tag, array, step, dataformats=...)`` method will do.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import pandas as pd
from matplotlib.figure import Figure

from deepfake_exp.evaluation import plots


def error_galleries(faces: pd.DataFrame, threshold: float, faces_root: Path) -> dict[str, Figure]:
    """The most confident false positives and false negatives, from their crop files."""
    false_pos, false_neg = plots.most_confident_errors(faces, threshold, k=16)
    figures = {}
    for name, errors in (("false_positives", false_pos), ("false_negatives", false_neg)):
        if len(errors):
            images = [
                cv2.cvtColor(cv2.imread(str(faces_root / p)), cv2.COLOR_BGR2RGB)
                for p in errors["face_path"]
            ]
            captions = [
                f"{v[-18:]}\np={p:.2f}"
                for v, p in zip(errors["video_id"], errors["prob"], strict=True)
            ]
            figures[f"gallery_{name}"] = plots.plot_gallery(
                images, captions, title=name.replace("_", " ")
            )
    return figures


def write_figures(
    figures: Mapping[str, Figure], out_dir: Path, writer: Any | None = None, step: int = 0
) -> list[Path]:
    """Each figure as ``<out_dir>/plots/<name>.png`` (and a TensorBoard image)."""
    written = []
    for name, figure in figures.items():
        if writer is not None:
            writer.add_image(f"eval/{name}", plots.figure_to_array(figure), step, dataformats="HWC")
        written.append(plots.save_figure(figure, out_dir / "plots" / f"{name}.png"))
    return written


def write_plots(
    out_dir: Path,
    faces: pd.DataFrame,
    videos: pd.DataFrame,
    metrics: dict,
    faces_root: Path,
    history_csv: Path | None,
    writer: Any | None,
    step: int = 0,
    extra: Mapping[str, Figure] | None = None,
) -> list[Path]:
    """ROC, PR, confusion matrix, score histograms, curves, error galleries and ``extra``."""
    figures = {
        "roc_face": plots.plot_roc(faces["label"], faces["prob"], "ROC (faces)"),
        "roc_video": plots.plot_roc(videos["label"], videos["prob"], "ROC (videos)"),
        "pr_video": plots.plot_pr(videos["label"], videos["prob"], "Precision-recall (videos)"),
        "confusion_video": plots.plot_confusion_matrix(metrics["video"]["confusion_matrix"]),
        "scores_video": plots.plot_score_histogram(
            videos["label"], videos["prob"], metrics["video"]["threshold"]
        ),
    }
    if history_csv is not None and history_csv.is_file():
        history = pd.read_csv(history_csv)
        if "epoch" in history:
            history = history.groupby("epoch").mean(numeric_only=True).reset_index()
            figures["training_curves"] = plots.plot_training_curves(history)
    figures.update(error_galleries(faces, metrics["face"]["threshold"], faces_root))
    figures.update(extra or {})
    return write_figures(figures, out_dir, writer, step)
