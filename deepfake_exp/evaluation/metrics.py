"""Binary classification metrics over whole epochs of predictions.

Every function takes labels (0 = real, 1 = fake) and the predicted probability of FAKE for the
*whole* split, never batch averages, so the numbers match what scikit-learn or the DFDC
leaderboard would report for the same predictions. Results are plain Python numbers so they
go straight into ``metrics.json``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

LOG_LOSS_EPS = 1e-15


def as_binary_arrays(y_true: Any, y_prob: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate labels and probabilities and return them as 1-D ``int64`` / ``float64`` arrays.

    Every metric goes through here so a shape mismatch, a label other than 0/1 or a score
    outside [0, 1] fails with one clear message instead of a silently wrong number.
    """
    labels = np.asarray(y_true).reshape(-1)
    probs = np.asarray(y_prob, dtype=np.float64).reshape(-1)
    if labels.size == 0:
        raise ValueError("cannot compute metrics on an empty set of predictions")
    if labels.shape != probs.shape:
        raise ValueError(
            f"y_true and y_prob differ in length: {labels.size} labels vs {probs.size} scores"
        )
    if not np.isin(labels, (0, 1)).all():
        found = sorted(set(np.unique(labels).tolist()) - {0, 1})
        raise ValueError(f"labels must be 0 (real) or 1 (fake), found {found[:5]}")
    if not np.isfinite(probs).all():
        raise ValueError(f"y_prob holds {int((~np.isfinite(probs)).sum())} NaN/inf values")
    if probs.min() < 0.0 or probs.max() > 1.0:
        raise ValueError(
            f"y_prob must be probabilities in [0, 1], got range "
            f"[{probs.min():.4g}, {probs.max():.4g}] (apply a sigmoid/softmax first)"
        )
    return labels.astype(np.int64), probs


def has_both_classes(y_true: np.ndarray) -> bool:
    """Ranking metrics (ROC-AUC, AP, EER) are undefined unless both classes are present."""
    return np.unique(y_true).size == 2


def clipped_log_loss(y_true: Any, y_prob: Any, eps: float = LOG_LOSS_EPS) -> float:
    """DFDC log-loss ``-mean(y log p + (1 - y) log(1 - p))`` with ``p`` clipped to [eps, 1 - eps].

    The clipping bounds the penalty of one confidently wrong prediction at ``-log(eps)``
    (about 34.5), exactly as the DFDC leaderboard scored submissions.
    """
    labels, probs = as_binary_arrays(y_true, y_prob)
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps}")
    clipped = np.clip(probs, eps, 1.0 - eps)
    losses = labels * np.log(clipped) + (1 - labels) * np.log1p(-clipped)
    return float(-losses.mean())


def equal_error_rate(y_true: Any, y_prob: Any) -> tuple[float, float]:
    """Return ``(eer, threshold)`` where the false-positive and false-negative rates meet.

    The ROC curve is a step function of the threshold, so the crossing usually lies between
    two thresholds; both the rate and the threshold are linearly interpolated there, which is
    the usual definition in the deepfake literature. ``(nan, nan)`` when only one class is
    present, because neither rate is then defined.
    """
    labels, probs = as_binary_arrays(y_true, y_prob)
    if not has_both_classes(labels):
        return float("nan"), float("nan")
    fpr, tpr, thresholds = roc_curve(labels, probs, drop_intermediate=False)
    # sklearn starts the curve at threshold=inf (nothing predicted fake); the smallest float
    # above the top score means the same and keeps the interpolation finite.
    thresholds = np.where(np.isfinite(thresholds), thresholds, np.nextafter(probs.max(), np.inf))
    gap = (1.0 - tpr) - fpr  # FNR - FPR: +1 at the first point, decreasing to -1 at the last
    crossing = int(np.argmax(gap <= 0.0))
    if gap[crossing] == 0.0:
        return float(fpr[crossing]), float(thresholds[crossing])
    before, after = crossing - 1, crossing
    weight = gap[before] / (gap[before] - gap[after])
    eer = fpr[before] + weight * (fpr[after] - fpr[before])
    threshold = thresholds[before] + weight * (thresholds[after] - thresholds[before])
    return float(eer), float(threshold)


def calibration_bins(
    y_true: Any, y_prob: Any, n_bins: int = 15
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bin predictions by probability of FAKE into ``n_bins`` equal-width bins.

    Returns per-bin ``(mean predicted probability, observed fraction of fakes, count)``; empty
    bins hold NaN means and a zero count. Shared by the ECE and the reliability diagram so the
    plot shows exactly the gaps the number sums.
    """
    labels, probs = as_binary_arrays(y_true, y_prob)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bins are [lo, hi) except the last, which also holds p == 1.
    index = np.clip(np.searchsorted(edges, probs, side="right") - 1, 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    prob_sums = np.bincount(index, weights=probs, minlength=n_bins)
    label_sums = np.bincount(index, weights=labels.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.where(counts > 0, prob_sums / counts, np.nan)
        frac_fake = np.where(counts > 0, label_sums / counts, np.nan)
    return mean_prob, frac_fake, counts


def expected_calibration_error(y_true: Any, y_prob: Any, n_bins: int = 15) -> float:
    """Count-weighted mean gap between predicted P(fake) and the observed fraction of fakes.

    Uses the probability of the positive class (the reliability-diagram definition for a binary
    detector) so that an over-confident *real* prediction is penalised like a fake one.
    """
    mean_prob, frac_fake, counts = calibration_bins(y_true, y_prob, n_bins)
    filled = counts > 0
    gaps = np.abs(mean_prob[filled] - frac_fake[filled])
    return float((gaps * counts[filled]).sum() / counts.sum())


def binary_metrics(y_true: Any, y_prob: Any, threshold: float = 0.5) -> dict[str, float | list]:
    """All scalar metrics of one split at one decision threshold, JSON-ready.

    A score ``>= threshold`` is predicted FAKE (the convention of ``roc_curve`` and of
    :func:`deepfake_exp.evaluation.threshold.select_threshold`). Ranking metrics are NaN rather
    than an exception when only one class is present, so a tiny or one-sided split still
    yields a report.
    """
    labels, probs = as_binary_arrays(y_true, y_prob)
    preds = (probs >= threshold).astype(np.int64)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(labels, preds, labels=[0, 1]).ravel())
    both = has_both_classes(labels)
    eer, _ = equal_error_rate(labels, probs)
    return {
        "n": int(labels.size),
        "n_real": int((labels == 0).sum()),
        "n_fake": int((labels == 1).sum()),
        "threshold": float(threshold),
        "accuracy": float(accuracy_score(labels, preds)),
        "precision": float(precision_score(labels, preds, zero_division=0)),
        "recall": float(recall_score(labels, preds, zero_division=0)),
        "f1": float(f1_score(labels, preds, zero_division=0)),
        "roc_auc": float(roc_auc_score(labels, probs)) if both else float("nan"),
        "average_precision": (
            float(average_precision_score(labels, probs)) if both else float("nan")
        ),
        "eer": eer,
        "log_loss": clipped_log_loss(labels, probs),
        "ece": expected_calibration_error(labels, probs),
        "confusion_matrix": [[tn, fp], [fn, tp]],
        "tn": tn,
        "fp": fp,
        "fn": fn,
        "tp": tp,
    }
