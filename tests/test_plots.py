"""Figures render to real, non-blank PNGs; galleries pick the right errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from deepfake_exp.evaluation.metrics import binary_metrics
from deepfake_exp.evaluation.plots import (
    figure_to_array,
    most_confident_errors,
    plot_confusion_matrix,
    plot_gallery,
    plot_pr,
    plot_reliability,
    plot_roc,
    plot_score_histogram,
    plot_training_curves,
    save_figure,
)

RNG = np.random.default_rng(0)
LABELS = RNG.integers(0, 2, size=200)
PROBS = 1.0 / (1.0 + np.exp(-(RNG.normal(size=200) + 1.5 * (2 * LABELS - 1))))
HISTORY = pd.DataFrame(
    {
        "epoch": [0, 0, 1, 1, 2, 2],
        "train/loss": [0.9, np.nan, 0.6, np.nan, 0.4, np.nan],
        "val/loss": [np.nan, 0.8, np.nan, 0.65, np.nan, 0.5],
        "val/auc": [np.nan, 0.7, np.nan, 0.8, np.nan, 0.86],
    }
)


def face_images(n: int) -> list[np.ndarray]:
    return [RNG.integers(0, 256, size=(32, 24, 3), dtype=np.uint8) for _ in range(n)]


FIGURES: dict[str, Callable[[], Figure]] = {
    "roc": lambda: plot_roc(LABELS, PROBS),
    "pr": lambda: plot_pr(LABELS, PROBS),
    "confusion": lambda: plot_confusion_matrix(binary_metrics(LABELS, PROBS)["confusion_matrix"]),
    "histogram": lambda: plot_score_histogram(LABELS, PROBS, threshold=0.4),
    "reliability": lambda: plot_reliability(LABELS, PROBS),
    "training": lambda: plot_training_curves(HISTORY),
    "gallery": lambda: plot_gallery(face_images(5), [f"p={p:.2f}" for p in PROBS[:5]], ncols=3),
    "roc_one_class": lambda: plot_roc(np.ones(10, dtype=int), PROBS[:10]),
}


def assert_real_picture(pixels: np.ndarray) -> None:
    assert pixels.dtype == np.uint8
    assert pixels.ndim == 3 and pixels.shape[2] == 3
    assert pixels.shape[0] > 50 and pixels.shape[1] > 50
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 2, "image is blank"


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figures_save_as_non_blank_png(name: str, tmp_path: Path) -> None:
    figure = FIGURES[name]()
    assert isinstance(figure, Figure)
    target = save_figure(figure, tmp_path / "plots" / f"{name}.png")

    assert target == tmp_path / "plots" / f"{name}.png"
    assert target.stat().st_size > 0
    with Image.open(target) as image:
        assert image.format == "PNG"
        assert_real_picture(np.asarray(image.convert("RGB")))
    assert [p.name for p in target.parent.iterdir()] == [f"{name}.png"]  # no temp files left


def test_save_figure_replaces_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "roc.png"
    target.write_bytes(b"stale")
    save_figure(plot_roc(LABELS, PROBS), target, dpi=50)
    with Image.open(target) as image:
        assert image.format == "PNG"
        assert image.size == (250, 225)  # 5 x 4.5 inches at 50 dpi


def test_figure_to_array_is_hwc_uint8() -> None:
    figure = plot_score_histogram(LABELS, PROBS)
    pixels = figure_to_array(figure)
    assert_real_picture(pixels)
    width, height = figure.get_size_inches() * figure.dpi
    assert pixels.shape[:2] == (round(height), round(width))


def test_training_curves_share_panels_by_metric_name() -> None:
    figure = plot_training_curves(HISTORY)
    titles = sorted(axes.get_title() for axes in figure.axes)
    assert titles == ["auc", "loss"]
    loss_axes = next(axes for axes in figure.axes if axes.get_title() == "loss")
    assert sorted(line.get_label() for line in loss_axes.get_lines()) == ["train/loss", "val/loss"]
    assert all(len(line.get_xdata()) == 3 for line in loss_axes.get_lines())  # NaNs skipped
    with pytest.raises(ValueError, match="'epoch' column"):
        plot_training_curves(HISTORY.drop(columns="epoch"))


def test_gallery_layout_and_errors() -> None:
    figure = plot_gallery(face_images(5), list("abcde"), ncols=2)
    assert len(figure.axes) == 5
    assert [axes.get_title() for axes in figure.axes] == list("abcde")
    assert len(plot_gallery([], []).axes) == 1  # an explicit "no images" panel
    with pytest.raises(ValueError, match="2 images but 1 captions"):
        plot_gallery(face_images(2), ["only one"])
    with pytest.raises(ValueError, match="HxW or HxWx3"):
        plot_gallery([np.zeros((4, 4, 7), dtype=np.uint8)], ["bad"])


def test_confusion_matrix_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match="square 2x2"):
        plot_confusion_matrix([[1, 2, 3], [4, 5, 6]])


def test_most_confident_errors() -> None:
    frame = pd.DataFrame(
        {
            "face_path": [f"f{i}.png" for i in range(8)],
            "label": [0, 0, 0, 0, 1, 1, 1, 1],
            "prob": [0.9, 0.2, 0.6, 0.99, 0.1, 0.45, 0.8, 0.3],
        }
    )
    false_positives, false_negatives = most_confident_errors(frame, threshold=0.5, k=16)
    assert false_positives["face_path"].tolist() == ["f3.png", "f0.png", "f2.png"]
    assert false_negatives["face_path"].tolist() == ["f4.png", "f7.png", "f5.png"]
    assert list(false_positives.columns) == ["face_path", "label", "prob"]

    top_fp, top_fn = most_confident_errors(frame, threshold=0.5, k=2)
    assert top_fp["prob"].tolist() == [0.99, 0.9]
    assert top_fn["prob"].tolist() == [0.1, 0.3]
    # The same rule as binary_metrics: the error counts agree.
    metrics = binary_metrics(frame["label"], frame["prob"], threshold=0.5)
    assert (metrics["fp"], metrics["fn"]) == (len(false_positives), len(false_negatives))


def test_denormalise_inverts_the_normalisation_for_one_image_and_a_batch() -> None:
    import torch

    from deepfake_exp.utils.images import denormalise

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    rgb = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    images = torch.from_numpy(rgb).permute(0, 3, 1, 2) / 255.0 - torch.tensor(mean).view(3, 1, 1)
    images = images / torch.tensor(std).view(3, 1, 1)
    assert np.array_equal(denormalise(images, mean, std), rgb)
    assert np.array_equal(denormalise(images[1], mean, std), rgb[1])


def test_saved_figures_get_the_umask_permissions_not_a_private_temp_file(tmp_path: Path) -> None:
    import os

    previous = os.umask(0o022)
    try:
        target = save_figure(plot_roc(LABELS, PROBS), tmp_path / "roc.png", dpi=30)
    finally:
        os.umask(previous)
    assert target.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["roc.png"]  # no temporary left behind
