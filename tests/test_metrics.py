"""Metrics, video aggregation, threshold selection and temperature scaling against references."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from deepfake_exp.evaluation.aggregate import (
    AGGREGATORS,
    add_missing_videos,
    aggregate_video_scores,
    classify_videos,
    failure_counts,
    read_video_list,
)
from deepfake_exp.evaluation.calibration import apply_temperature, fit_temperature
from deepfake_exp.evaluation.metrics import (
    LOG_LOSS_EPS,
    binary_metrics,
    clipped_log_loss,
    equal_error_rate,
    expected_calibration_error,
)
from deepfake_exp.evaluation.threshold import THRESHOLD_CRITERIA, select_threshold

EXPECTED_KEYS = {
    "n",
    "n_real",
    "n_fake",
    "threshold",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "average_precision",
    "eer",
    "log_loss",
    "ece",
    "confusion_matrix",
    "tn",
    "fp",
    "fn",
    "tp",
}


def noisy_scores(n: int, seed: int, shift: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Labels and informative-but-imperfect probabilities, strictly inside (0, 1)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    logits = rng.normal(size=n) + shift * (2 * labels - 1)
    return labels, 1.0 / (1.0 + np.exp(-logits))


# ----------------------------------------------------------------------------- metrics


@pytest.mark.parametrize(("seed", "threshold"), [(0, 0.5), (1, 0.3), (2, 0.8)])
def test_binary_metrics_match_sklearn(seed: int, threshold: float) -> None:
    labels, probs = noisy_scores(300, seed)
    preds = (probs >= threshold).astype(int)
    metrics = binary_metrics(labels, probs, threshold=threshold)

    assert set(metrics) == EXPECTED_KEYS
    assert metrics["accuracy"] == pytest.approx(accuracy_score(labels, preds))
    assert metrics["precision"] == pytest.approx(precision_score(labels, preds))
    assert metrics["recall"] == pytest.approx(recall_score(labels, preds))
    assert metrics["f1"] == pytest.approx(f1_score(labels, preds))
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(labels, probs))
    assert metrics["average_precision"] == pytest.approx(average_precision_score(labels, probs))
    assert metrics["log_loss"] == pytest.approx(log_loss(labels, probs))
    assert metrics["confusion_matrix"] == confusion_matrix(labels, preds).tolist()
    tn, fp, fn, tp = confusion_matrix(labels, preds).ravel().tolist()
    assert (metrics["tn"], metrics["fp"], metrics["fn"], metrics["tp"]) == (tn, fp, fn, tp)
    assert (metrics["n"], metrics["n_real"], metrics["n_fake"]) == (
        300,
        int((labels == 0).sum()),
        int((labels == 1).sum()),
    )
    assert metrics["threshold"] == threshold


def test_binary_metrics_are_plain_json_types() -> None:
    labels, probs = noisy_scores(50, 3)
    metrics = binary_metrics(np.asarray(labels, dtype=np.int32), np.float32(probs))
    for key, value in metrics.items():
        if key == "confusion_matrix":
            assert all(type(v) is int for row in value for v in row)
        else:
            assert type(value) in (int, float), (key, type(value))
    assert json.loads(json.dumps(metrics))["confusion_matrix"] == metrics["confusion_matrix"]


@pytest.mark.parametrize("only_label", [0, 1])
def test_binary_metrics_with_one_class_give_nan_not_crash(only_label: int) -> None:
    labels = np.full(6, only_label)
    probs = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.45])  # nothing predicted fake at 0.5
    metrics = binary_metrics(labels, probs)
    for key in ("roc_auc", "average_precision", "eer"):
        assert math.isnan(metrics[key]), key
    assert metrics["precision"] == 0.0
    assert metrics["n"] == 6 and metrics["tp"] + metrics["fp"] == 0
    assert metrics["accuracy"] == (1.0 if only_label == 0 else 0.0)


@pytest.mark.parametrize(
    ("labels", "probs", "message"),
    [
        ([0, 1], [0.5], "differ in length"),
        ([0, 2], [0.5, 0.5], "labels must be 0"),
        ([0, 1], [0.5, 1.5], r"probabilities in \[0, 1\]"),
        ([0, 1], [0.5, np.nan], "NaN"),
        ([], [], "empty"),
    ],
)
def test_bad_inputs_fail_with_clear_message(labels: list, probs: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        binary_metrics(labels, probs)


def test_log_loss_clips_exact_zero_and_one_like_dfdc() -> None:
    penalty = -math.log(LOG_LOSS_EPS)
    assert penalty == pytest.approx(34.5388, abs=1e-4)
    assert clipped_log_loss([1], [0.0]) == pytest.approx(penalty)
    # p = 1 is clipped to 1 - eps, whose float64 complement is 1.0000000000000000777e-15.
    assert clipped_log_loss([0], [1.0]) == pytest.approx(-math.log(1 - (1 - LOG_LOSS_EPS)))
    assert clipped_log_loss([0], [1.0]) == pytest.approx(penalty, abs=1e-3)
    # Right and certain costs (almost) nothing; mixing averages by hand.
    assert clipped_log_loss([1, 0], [1.0, 0.0]) == pytest.approx(0.0, abs=1e-12)
    expected = (penalty + -math.log(0.8) + -math.log(1 - 1e-15)) / 3
    assert clipped_log_loss([1, 1, 0], [0.0, 0.8, 0.0]) == pytest.approx(expected)
    assert clipped_log_loss([1], [0.0], eps=1e-3) == pytest.approx(-math.log(1e-3))


def test_eer_perfectly_separable_is_zero() -> None:
    labels = [0, 0, 0, 1, 1]
    probs = [0.1, 0.2, 0.3, 0.8, 0.9]
    eer, threshold = equal_error_rate(labels, probs)
    assert eer == 0.0
    metrics = binary_metrics(labels, probs, threshold=threshold)
    assert metrics["fp"] == 0 and metrics["fn"] == 0


def test_eer_hand_computed_cases() -> None:
    # Exact crossing: at threshold 0.6 one real of four is above and one fake of four below.
    eer, threshold = equal_error_rate(
        [0, 0, 0, 0, 1, 1, 1, 1], [0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9]
    )
    assert (eer, threshold) == pytest.approx((0.25, 0.6))
    # Interpolated crossing: (FPR, FNR) goes (0.5, 1) at t=0.6 -> (0.5, 0) at t=0.4; the rates
    # meet half-way, at 0.5, and so does the threshold.
    eer, threshold = equal_error_rate([0, 0, 1], [0.2, 0.6, 0.4])
    assert (eer, threshold) == pytest.approx((0.5, 0.5))


def test_eer_threshold_balances_error_rates_on_large_data() -> None:
    labels, probs = noisy_scores(4000, 4, shift=0.7)
    eer, threshold = equal_error_rate(labels, probs)
    preds = probs >= threshold
    fpr = preds[labels == 0].mean()
    fnr = (~preds[labels == 1]).mean()
    assert abs(fpr - fnr) < 0.01
    assert eer == pytest.approx((fpr + fnr) / 2, abs=0.01)
    assert 0.05 < eer < 0.5


def test_ece_hand_computed() -> None:
    # Bins [0, .5) and [.5, 1]: |0.2 - 0.5| * 2 + |0.75 - 1.0| * 2, over 4 samples.
    assert expected_calibration_error([0, 1, 1, 1], [0.1, 0.3, 0.6, 0.9], n_bins=2) == (
        pytest.approx(0.275)
    )
    # Perfectly calibrated bin -> 0; p == 1 belongs to the last bin; p == 0 to the first.
    assert expected_calibration_error([1, 0, 0, 0], [0.25] * 4) == pytest.approx(0.0)
    assert expected_calibration_error([1, 1], [1.0, 1.0]) == pytest.approx(0.0)
    assert expected_calibration_error([1, 0], [0.0, 0.0], n_bins=15) == pytest.approx(0.5)


# ----------------------------------------------------------------------------- aggregation


def faces(rows: dict[str, tuple[int, list[float]]]) -> pd.DataFrame:
    """Face rows from ``{video_id: (label, [probs])}``."""
    return pd.DataFrame(
        [
            {"video_id": vid, "label": label, "prob": prob, "frame": i}
            for vid, (label, probs) in rows.items()
            for i, prob in enumerate(probs)
        ]
    )


TWO_VIDEOS = {"b": (1, [0.5, 0.7]), "a": (0, [0.1, 0.2, 0.9])}


@pytest.mark.parametrize(("method", "expected"), [("mean", [0.4, 0.6]), ("max", [0.9, 0.7])])
def test_mean_and_max_aggregation(method: str, expected: list[float]) -> None:
    videos = aggregate_video_scores(faces(TWO_VIDEOS), method=method)
    assert list(videos.columns) == ["video_id", "label", "prob", "num_faces"]
    assert videos["video_id"].tolist() == ["a", "b"]
    assert videos["label"].tolist() == [0, 1]
    assert videos["num_faces"].tolist() == [3, 2]
    assert videos["prob"].tolist() == pytest.approx(expected)


CONFIDENT_FAKE = [0.95, 0.85, 0.1, 0.2, 0.3]  # 2/5 above 0.8 -> judged by those two
CONFIDENT_REAL = [0.05, 0.1, 0.15, 0.1, 0.12, 0.1, 0.05, 0.1, 0.1, 0.6]  # 9/10 below 0.2
UNDECIDED = [0.5, 0.9, 0.1, 0.3, 0.4]  # 1/5 confident either way -> plain mean


@pytest.mark.parametrize(
    ("probs", "expected"),
    [
        (CONFIDENT_FAKE, np.mean([0.95, 0.85])),
        (CONFIDENT_REAL, np.mean(CONFIDENT_REAL[:9])),
        (UNDECIDED, np.mean(UNDECIDED)),
    ],
    ids=["confident_fake", "confident_real", "fallback_mean"],
)
def test_confident_aggregation_branches(probs: list[float], expected: float) -> None:
    videos = aggregate_video_scores(
        faces({"v": (1, probs)}),
        method="confident",
        confident_threshold=0.8,
        confident_share=0.4,
    )
    assert videos["prob"].iloc[0] == pytest.approx(expected)
    assert videos["num_faces"].iloc[0] == len(probs)


def test_confident_share_decides_the_fake_branch() -> None:
    # The same faces fall back to the mean when 2/5 confident fakes are not enough.
    videos = aggregate_video_scores(
        faces({"v": (1, CONFIDENT_FAKE)}), method="confident", confident_share=0.5
    )
    assert videos["prob"].iloc[0] == pytest.approx(np.mean(CONFIDENT_FAKE))


def test_aggregation_registry_and_errors() -> None:
    assert {"mean", "max", "confident"} <= set(AGGREGATORS)
    with pytest.raises(ValueError, match="unknown aggregation 'median'"):
        aggregate_video_scores(faces(TWO_VIDEOS), method="median")
    with pytest.raises(ValueError, match="conflicting labels"):
        aggregate_video_scores(
            pd.DataFrame({"video_id": ["a", "a"], "label": [0, 1], "prob": [0.1, 0.2]})
        )
    with pytest.raises(ValueError, match="lacks columns"):
        aggregate_video_scores(faces(TWO_VIDEOS).drop(columns="prob"))


def test_videos_without_faces_score_half_and_are_counted() -> None:
    videos = aggregate_video_scores(faces(TWO_VIDEOS))
    catalogue = pd.DataFrame({"video_id": ["a", "b", "c", "d"], "label": [0, 1, 1, 0]})
    full = add_missing_videos(videos, catalogue)

    assert full["video_id"].tolist() == ["a", "b", "c", "d"]
    missing = full.set_index("video_id").loc[["c", "d"]]
    assert missing["prob"].tolist() == [0.5, 0.5]
    assert missing["num_faces"].tolist() == [0, 0]
    assert missing["label"].tolist() == [1, 0]
    metrics = binary_metrics(full["label"], full["prob"])
    assert metrics["n"] == 4
    expected_loss = (-math.log(0.6) - math.log(0.6) + 2 * -math.log(0.5)) / 4
    assert metrics["log_loss"] == pytest.approx(expected_loss)


def test_add_missing_videos_edge_cases() -> None:
    catalogue = pd.DataFrame({"video_id": ["a", "b"], "label": [0, 1]})
    empty = pd.DataFrame(columns=["video_id", "label", "prob", "num_faces"])
    everything_missing = add_missing_videos(empty, catalogue, no_face_score=0.3)
    assert everything_missing["prob"].tolist() == [0.3, 0.3]
    assert everything_missing["num_faces"].tolist() == [0, 0]

    videos = aggregate_video_scores(faces(TWO_VIDEOS))
    wrong = catalogue.assign(label=[1, 1])
    with pytest.raises(ValueError, match="disagree on the label"):
        add_missing_videos(videos, wrong)


def test_groups_are_carried_to_video_rows_including_faceless_ones() -> None:
    face_rows = faces(TWO_VIDEOS).assign(group=lambda f: "id_" + f["video_id"])
    videos = aggregate_video_scores(face_rows)
    assert videos["group"].tolist() == ["id_a", "id_b"]
    catalogue = pd.DataFrame(
        {"video_id": ["a", "b", "c"], "label": [0, 1, 1], "group": ["id_a", "id_b", "id_c"]}
    )
    full = add_missing_videos(videos, catalogue)
    assert full["group"].tolist() == ["id_a", "id_b", "id_c"]
    assert full.set_index("video_id").loc["c", "prob"] == 0.5


VIDEO_LIST = pd.DataFrame(
    {
        "video_id": ["ok", "noface", "missing", "corrupt", "pending", "unexplained"],
        "label": [0, 1, 1, 0, 1, 0],
        "split": "test",
        "status": ["ok", "failed", "failed", "failed", "pending", "failed"],
    }
)
FAILURES = pd.DataFrame(
    {
        "video_id": ["noface", "missing", "corrupt", "ok"],
        "reason": ["no_face", "missing_file", "decode_error", "duplicate"],
    }
)


def test_only_faceless_videos_are_scored_failed_inputs_are_counted_by_reason() -> None:
    scored, failed = classify_videos(VIDEO_LIST, FAILURES)
    assert scored["video_id"].tolist() == ["ok", "noface"]
    assert dict(zip(failed["video_id"], failed["reason"], strict=True)) == {
        "missing": "missing_file",
        "corrupt": "decode_error",
        "pending": "pending",
        "unexplained": "unknown",
    }
    assert failure_counts(failed) == {
        "n_failed": 4,
        "failed_reasons": {"decode_error": 1, "missing_file": 1, "pending": 1, "unknown": 1},
    }
    assert failure_counts(failed.iloc[:0]) == {"n_failed": 0, "failed_reasons": {}}
    # a list from before statuses existed: everything listed is scored
    legacy, none = classify_videos(VIDEO_LIST.drop(columns="status"))
    assert len(legacy) == len(VIDEO_LIST) and none.empty


def test_read_video_list_reads_the_faces_folder(tmp_path) -> None:
    assert read_video_list(tmp_path)[0] is None
    VIDEO_LIST.to_csv(tmp_path / "videos.csv", index=False)
    FAILURES.to_csv(tmp_path / "failures.csv", index=False)
    scored, failed = read_video_list(tmp_path)
    assert scored["video_id"].tolist() == ["ok", "noface"] and len(failed) == 4


# ----------------------------------------------------------------------------- thresholds


def f1_at(labels: np.ndarray, probs: np.ndarray, threshold: float) -> float:
    """F1 counted by hand (2TP / (2TP + FP + FN)): a reference independent of sklearn."""
    preds = probs >= threshold
    tp = int((preds & (labels == 1)).sum())
    errors = int((preds != (labels == 1)).sum())
    return 2 * tp / (2 * tp + errors) if tp else 0.0


@pytest.mark.parametrize("seed", [5, 6])
def test_f1_threshold_is_the_brute_force_maximum(seed: int) -> None:
    labels, probs = noisy_scores(250, seed, shift=0.6)
    threshold = select_threshold(labels, probs, criterion="f1")
    best = max(f1_at(labels, probs, s) for s in np.unique(probs))
    assert threshold in set(np.unique(probs).tolist())
    assert f1_at(labels, probs, threshold) == pytest.approx(best)
    assert f1_at(labels, probs, threshold) >= f1_at(labels, probs, 0.5)


def test_youden_threshold_is_the_brute_force_maximum() -> None:
    labels, probs = noisy_scores(250, 7, shift=0.6)

    def youden(t: float) -> float:
        preds = probs >= t
        return preds[labels == 1].mean() - preds[labels == 0].mean()

    threshold = select_threshold(labels, probs, criterion="youden")
    assert youden(threshold) == pytest.approx(max(youden(s) for s in np.unique(probs)))


def test_fixed_and_eer_criteria() -> None:
    labels, probs = noisy_scores(100, 8)
    assert select_threshold(labels, probs, criterion="fixed") == 0.5
    assert select_threshold(labels, probs, criterion="eer") == equal_error_rate(labels, probs)[1]
    assert set(THRESHOLD_CRITERIA) == {"fixed", "f1", "eer", "youden"}


def test_threshold_is_chosen_on_val_and_reused_on_test() -> None:
    # The model's scores drift upwards on val: the best val threshold is well above 0.5.
    val_labels, val_probs = noisy_scores(400, 9)
    val_probs = np.clip(val_probs + 0.15, 0.0, 1.0)
    test_labels, test_probs = noisy_scores(400, 10)

    threshold = select_threshold(val_labels, val_probs, criterion="f1")
    test_best = select_threshold(test_labels, test_probs, criterion="f1")
    assert threshold != test_best  # the protocol matters: test would pick another value

    test_metrics = binary_metrics(test_labels, test_probs, threshold=threshold)
    assert test_metrics["threshold"] == threshold
    assert test_metrics["tp"] + test_metrics["fp"] == int((test_probs >= threshold).sum())
    assert test_metrics["f1"] == pytest.approx(f1_at(test_labels, test_probs, threshold))
    assert test_metrics["f1"] == pytest.approx(
        f1_score(test_labels, (test_probs >= threshold).astype(int))
    )


def test_threshold_errors() -> None:
    with pytest.raises(ValueError, match="unknown threshold criterion 'best'"):
        select_threshold([0, 1], [0.2, 0.8], criterion="best")
    with pytest.raises(ValueError, match="needs both real and fake"):
        select_threshold([1, 1, 1], [0.2, 0.6, 0.8], criterion="f1")
    assert select_threshold([1, 1, 1], [0.2, 0.6, 0.8], criterion="fixed") == 0.5


# ----------------------------------------------------------------------------- calibration


def calibration_split(n: int, seed: int, sharpness: float) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from true logits; predictions with the logits multiplied by ``sharpness``."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=n)
    labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-logits))).astype(int)
    return labels, logits * sharpness


def test_temperature_fixes_over_confidence_and_generalises() -> None:
    val_labels, val_logits = calibration_split(4000, 11, sharpness=3.0)
    val_probs = 1.0 / (1.0 + np.exp(-val_logits))

    temperature = fit_temperature(val_probs, val_labels)
    assert temperature > 1.0
    assert temperature == pytest.approx(3.0, rel=0.15)
    calibrated = apply_temperature(val_probs, temperature)
    assert clipped_log_loss(val_labels, calibrated) < clipped_log_loss(val_labels, val_probs)
    assert expected_calibration_error(val_labels, calibrated) < expected_calibration_error(
        val_labels, val_probs
    )
    # Ranking is unchanged, and the same T helps an unseen test split.
    assert roc_auc_score(val_labels, calibrated) == pytest.approx(
        roc_auc_score(val_labels, val_probs)
    )
    test_labels, test_logits = calibration_split(4000, 12, sharpness=3.0)
    test_probs = 1.0 / (1.0 + np.exp(-test_logits))
    assert clipped_log_loss(test_labels, apply_temperature(test_probs, temperature)) < (
        clipped_log_loss(test_labels, test_probs)
    )


def test_temperature_from_logits_and_under_confidence() -> None:
    labels, logits = calibration_split(3000, 13, sharpness=3.0)
    from_logits = fit_temperature(logits, labels, input_kind="logit")
    from_probs = fit_temperature(1.0 / (1.0 + np.exp(-logits)), labels)
    assert from_logits == pytest.approx(from_probs, rel=1e-3)

    labels, logits = calibration_split(3000, 14, sharpness=0.4)
    assert fit_temperature(logits, labels, input_kind="logit") < 1.0


def test_apply_temperature_identity_and_errors() -> None:
    probs = np.array([0.01, 0.3, 0.5, 0.9])
    assert apply_temperature(probs, 1.0) == pytest.approx(probs)
    assert apply_temperature(probs, 2.0)[2] == pytest.approx(0.5)
    assert np.all(np.abs(apply_temperature(probs, 2.0) - 0.5) <= np.abs(probs - 0.5))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        apply_temperature(probs, 0.0)


def test_evaluation_imports_no_training_code() -> None:
    code = (
        "import sys\n"
        "import deepfake_exp.evaluation.metrics, deepfake_exp.evaluation.aggregate\n"
        "import deepfake_exp.evaluation.threshold, deepfake_exp.evaluation.calibration\n"
        "import deepfake_exp.evaluation.plots, deepfake_exp.evaluation.bootstrap\n"
        "bad = [m for m in ('torch', 'lightning', 'pytorch_lightning', 'deepfake_exp.models')\n"
        "       if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
