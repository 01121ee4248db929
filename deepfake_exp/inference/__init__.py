"""Inference from a checkpoint: safe rebuilding, the one P(fake) path, TTA, scoring, export."""

from deepfake_exp.inference.checkpoint import (
    load_detector,
    resolve_checkpoint,
    stored_data_fingerprint,
)
from deepfake_exp.inference.proba import FakeProbability, fake_probability_model
from deepfake_exp.inference.safe import (
    UnsafeCheckpointError,
    check_targets,
    is_allowed_target,
    safe_instantiate,
)
from deepfake_exp.inference.scoring import predict_batches

__all__ = [
    "FakeProbability",
    "UnsafeCheckpointError",
    "check_targets",
    "fake_probability_model",
    "is_allowed_target",
    "load_detector",
    "predict_batches",
    "resolve_checkpoint",
    "safe_instantiate",
    "stored_data_fingerprint",
]
