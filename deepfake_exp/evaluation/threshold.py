"""Choose the decision threshold on validation predictions.

The threshold is a hyper-parameter: it is chosen here on *validation* scores and then passed,
fixed, to :func:`deepfake_exp.evaluation.metrics.binary_metrics` on the test scores. These
functions never see test data, so test is read once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from deepfake_exp.evaluation.metrics import as_binary_arrays, equal_error_rate, has_both_classes

FIXED_THRESHOLD = 0.5


def fixed_threshold(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """0.5 whatever the data: the baseline every study reports."""
    return FIXED_THRESHOLD


def max_f1_threshold(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """The score that, used as ``prob >= threshold``, gives the highest F1 (lowest on ties)."""
    precision, recall, thresholds = precision_recall_curve(y_true, y_prob)
    # The last (precision=1, recall=0) point has no threshold.
    precision, recall = precision[:-1], recall[:-1]
    denominator = precision + recall
    f1 = np.divide(
        2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0
    )
    best = np.flatnonzero(f1 == f1.max())
    return float(thresholds[best].min())


def eer_threshold(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """The (interpolated) threshold where false-positive and false-negative rates are equal."""
    return equal_error_rate(y_true, y_prob)[1]


def youden_threshold(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """The score maximising Youden's J = TPR - FPR (the ROC point farthest above chance)."""
    fpr, tpr, thresholds = roc_curve(y_true, y_prob, drop_intermediate=False)
    finite = np.isfinite(thresholds)
    j = (tpr - fpr)[finite]
    return float(thresholds[finite][int(np.argmax(j))])


THRESHOLD_CRITERIA: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "fixed": fixed_threshold,
    "f1": max_f1_threshold,
    "eer": eer_threshold,
    "youden": youden_threshold,
}


def select_threshold(y_true: Any, y_prob: Any, criterion: str = "f1") -> float:
    """Pick a decision threshold on validation predictions.

    Args:
        y_true: Validation labels (0 real, 1 fake).
        y_prob: Validation probabilities of FAKE.
        criterion: Key of :data:`THRESHOLD_CRITERIA`: ``fixed`` (0.5), ``f1`` (max F1),
            ``eer`` (equal error rate point) or ``youden`` (max TPR - FPR).

    Returns:
        The threshold; a score ``>= threshold`` is predicted FAKE.

    Raises:
        ValueError: For an unknown criterion, or a data-driven criterion on data holding only
            one class (no threshold can be chosen from it).
    """
    if criterion not in THRESHOLD_CRITERIA:
        raise ValueError(
            f"unknown threshold criterion {criterion!r}; choose one of {sorted(THRESHOLD_CRITERIA)}"
        )
    labels, probs = as_binary_arrays(y_true, y_prob)
    if criterion != "fixed" and not has_both_classes(labels):
        raise ValueError(
            f"threshold criterion {criterion!r} needs both real and fake samples in the "
            f"validation data, got only label {int(labels[0])} ({labels.size} samples); "
            "use criterion='fixed' or a larger validation split"
        )
    return float(THRESHOLD_CRITERIA[criterion](labels, probs))
