"""Temperature scaling: one scalar fitted on validation that makes probabilities honest.

Deep detectors are over-confident, and log-loss (the DFDC metric) punishes confident mistakes
hard. Dividing the logit by a temperature ``T`` fitted on validation fixes most of it without
changing the ranking, so accuracy at 0.5, ROC-AUC and AP are untouched.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, logit

from deepfake_exp.evaluation.metrics import LOG_LOSS_EPS, as_binary_arrays

LOG_TEMPERATURE_BOUNDS = (-5.0, 5.0)  # T in [0.0067, 148]: far beyond any sane calibration


def clipped_logit(y_prob: Any, eps: float = LOG_LOSS_EPS) -> np.ndarray:
    """``logit(p)`` with ``p`` clipped like the log-loss clips it, so 0 and 1 stay finite."""
    probs = np.clip(np.asarray(y_prob, dtype=np.float64), eps, 1.0 - eps)
    return logit(probs)


def _mean_nll(logits: np.ndarray, labels: np.ndarray) -> float:
    """Binary cross-entropy from logits, stable for large |logit|."""
    return float(np.mean(np.logaddexp(0.0, logits) - labels * logits))


def fit_temperature(
    logits_or_logit_probs: Any,
    y_true: Any,
    input_kind: Literal["auto", "logit", "prob"] = "auto",
) -> float:
    """Fit ``T > 0`` minimising the validation NLL of ``sigmoid(logit / T)``.

    Args:
        logits_or_logit_probs: Validation logits or probabilities of FAKE.
        y_true: Validation labels (0 real, 1 fake).
        input_kind: ``prob`` converts with a clipped logit; ``logit`` uses values as they are;
            ``auto`` treats values as probabilities when all lie in [0, 1].

    Returns:
        The temperature; ``> 1`` means the model was over-confident.
    """
    values = np.asarray(logits_or_logit_probs, dtype=np.float64).reshape(-1)
    if input_kind not in ("auto", "logit", "prob"):
        raise ValueError(f"input_kind must be 'auto', 'logit' or 'prob', got {input_kind!r}")
    if not np.isfinite(values).all():
        raise ValueError("logits_or_logit_probs holds NaN/inf values")
    is_prob = input_kind == "prob" or (
        input_kind == "auto" and values.size > 0 and values.min() >= 0.0 and values.max() <= 1.0
    )
    if is_prob:
        labels, probs = as_binary_arrays(y_true, values)
        logits = clipped_logit(probs)
    else:
        labels, _ = as_binary_arrays(y_true, expit(values))
        logits = values
    result = minimize_scalar(
        lambda log_t: _mean_nll(logits / np.exp(log_t), labels),
        bounds=LOG_TEMPERATURE_BOUNDS,
        method="bounded",
        options={"xatol": 1e-6},
    )
    if not result.success:
        raise RuntimeError(f"temperature fit did not converge: {result.message}")
    return float(np.exp(result.x))


def apply_temperature(y_prob: Any, temperature: float) -> np.ndarray:
    """Rescale probabilities with a fitted temperature: ``sigmoid(logit(p) / T)``."""
    if not temperature > 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return expit(clipped_logit(y_prob) / temperature)
