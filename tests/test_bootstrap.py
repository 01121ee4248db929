"""Bootstrap CIs over groups, the paired comparison and DeLong's test."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from deepfake_exp.evaluation.bootstrap import (
    CI_METRICS,
    bootstrap_ci,
    bootstrap_metrics,
    delong_test,
    group_resample_counts,
    midranks,
    paired_bootstrap_diff,
    weighted_metric,
)
from deepfake_exp.evaluation.metrics import binary_metrics


def _data(n: int = 200, groups: int = 40, seed: int = 0, signal: float = 0.25):
    """Scores rounded to 2 decimals (many ties), labels constant within a group."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, groups, n)
    group_label = rng.integers(0, 2, groups)
    group_label[:2] = (0, 1)  # both classes for sure
    labels = group_label[group]
    scores = np.clip(rng.normal(0.5 + signal * (labels - 0.5), 0.25), 0, 1).round(2)
    return labels, scores, group


@pytest.mark.parametrize("name", CI_METRICS)
def test_vectorised_metrics_equal_binary_metrics_on_each_resample(name: str) -> None:
    labels, scores, groups = _data()
    counts, index = group_resample_counts(groups, labels.size, n_resamples=30, seed=3)
    weights = counts[:, index]
    values = weighted_metric(name, labels, scores, weights, threshold=0.45)
    samples = np.arange(labels.size)
    for value, row in zip(values, weights, strict=True):
        picked = np.repeat(samples, row)
        expected = binary_metrics(labels[picked], scores[picked], 0.45)[name]
        if np.isnan(value):  # undefined here (e.g. one class), where sklearn falls back
            assert np.unique(labels[picked]).size == 1 or name == "precision"
        else:
            assert value == pytest.approx(expected, abs=1e-12)


def test_resamples_keep_groups_whole_and_draw_as_many_groups_as_there_are() -> None:
    labels, scores, groups = _data(n=120, groups=15)
    _, sizes = np.unique(groups.astype(str), return_counts=True)  # in group-index order
    seen = []

    def spy(y, s):
        seen.append(len(y))
        return float(np.mean(s))

    bootstrap_ci(spy, labels, scores, groups, n_resamples=40, seed=1)
    counts, _ = group_resample_counts(groups, labels.size, n_resamples=40, seed=1)
    assert (counts.sum(axis=1) == len(np.unique(groups))).all()
    assert seen[:-1] == (counts @ sizes).tolist()  # each drawn group brings all its samples
    assert seen[-1] == labels.size  # then the estimate on the data itself
    assert len(set(seen)) > 1  # group sizes differ, so resample sizes do too


def test_group_interval_is_wider_than_the_naive_one_when_groups_are_correlated() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(30), 10)  # 10 near-identical faces per identity
    labels = np.repeat(rng.integers(0, 2, 30), 10)
    labels[:10], labels[10:20] = 0, 1
    centre = np.repeat(rng.uniform(0, 1, 30), 10)
    scores = np.clip(centre + rng.normal(0, 0.01, 300), 0, 1)
    by_group = bootstrap_ci("roc_auc", labels, scores, groups, n_resamples=300)
    naive = bootstrap_ci("roc_auc", labels, scores, None, n_resamples=300)
    assert by_group["unit"] == "group" and naive["unit"] == "sample"
    assert by_group["estimate"] == pytest.approx(roc_auc_score(labels, scores))
    width = by_group["high"] - by_group["low"]
    assert width > 2 * (naive["high"] - naive["low"])
    assert by_group["low"] <= by_group["estimate"] <= by_group["high"]


def test_undefined_resamples_are_skipped_and_counted_not_scored_half() -> None:
    # two identities: a resample holds one class whenever it draws the same one twice
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.8, 0.9])
    result = bootstrap_ci("roc_auc", labels, scores, groups=["a", "a", "b", "b"], seed=0)
    counts, _ = group_resample_counts(["a", "a", "b", "b"], 4, 1000, seed=0)
    both = int(((counts > 0).sum(axis=1) == 2).sum())
    assert 400 < result["n_used"] == both < 600
    assert result["low"] == result["high"] == 1.0  # never 0.5 from a one-class resample
    one_class = bootstrap_ci("roc_auc", [1, 1, 1], [0.2, 0.5, 0.9])
    assert one_class["n_used"] == 0 and one_class["low"] is None and one_class["estimate"] is None


def test_one_group_has_no_interval_rather_than_a_zero_width_one() -> None:
    labels, scores = np.array([0, 1, 0, 1]), np.array([0.2, 0.7, 0.4, 0.6])
    single = bootstrap_ci("roc_auc", labels, scores, groups=["g"] * 4)
    assert single["estimate"] == 1.0 and single["low"] is None and single["high"] is None
    paired = paired_bootstrap_diff("roc_auc", labels, scores, 1 - scores, ["g"] * 4)
    assert paired["diff"] == 1.0 and paired["p_value"] is None


def test_seed_reproduces_and_changes_the_interval() -> None:
    labels, scores, groups = _data()
    first = bootstrap_ci("log_loss", labels, scores, groups, n_resamples=200, seed=5)
    again = bootstrap_ci("log_loss", labels, scores, groups, n_resamples=200, seed=5)
    other = bootstrap_ci("log_loss", labels, scores, groups, n_resamples=200, seed=6)
    assert first == again
    assert (first["low"], first["high"]) != (other["low"], other["high"])
    assert first["seed"] == 5 and first["n_resamples"] == 200 and first["level"] == 0.95


def test_callable_metric_gives_the_same_interval_as_the_vectorised_one() -> None:
    labels, scores, groups = _data(n=80, groups=20)
    fast = bootstrap_ci("roc_auc", labels, scores, groups, n_resamples=100, seed=2)
    slow = bootstrap_ci(roc_auc_score, labels, scores, groups, n_resamples=100, seed=2)
    assert slow["n_used"] == fast["n_used"]
    assert slow["low"] == pytest.approx(fast["low"]) and slow["high"] == pytest.approx(fast["high"])


def test_several_metrics_share_one_draw_and_level_narrows_the_interval() -> None:
    labels, scores, groups = _data()
    joint = bootstrap_metrics(labels, scores, groups, ("roc_auc", "f1"), n_resamples=200)
    alone = bootstrap_ci("f1", labels, scores, groups, n_resamples=200)
    assert joint["f1"]["low"] == alone["low"] and joint["f1"]["high"] == alone["high"]
    narrow = bootstrap_ci("f1", labels, scores, groups, n_resamples=200, level=0.5)
    assert alone["low"] < narrow["low"] <= narrow["high"] < alone["high"]
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci("f1", labels, scores, groups, level=95)
    with pytest.raises(ValueError, match="unknown metric"):
        bootstrap_ci("auc", labels, scores, groups)
    with pytest.raises(ValueError, match="groups has"):
        bootstrap_ci("f1", labels, scores, groups[:-1])


def test_thousand_resamples_over_a_few_hundred_videos_take_well_under_a_second() -> None:
    labels, scores, groups = _data(n=400, groups=120)
    bootstrap_metrics(labels, scores, groups, n_resamples=10)  # warm-up
    start = time.perf_counter()
    bootstrap_metrics(labels, scores, groups, n_resamples=1000)
    assert time.perf_counter() - start < 0.5


# ------------------------------------------------------------------------ paired comparison


def test_paired_difference_of_a_detector_with_itself_is_exactly_zero() -> None:
    labels, scores, groups = _data()
    same = paired_bootstrap_diff("roc_auc", labels, scores, scores, groups, n_resamples=200)
    assert same["diff"] == same["low"] == same["high"] == 0.0
    assert same["p_value"] == 1.0


def test_paired_difference_finds_a_clearly_better_detector() -> None:
    labels, scores, groups = _data(n=300, groups=100)
    rng = np.random.default_rng(1)
    worse = np.clip(scores + rng.normal(0, 0.3, scores.size), 0, 1)
    result = paired_bootstrap_diff("roc_auc", labels, scores, worse, groups, n_resamples=500)
    assert result["diff"] == pytest.approx(
        roc_auc_score(labels, scores) - roc_auc_score(labels, worse)
    )
    assert 0 < result["low"] <= result["diff"] <= result["high"]
    assert result["p_value"] < 0.01
    # the paired interval is narrower than the two separate intervals suggest
    a = bootstrap_ci("roc_auc", labels, scores, groups, n_resamples=500)
    b = bootstrap_ci("roc_auc", labels, worse, groups, n_resamples=500)
    assert result["high"] - result["low"] < (a["high"] - a["low"]) + (b["high"] - b["low"])
    # each run's own threshold for threshold metrics
    both = paired_bootstrap_diff(
        "accuracy", labels, scores, worse, groups, n_resamples=50, threshold=(0.5, 0.4)
    )
    assert both["estimate_b"] == pytest.approx(binary_metrics(labels, worse, 0.4)["accuracy"])


# ------------------------------------------------------------------------ DeLong


def _slow_delong(labels: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """DeLong, DeLong & Clarke-Pearson (1988) by pairwise comparisons: (diff, variance)."""
    pos, neg = labels == 1, labels == 0
    m, n = pos.sum(), neg.sum()
    v10, v01 = [], []
    for scores in (a, b):
        x, y = scores[pos][:, None], scores[neg][None, :]
        psi = (x > y) + 0.5 * (x == y)
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    s = np.cov(np.vstack(v10)) / m + np.cov(np.vstack(v01)) / n
    diff = np.mean(v10[0]) - np.mean(v10[1])
    return diff, s[0, 0] + s[1, 1] - 2 * s[0, 1]


def test_midranks_average_tied_ranks() -> None:
    np.testing.assert_array_equal(midranks(np.array([3.0, 1.0, 3.0, 2.0])), [3.5, 1, 3.5, 2])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_delong_matches_the_pairwise_definition(seed: int) -> None:
    labels, scores, _ = _data(n=150, seed=seed)
    rng = np.random.default_rng(seed + 10)
    other = np.clip(scores + rng.normal(0, 0.2, scores.size), 0, 1).round(2)
    result = delong_test(labels, scores, other)
    diff, variance = _slow_delong(labels, scores, other)
    assert result["auc_a"] == pytest.approx(roc_auc_score(labels, scores))
    assert result["auc_b"] == pytest.approx(roc_auc_score(labels, other))
    assert result["diff"] == pytest.approx(diff)
    assert result["z"] == pytest.approx(diff / np.sqrt(variance))
    swapped = delong_test(labels, other, scores)
    assert swapped["z"] == pytest.approx(-result["z"])
    assert swapped["p_value"] == pytest.approx(result["p_value"])


def test_delong_hand_computed_case_and_degenerate_inputs() -> None:
    # 2 fakes, 2 reals. a: AUC 1; b: AUC 0.75. Components by hand:
    # a: V10 = [1, 1], V01 = [1, 1] ; b: V10 = [1, 0.5], V01 = [1, 0.5]
    # var(diff) = var(V10_b)/2 + var(V01_b)/2 = 0.125/2 + 0.125/2 = 0.125
    labels = np.array([1, 1, 0, 0])
    a = np.array([0.9, 0.8, 0.2, 0.1])
    b = np.array([0.9, 0.3, 0.2, 0.4])
    result = delong_test(labels, a, b)
    assert result["auc_a"] == 1.0 and result["auc_b"] == 0.75
    assert result["z"] == pytest.approx(0.25 / np.sqrt(0.125))
    identical = delong_test(labels, a, a)
    assert identical["diff"] == 0.0 and identical["p_value"] is None
    flipped = delong_test(labels, a, 1 - a)  # AUC 1 vs 0, no spread: certain
    assert flipped["diff"] == 1.0 and flipped["p_value"] == 0.0
    with pytest.raises(ValueError, match="both"):
        delong_test([1, 1], [0.2, 0.3], [0.1, 0.4])
