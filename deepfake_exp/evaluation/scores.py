"""Metric blocks of scored predictions: one split's face and video metrics with bootstrap
intervals over groups, and the val-fitted calibration judged on test (``metrics.json``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from deepfake_exp.evaluation.aggregate import failure_counts
from deepfake_exp.evaluation.bootstrap import (
    CI_METRICS,
    DEFAULT_LEVEL,
    bootstrap_metrics,
    resampling_groups,
)
from deepfake_exp.evaluation.calibration import apply_temperature, fit_temperature
from deepfake_exp.evaluation.metrics import (
    binary_metrics,
    clipped_log_loss,
    expected_calibration_error,
)


@dataclass(frozen=True)
class BootstrapSettings:
    """How the confidence interval of every test metric is resampled (over groups)."""

    n_resamples: int = 1000
    seed: int = 0
    level: float = DEFAULT_LEVEL

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_resamples": self.n_resamples,
            "seed": self.seed,
            "level": self.level,
            "unit": "group",
        }


def metric_block(
    frame: pd.DataFrame, threshold: float, bootstrap: BootstrapSettings | None = None
) -> dict:
    """``binary_metrics`` of a frame, plus ``<metric>_ci: [low, high]`` when bootstrapped.

    An interval is ``None`` when no resample defines the metric (e.g. one class only).
    """
    labels, probs = frame["label"].to_numpy(), frame["prob"].to_numpy()
    block = binary_metrics(labels, probs, threshold)
    if "num_faces" in frame:
        block["n_no_face"] = int((frame["num_faces"] == 0).sum())
    if bootstrap is None:
        return block
    groups = resampling_groups(frame)
    intervals = bootstrap_metrics(
        labels,
        probs,
        groups,
        CI_METRICS,
        bootstrap.n_resamples,
        bootstrap.seed,
        bootstrap.level,
        threshold=threshold,
    )
    for name, interval in intervals.items():
        defined = interval["low"] is not None
        block[f"{name}_ci"] = [interval["low"], interval["high"]] if defined else None
    block["n_groups"] = int(np.unique(groups).size)
    return block


def split_block(
    faces: pd.DataFrame,
    videos: pd.DataFrame,
    failed: pd.DataFrame,
    thresholds: dict[str, float],
    bootstrap: BootstrapSettings | None = None,
) -> dict:
    """One split's ``face`` and ``video`` metrics and its failed inputs (``n_failed``)."""
    return {
        "face": metric_block(faces, thresholds["face"], bootstrap),
        "video": metric_block(videos, thresholds["video"], bootstrap),
        **failure_counts(failed),
    }


def calibration_block(val: pd.DataFrame, test: pd.DataFrame) -> dict[str, float]:
    """Temperature fitted on ``val`` probabilities, log-loss and ECE on ``test`` before/after."""
    temperature = fit_temperature(val["prob"], val["label"], input_kind="prob")
    after = apply_temperature(test["prob"], temperature)
    return {
        "temperature": temperature,
        "test_log_loss_before": clipped_log_loss(test["label"], test["prob"]),
        "test_log_loss_after": clipped_log_loss(test["label"], after),
        "test_ece_before": expected_calibration_error(test["label"], test["prob"]),
        "test_ece_after": expected_calibration_error(test["label"], after),
    }


def calibration_report(
    val_faces: pd.DataFrame,
    val_videos: pd.DataFrame,
    test_faces: pd.DataFrame,
    test_videos: pd.DataFrame,
) -> dict:
    """Temperature scaling per level, fitted on val, judged on test.

    The top-level keys are the video level (the DFDC score is a video log-loss); ``face``
    holds the same block for face scores. Each level gets its own temperature because
    averaging faces already softens video scores.
    """
    return {
        "level": "video",
        **calibration_block(val_videos, test_videos),
        "face": calibration_block(val_faces, test_faces),
    }
