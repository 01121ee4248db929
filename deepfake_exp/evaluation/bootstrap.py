"""Uncertainty of test metrics: group bootstrap CIs, paired comparisons and DeLong's test.

A default test set holds a few dozen videos, so one ROC-AUC moves by several points with the
seed. Every headline number therefore carries a percentile bootstrap interval resampled over
*groups* (identities): faces and videos of one identity are not independent, and resampling
them one by one would make the interval too narrow.

A resample draws as many groups as there are, with replacement; it is represented by how
often each group was drawn, and the built-in metrics of :data:`WEIGHTED_METRICS` are sums
over samples precomputed per group, so a whole chunk of resamples costs a few matrix products
(1000 resamples of all eight metrics over a few hundred videos take milliseconds). Any other callable
``metric(labels, scores) -> float`` works too, one resample at a time. Resamples where a metric
is undefined (one class only for ROC-AUC, no fakes for recall...) are skipped and counted:
``n_used`` says how many made the interval.

Pure functions over arrays; nothing here imports training code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import sparse
from scipy.stats import norm

from deepfake_exp.evaluation.metrics import LOG_LOSS_EPS, as_binary_arrays, has_both_classes

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
# Elements of one (resamples x score blocks) chunk: bounds memory on face-level sets.
_CHUNK_ELEMENTS = 2_000_000

Metric = str | Callable[[np.ndarray, np.ndarray], float]


# --------------------------------------------------------------------------------------------
# Weighted metrics: one value per resample, from per-group counts
# --------------------------------------------------------------------------------------------


class _Prepared:
    """Per-group sufficient statistics of one set of predictions at one threshold.

    A resample is a vector of group counts, and every metric here is a function of sums over
    samples, so each sum is precomputed per group (confusion cells, log-loss) or per group and
    block of tied scores (ranking metrics), and a chunk of resamples costs a few matrix
    products. Ties count half, as in the Mann-Whitney statistic and scikit-learn.
    """

    def __init__(
        self,
        labels: np.ndarray,
        scores: np.ndarray,
        index: np.ndarray,
        num_groups: int,
        threshold: float,
    ) -> None:
        order = np.argsort(-scores, kind="stable")  # highest score first
        sorted_scores = scores[order]
        starts = np.r_[True, sorted_scores[1:] != sorted_scores[:-1]]
        block = np.empty(scores.size, dtype=np.int64)
        block[order] = np.cumsum(starts) - 1
        self.num_blocks = int(starts.sum())
        self.num_groups = num_groups
        fake = labels == 1
        shape = (self.num_blocks, num_groups)
        self.pos = sparse.csr_matrix((np.ones(fake.sum()), (block[fake], index[fake])), shape)
        self.neg = sparse.csr_matrix((np.ones((~fake).sum()), (block[~fake], index[~fake])), shape)
        predicted = scores >= threshold
        cells = (predicted & fake, predicted & ~fake, ~predicted & fake, ~predicted & ~fake)
        self.confusion = np.stack(
            [np.bincount(index, weights=cell, minlength=num_groups) for cell in cells], axis=1
        )  # groups x (tp, fp, fn, tn)
        clipped = np.clip(scores, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
        losses = -(labels * np.log(clipped) + (1 - labels) * np.log1p(-clipped))
        self.loss = np.bincount(index, weights=losses, minlength=num_groups)
        self.size = np.bincount(index, minlength=num_groups).astype(np.float64)


class _Chunk:
    """The sums of one chunk of resamples (``counts``: resamples x groups), computed once."""

    def __init__(self, prepared: _Prepared, counts: np.ndarray) -> None:
        self.prepared = prepared
        self.counts = counts
        self._blocks: tuple[np.ndarray, np.ndarray] | None = None
        self._confusion: np.ndarray | None = None

    @property
    def blocks(self) -> tuple[np.ndarray, np.ndarray]:
        """Positive and negative weight per block of tied scores (resamples x blocks)."""
        if self._blocks is None:
            transposed = self.counts.T
            self._blocks = (
                np.asarray(self.prepared.pos @ transposed).T,
                np.asarray(self.prepared.neg @ transposed).T,
            )
        return self._blocks

    @property
    def confusion(self) -> np.ndarray:
        """Weighted (tp, fp, fn, tn) per resample; ``score >= threshold`` is predicted FAKE."""
        if self._confusion is None:
            self._confusion = self.counts @ self.prepared.confusion
        return self._confusion


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` with NaN where the denominator is zero (undefined)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(
            denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan
        )


def _roc_auc(chunk: _Chunk) -> np.ndarray:
    pos, neg = chunk.blocks
    total_neg = neg.sum(axis=1, keepdims=True)
    neg_below = total_neg - np.cumsum(neg, axis=1)  # negatives scored strictly lower
    wins = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    return _divide(wins, pos.sum(axis=1) * total_neg[:, 0])


def _average_precision(chunk: _Chunk) -> np.ndarray:
    """scikit-learn's AP: sum over thresholds of (recall step) x precision, no interpolation."""
    pos, neg = chunk.blocks
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    precision = np.nan_to_num(_divide(tp, tp + fp))  # a block with no weight adds no recall
    return _divide((pos * precision).sum(axis=1), pos.sum(axis=1))


def _eer(chunk: _Chunk) -> np.ndarray:
    """Equal error rate, interpolated where FNR - FPR crosses zero (as ``equal_error_rate``)."""
    pos, neg = chunk.blocks
    total_pos, total_neg = pos.sum(axis=1), neg.sum(axis=1)
    zero = np.zeros((len(pos), 1))
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


def _log_loss(chunk: _Chunk) -> np.ndarray:
    return _divide(chunk.counts @ chunk.prepared.loss, chunk.counts @ chunk.prepared.size)


def _accuracy(chunk: _Chunk) -> np.ndarray:
    tp, fp, fn, tn = chunk.confusion.T
    return _divide(tp + tn, tp + fp + fn + tn)


def _precision(chunk: _Chunk) -> np.ndarray:
    tp, fp, _, _ = chunk.confusion.T
    return _divide(tp, tp + fp)


def _recall(chunk: _Chunk) -> np.ndarray:
    tp, _, fn, _ = chunk.confusion.T
    return _divide(tp, tp + fn)


def _f1(chunk: _Chunk) -> np.ndarray:
    tp, fp, fn, _ = chunk.confusion.T
    return np.where(tp + fn > 0, _divide(2 * tp, 2 * tp + fp + fn), np.nan)  # no fakes: undefined


WEIGHTED_METRICS: dict[str, Callable[[_Chunk], np.ndarray]] = {
    "roc_auc": _roc_auc,
    "average_precision": _average_precision,
    "eer": _eer,
    "log_loss": _log_loss,
    "accuracy": _accuracy,
    "precision": _precision,
    "recall": _recall,
    "f1": _f1,
}
"""Metrics computed for many resamples at once; each matches ``binary_metrics`` on the
resampled data (tests check it), except that undefined values are NaN instead of 0."""

CI_METRICS = tuple(WEIGHTED_METRICS)


def _check_metric(name: str) -> None:
    if name not in WEIGHTED_METRICS:
        raise ValueError(f"unknown metric {name!r}; choose one of {sorted(WEIGHTED_METRICS)}")


def weighted_metric(
    name: str,
    labels: Any,
    scores: Any,
    weights: np.ndarray,
    threshold: float = 0.5,
) -> np.ndarray:
    """Metric ``name`` for each row of ``weights`` (resamples x samples, integer counts)."""
    _check_metric(name)
    labels, scores = as_binary_arrays(labels, scores)
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    prepared = _Prepared(labels, scores, np.arange(labels.size), labels.size, threshold)
    return WEIGHTED_METRICS[name](_Chunk(prepared, weights))


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


def resampling_groups(frame: Any) -> np.ndarray:
    """The resampling unit of each row of a prediction frame: its ``group`` (identity), else
    its own ``video_id`` (videos without a recorded group count as their own identity)."""
    videos = frame["video_id"].astype(str)
    if "group" not in frame:
        return videos.to_numpy()
    group = frame["group"].astype(object)
    return group.where(group.notna(), videos).astype(str).to_numpy()


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


def _values(
    metrics: Sequence[Metric],
    labels: np.ndarray,
    scores: np.ndarray,
    counts: np.ndarray,
    index: np.ndarray,
    threshold: float,
) -> list[np.ndarray]:
    """Each metric on every resample (NaN where undefined), the sums shared between them."""
    values: list[np.ndarray] = []
    named = [m for m in metrics if isinstance(m, str)]
    for name in named:
        _check_metric(name)
    if named:
        prepared = _Prepared(labels, scores, index, counts.shape[1], threshold)
        width = max(prepared.num_blocks, prepared.num_groups, 1)
        step = max(1, _CHUNK_ELEMENTS // width)
        chunks = [
            _Chunk(prepared, counts[start : start + step].astype(np.float64))
            for start in range(0, len(counts), step)
        ]
    for metric in metrics:
        if isinstance(metric, str):
            values.append(np.concatenate([WEIGHTED_METRICS[metric](chunk) for chunk in chunks]))
        else:
            values.append(_callable_values(metric, labels, scores, counts, index))
    return values


def _callable_values(
    metric: Callable[[np.ndarray, np.ndarray], float],
    labels: np.ndarray,
    scores: np.ndarray,
    counts: np.ndarray,
    index: np.ndarray,
) -> np.ndarray:
    """Any ``metric(labels, scores)``, one resample at a time (the data repeated per draw)."""
    values = np.full(len(counts), np.nan)
    samples = np.arange(index.size)
    for r, row in enumerate(counts):
        picked = np.repeat(samples, row[index].astype(np.int64))
        try:
            values[r] = float(metric(labels[picked], scores[picked]))
        except ValueError:  # e.g. scikit-learn refusing a one-class ROC-AUC
            values[r] = np.nan
    return values


def _point_estimate(
    metric: Metric, labels: np.ndarray, scores: np.ndarray, threshold: float
) -> float:
    """The metric on the data itself (every group once)."""
    index, ones = np.arange(labels.size), np.ones((1, labels.size))
    return float(_values([metric], labels, scores, ones, index, threshold)[0][0])


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
    (values,) = _values([metric], labels, scores, counts, index, threshold)
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
    for name, values in zip(
        metrics, _values(metrics, labels, scores, counts, index, threshold), strict=True
    ):
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
    (a,) = _values([metric], labels, scores_a, counts, index, t_a)
    (b,) = _values([metric], labels, scores_b, counts, index, t_b)
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
