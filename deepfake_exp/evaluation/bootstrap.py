"""Uncertainty of test metrics: group bootstrap CIs, paired comparisons and DeLong's test.

A default test set holds a few dozen videos, so one ROC-AUC moves by several points with the
seed. Every headline number therefore carries a percentile bootstrap interval resampled over
*groups* (identities): faces and videos of one identity are not independent, and resampling
them one by one would make the interval too narrow.

A resample draws as many groups as there are, with replacement; it is represented by integer
weights per sample (how often its group was drawn), so the built-in metrics of
:data:`WEIGHTED_METRICS` are computed for a whole chunk of resamples at once with array
operations (1000 resamples over a few hundred videos take milliseconds). Any other callable
``metric(labels, scores) -> float`` works too, one resample at a time. Resamples where a metric
is undefined (one class only for ROC-AUC, no fakes for recall...) are skipped and counted:
``n_used`` says how many made the interval.

Pure functions over arrays; nothing here imports training code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from scipy.stats import norm

from deepfake_exp.evaluation.metrics import LOG_LOSS_EPS, as_binary_arrays, has_both_classes

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
# Elements of one (resamples x samples) weight chunk: bounds memory on face-level sets.
_CHUNK_ELEMENTS = 2_000_000

Metric = str | Callable[[np.ndarray, np.ndarray], float]


# --------------------------------------------------------------------------------------------
# Weighted metrics: one value per row of a (resamples x samples) weight matrix
# --------------------------------------------------------------------------------------------


class _Ranked:
    """Samples sorted by score (descending) and cut into blocks of tied scores.

    Ranking metrics only depend on how much positive and negative weight each block of tied
    scores holds, so they are computed on (resamples x blocks) sums; ties count half, as in
    the Mann-Whitney statistic and scikit-learn.
    """

    def __init__(self, labels: np.ndarray, scores: np.ndarray) -> None:
        self.order = np.argsort(-scores, kind="stable")
        sorted_scores = scores[self.order]
        self.starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
        self.positive = labels[self.order].astype(np.float64)

    def block_sums(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positive and negative weight per block of tied scores, highest scores first."""
        w = weights[:, self.order]
        pos = np.add.reduceat(w * self.positive, self.starts, axis=1)
        neg = np.add.reduceat(w * (1.0 - self.positive), self.starts, axis=1)
        return pos, neg


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` with NaN where the denominator is zero (undefined)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(
            denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan
        )


def _roc_auc(ranked: _Ranked, weights: np.ndarray) -> np.ndarray:
    pos, neg = ranked.block_sums(weights)
    total_neg = neg.sum(axis=1, keepdims=True)
    neg_below = total_neg - np.cumsum(neg, axis=1)  # negatives scored strictly lower
    wins = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    return _divide(wins, pos.sum(axis=1) * total_neg[:, 0])


def _average_precision(ranked: _Ranked, weights: np.ndarray) -> np.ndarray:
    """scikit-learn's AP: sum over thresholds of (recall step) x precision, no interpolation."""
    pos, neg = ranked.block_sums(weights)
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    precision = np.nan_to_num(_divide(tp, tp + fp))  # a block with no weight adds no recall
    return _divide((pos * precision).sum(axis=1), pos.sum(axis=1))


def _eer(ranked: _Ranked, weights: np.ndarray) -> np.ndarray:
    """Equal error rate, interpolated where FNR - FPR crosses zero (as ``equal_error_rate``)."""
    pos, neg = ranked.block_sums(weights)
    total_pos, total_neg = pos.sum(axis=1), neg.sum(axis=1)
    zero = np.zeros((len(weights), 1))
    tpr = np.hstack([zero, np.cumsum(pos, axis=1)]) / np.where(total_pos > 0, total_pos, 1)[:, None]
    fpr = np.hstack([zero, np.cumsum(neg, axis=1)]) / np.where(total_neg > 0, total_neg, 1)[:, None]
    gap = (1.0 - tpr) - fpr  # +1 at the first point, non-increasing, -1 at the last
    crossing = np.argmax(gap <= 0.0, axis=1)[:, None]
    before = np.maximum(crossing - 1, 0)
    g_after = np.take_along_axis(gap, crossing, 1)[:, 0]
    g_before = np.take_along_axis(gap, before, 1)[:, 0]
    f_after = np.take_along_axis(fpr, crossing, 1)[:, 0]
    f_before = np.take_along_axis(fpr, before, 1)[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        step = np.where(g_after == 0.0, 0.0, g_before / (g_before - g_after))
    eer = np.where(g_after == 0.0, f_after, f_before + step * (f_after - f_before))
    return np.where((total_pos > 0) & (total_neg > 0), eer, np.nan)


def _confusion(
    labels: np.ndarray, scores: np.ndarray, weights: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weighted (tp, fp, fn, tn) per resample; ``score >= threshold`` is predicted FAKE."""
    predicted = scores >= threshold
    fake = labels == 1
    cells = [(predicted == p) & (fake == f) for p, f in ((1, 1), (1, 0), (0, 1), (0, 0))]
    tp, fp, fn, tn = (weights @ cell.astype(np.float64) for cell in cells)
    return tp, fp, fn, tn


def _log_loss(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    clipped = np.clip(scores, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    losses = -(labels * np.log(clipped) + (1 - labels) * np.log1p(-clipped))
    return _divide(weights @ losses, weights.sum(axis=1))


def _threshold_metric(name: str) -> Callable[..., np.ndarray]:
    def compute(labels, scores, weights, threshold, ranked):  # noqa: ARG001 (uniform signature)
        tp, fp, fn, tn = _confusion(labels, scores, weights, threshold)
        if name == "accuracy":
            return _divide(tp + tn, tp + fp + fn + tn)
        if name == "precision":
            return _divide(tp, tp + fp)
        if name == "recall":
            return _divide(tp, tp + fn)
        # f1 is undefined without fakes in the resample (recall is)
        return np.where(tp + fn > 0, _divide(2 * tp, 2 * tp + fp + fn), np.nan)

    compute.__name__ = name
    return compute


WeightedMetric = Callable[[np.ndarray, np.ndarray, np.ndarray, float, _Ranked], np.ndarray]

WEIGHTED_METRICS: dict[str, WeightedMetric] = {
    "roc_auc": lambda labels, scores, weights, threshold, ranked: _roc_auc(ranked, weights),
    "average_precision": lambda labels, scores, weights, threshold, ranked: _average_precision(
        ranked, weights
    ),
    "eer": lambda labels, scores, weights, threshold, ranked: _eer(ranked, weights),
    "log_loss": lambda labels, scores, weights, threshold, ranked: _log_loss(
        labels, scores, weights
    ),
    **{name: _threshold_metric(name) for name in ("accuracy", "precision", "recall", "f1")},
}
"""Metrics computed for many resamples at once; each matches ``binary_metrics`` on the
resampled data (tests check it), except that undefined values are NaN instead of 0."""

CI_METRICS = (
    "roc_auc",
    "average_precision",
    "eer",
    "log_loss",
    "accuracy",
    "precision",
    "recall",
    "f1",
)


def weighted_metric(
    name: str,
    labels: Any,
    scores: Any,
    weights: np.ndarray,
    threshold: float = 0.5,
) -> np.ndarray:
    """Metric ``name`` for each row of ``weights`` (resamples x samples, integer counts)."""
    if name not in WEIGHTED_METRICS:
        raise ValueError(f"unknown metric {name!r}; choose one of {sorted(WEIGHTED_METRICS)}")
    labels, scores = as_binary_arrays(labels, scores)
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    return WEIGHTED_METRICS[name](labels, scores, weights, threshold, _Ranked(labels, scores))


# --------------------------------------------------------------------------------------------
# Resampling
# --------------------------------------------------------------------------------------------


def _group_index(groups: Any, n: int) -> tuple[np.ndarray, int]:
    """Each sample's group as ``0..G-1`` (each sample its own group when ``groups`` is None)."""
    if groups is None:
        return np.arange(n), n
    groups = np.asarray(groups, dtype=object).reshape(-1)
    if groups.size != n:
        raise ValueError(f"groups has {groups.size} entries for {n} samples")
    if any(g is None or (isinstance(g, float) and np.isnan(g)) for g in groups):
        raise ValueError("groups holds missing values: every sample needs its group")
    _, index = np.unique(groups.astype(str), return_inverse=True)
    return index, int(index.max()) + 1


def group_resample_counts(
    groups: Any, n: int, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """How often each group is drawn per resample ``(R x G)``, and each sample's group index.

    Each resample draws ``G`` groups uniformly with replacement (a multinomial of ``G`` draws),
    so a resample is exactly as large, in groups, as the data.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    index, num_groups = _group_index(groups, n)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(num_groups, np.full(num_groups, 1.0 / num_groups), size=n_resamples)
    return counts, index


def _weight_chunks(counts: np.ndarray, index: np.ndarray) -> Iterator[np.ndarray]:
    """Per-sample weights ``counts[:, index]`` in chunks of resamples that fit in memory."""
    step = max(1, _CHUNK_ELEMENTS // max(index.size, 1))
    for start in range(0, len(counts), step):
        yield counts[start : start + step][:, index].astype(np.float64)


def _metric_values(
    metric: Metric,
    labels: np.ndarray,
    scores: np.ndarray,
    counts: np.ndarray,
    index: np.ndarray,
    threshold: float,
) -> np.ndarray:
    """The metric on every resample (NaN where undefined)."""
    if isinstance(metric, str):
        if metric not in WEIGHTED_METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {sorted(WEIGHTED_METRICS)}")
        ranked = _Ranked(labels, scores)
        compute = WEIGHTED_METRICS[metric]
        return np.concatenate(
            [compute(labels, scores, w, threshold, ranked) for w in _weight_chunks(counts, index)]
        )
    values = np.full(len(counts), np.nan)
    samples = np.arange(index.size)
    for r, weights in enumerate(counts[:, index]):
        picked = np.repeat(samples, weights)
        try:
            values[r] = float(metric(labels[picked], scores[picked]))
        except ValueError:  # e.g. scikit-learn refusing a one-class ROC-AUC
            values[r] = np.nan
    return values


def _point_estimate(
    metric: Metric, labels: np.ndarray, scores: np.ndarray, threshold: float
) -> float:
    if isinstance(metric, str):
        return float(
            weighted_metric(metric, labels, scores, np.ones((1, labels.size)), threshold)[0]
        )
    try:
        return float(metric(labels, scores))
    except ValueError:
        return float("nan")


def _interval(
    values: np.ndarray, level: float, num_groups: int
) -> tuple[float | None, float | None, int]:
    """Percentile interval of the defined values, and how many there were.

    With fewer than two groups every resample is the data itself: there is no spread to
    measure, so no interval (rather than a zero-width one that looks certain).
    """
    defined = values[np.isfinite(values)]
    if defined.size == 0 or num_groups < 2:
        return None, None, 0
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(defined, [alpha, 1.0 - alpha])
    return float(low), float(high), int(defined.size)


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def bootstrap_ci(
    metric: Metric,
    labels: Any,
    scores: Any,
    groups: Any = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    *,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Percentile bootstrap interval of ``metric``, resampling whole groups with replacement.

    Args:
        metric: A key of :data:`WEIGHTED_METRICS` (vectorised) or ``f(labels, scores) -> float``.
        labels: 0 (real) / 1 (fake) per sample.
        scores: P(fake) per sample.
        groups: Group (identity) of each sample; ``None``: every sample is its own group.
        n_resamples: Bootstrap resamples drawn.
        seed: Seed of the resampling (the same seed draws the same groups).
        level: Coverage of the interval (0.95: the 2.5th and 97.5th percentiles).
        threshold: Decision threshold of accuracy / precision / recall / F1.

    Returns:
        ``estimate`` (on the data itself), ``low``, ``high`` (``None`` if no resample defines
        the metric, or there is only one group), ``n_resamples``, ``n_used`` (resamples where it was defined), ``seed``,
        ``level`` and ``unit`` (``group`` or ``sample``).
    """
    _check_level(level)
    labels, scores = as_binary_arrays(labels, scores)
    counts, index = group_resample_counts(groups, labels.size, n_resamples, seed)
    values = _metric_values(metric, labels, scores, counts, index, threshold)
    low, high, used = _interval(values, level, counts.shape[1])
    return {
        "estimate": _finite_or_none(_point_estimate(metric, labels, scores, threshold)),
        "low": low,
        "high": high,
        "n_resamples": int(n_resamples),
        "n_used": used,
        "seed": int(seed),
        "level": float(level),
        "unit": "sample" if groups is None else "group",
    }


def bootstrap_metrics(
    labels: Any,
    scores: Any,
    groups: Any = None,
    metrics: Sequence[str] = CI_METRICS,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    *,
    threshold: float = 0.5,
) -> dict[str, dict[str, Any]]:
    """:func:`bootstrap_ci` of several metrics on the *same* resamples (one draw, consistent)."""
    _check_level(level)
    labels, scores = as_binary_arrays(labels, scores)
    counts, index = group_resample_counts(groups, labels.size, n_resamples, seed)
    out = {}
    for name in metrics:
        values = _metric_values(name, labels, scores, counts, index, threshold)
        low, high, used = _interval(values, level, counts.shape[1])
        out[name] = {"low": low, "high": high, "n_used": used}
    return out


def paired_bootstrap_diff(
    metric: Metric,
    labels: Any,
    scores_a: Any,
    scores_b: Any,
    groups: Any = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    *,
    threshold: float | tuple[float, float] = 0.5,
) -> dict[str, Any]:
    """Difference ``metric(a) - metric(b)`` of two detectors scored on the same samples.

    Both are resampled with the *same* groups, so what the two share (the hard videos) cancels
    and the interval is that of the difference, far narrower than two separate intervals.
    The two-sided p-value is that of the centred bootstrap test of "no difference":
    ``(1 + #{|d* - d| >= |d|}) / (1 + n_used)``.

    Args:
        threshold: One decision threshold, or ``(threshold_a, threshold_b)`` (each run's own
            val-chosen threshold).

    Returns:
        ``estimate_a``, ``estimate_b``, ``diff``, ``low``, ``high``, ``p_value``,
        ``n_resamples``, ``n_used``, ``seed``, ``level``, ``unit``.
    """
    _check_level(level)
    labels, scores_a = as_binary_arrays(labels, scores_a)
    _, scores_b = as_binary_arrays(labels, scores_b)
    t_a, t_b = threshold if isinstance(threshold, tuple | list) else (threshold, threshold)
    counts, index = group_resample_counts(groups, labels.size, n_resamples, seed)
    a = _metric_values(metric, labels, scores_a, counts, index, t_a)
    b = _metric_values(metric, labels, scores_b, counts, index, t_b)
    estimate_a = _point_estimate(metric, labels, scores_a, t_a)
    estimate_b = _point_estimate(metric, labels, scores_b, t_b)
    diff = estimate_a - estimate_b
    diffs = a - b
    low, high, used = _interval(diffs, level, counts.shape[1])
    defined = diffs[np.isfinite(diffs)]
    p_value = None
    if used and np.isfinite(diff):
        extreme = int((np.abs(defined - diff) >= abs(diff) - 1e-12).sum())
        p_value = min(1.0, (1 + extreme) / (1 + used))
    return {
        "estimate_a": _finite_or_none(estimate_a),
        "estimate_b": _finite_or_none(estimate_b),
        "diff": _finite_or_none(diff),
        "low": low,
        "high": high,
        "p_value": p_value,
        "n_resamples": int(n_resamples),
        "n_used": used,
        "seed": int(seed),
        "level": float(level),
        "unit": "sample" if groups is None else "group",
    }


# --------------------------------------------------------------------------------------------
# DeLong's test for two correlated ROC-AUCs
# --------------------------------------------------------------------------------------------


def midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], sorted_values.size]
    block_rank = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(block_rank, ends - starts)
    return ranks


def delong_test(labels: Any, scores_a: Any, scores_b: Any) -> dict[str, float | None]:
    """DeLong's test that two detectors scored on the same samples have the same ROC-AUC.

    The fast algorithm of Sun & Xu (2014): the structural components come from midranks, in
    O(n log n) instead of DeLong et al.'s (1988) O(m n) pairwise comparisons. Samples are
    assumed independent; with several faces per identity prefer :func:`paired_bootstrap_diff`
    over groups.

    Returns:
        ``auc_a``, ``auc_b``, ``diff`` (a - b), ``z`` and the two-sided ``p_value``. When the
        variance of the difference is zero, ``z`` is ``None`` and ``p_value`` is ``None`` for
        equal AUCs (identical rankings: nothing to test) or 0 for different ones.
    """
    labels, scores_a = as_binary_arrays(labels, scores_a)
    _, scores_b = as_binary_arrays(labels, scores_b)
    if not has_both_classes(labels):
        raise ValueError("DeLong's test needs both real and fake samples")
    positive = labels == 1
    m, n = int(positive.sum()), int((~positive).sum())
    aucs, v10, v01 = [], [], []
    for scores in (scores_a, scores_b):
        x, y = scores[positive], scores[~positive]
        tz = midranks(np.concatenate([x, y]))
        tx, ty = midranks(x), midranks(y)
        aucs.append((tz[:m].sum() - m * (m + 1) / 2.0) / (m * n))
        v10.append((tz[:m] - tx) / n)  # per positive: share of negatives ranked below it
        v01.append(1.0 - (tz[m:] - ty) / m)  # per negative: share of positives ranked above it
    s10 = np.cov(np.vstack(v10)) if m > 1 else np.zeros((2, 2))
    s01 = np.cov(np.vstack(v01)) if n > 1 else np.zeros((2, 2))
    covariance = s10 / m + s01 / n
    variance = covariance[0, 0] + covariance[1, 1] - 2.0 * covariance[0, 1]
    diff = aucs[0] - aucs[1]
    z: float | None
    p_value: float | None
    if variance <= 1e-15:
        # no spread at all: equal AUCs say nothing, different ones (e.g. 1 vs 0) are certain
        z, p_value = None, (None if abs(diff) < 1e-15 else 0.0)
    else:
        z = float(diff / np.sqrt(variance))
        p_value = float(2.0 * norm.sf(abs(z)))
    return {
        "auc_a": float(aucs[0]),
        "auc_b": float(aucs[1]),
        "diff": float(diff),
        "z": z,
        "p_value": p_value,
    }
