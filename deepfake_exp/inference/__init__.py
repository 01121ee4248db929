"""Inference from a checkpoint: safe rebuilding, the run's val threshold, batched scoring."""

from deepfake_exp.inference.checkpoint import (
    RunThreshold,
    load_detector,
    predict_batches,
    resolve_checkpoint,
    run_threshold,
    stored_data_fingerprint,
)
from deepfake_exp.inference.safe import (
    UnsafeCheckpointError,
    check_targets,
    is_allowed_target,
    safe_instantiate,
)

__all__ = [
    "RunThreshold",
    "UnsafeCheckpointError",
    "check_targets",
    "is_allowed_target",
    "load_detector",
    "predict_batches",
    "resolve_checkpoint",
    "run_threshold",
    "safe_instantiate",
    "stored_data_fingerprint",
]
