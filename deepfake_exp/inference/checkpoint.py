"""Rebuild a trained detector from its checkpoint alone."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from deepfake_exp.inference.safe import check_targets, safe_instantiate
from deepfake_exp.models.module import DeepfakeDetector
from deepfake_exp.runs import RunDir
from deepfake_exp.utils.renamed import upgrade_targets

log = logging.getLogger(__name__)


def resolve_checkpoint(ckpt_path: str | Path | None, run_dir: str | Path | None) -> Path:
    """``ckpt_path`` itself, or the run's best checkpoint; clear error if absent."""
    if ckpt_path:
        path = Path(ckpt_path)
    elif run_dir:
        path = RunDir(run_dir).best_ckpt
    else:
        raise ValueError("give ckpt_path=<file.ckpt> or run_dir=<train run directory>")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path.resolve()} does not exist")
    return path


def load_detector(
    ckpt_path: str | Path, map_location: str = "cpu", trust_checkpoint: bool = False
) -> tuple[DeepfakeDetector, DictConfig]:
    """The trained module and the run's resolved config, from the checkpoint file only.

    Every ``_target_`` of the stored config is checked against the allow-list of
    :mod:`deepfake_exp.inference.safe` before anything is built (``trust_checkpoint``
    skips that for a file one made oneself). The returned config has passed the check, so
    callers rebuild its other blocks with ``safe_instantiate(cfg.<block>)``.

    Pretrained-weight loading is switched off: the checkpoint holds the trained weights, and
    a machine without network must still be able to evaluate. The module carries the
    checkpoint's ``data_fingerprint`` (``None`` for runs older than fingerprints).
    """
    checkpoint = torch.load(ckpt_path, map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, dict) or "run_config" not in checkpoint:
        raise KeyError(f"{ckpt_path} has no run_config: it was not written by deepfake_exp.train")
    stored = checkpoint["run_config"]
    if not isinstance(stored, dict):
        raise TypeError(f"{ckpt_path}: run_config is a {type(stored).__name__}, not a mapping")
    stored = upgrade_targets(stored)  # runs made before a class moved module
    if trust_checkpoint:
        log.warning("trust_checkpoint=true: %s is rebuilt without the allow-list", ckpt_path)
    else:
        check_targets(stored, what=f"checkpoint {ckpt_path}")
    cfg = OmegaConf.create(stored)
    model_cfg = cfg.model.copy()
    for key in ("pretrained", "weights_path"):
        if key in model_cfg:
            model_cfg[key] = None if key == "weights_path" else False
    backbone = safe_instantiate(model_cfg, trust=trust_checkpoint, key="model")
    module = safe_instantiate(cfg.module, backbone=backbone, trust=trust_checkpoint)
    module.load_state_dict(checkpoint["state_dict"])
    module.run_config = stored
    module.data_fingerprint = checkpoint.get("data_fingerprint")
    return module.eval(), cfg


def stored_data_fingerprint(ckpt_path: str | Path) -> dict | None:
    """The data fingerprint a checkpoint was trained on, without rebuilding its model
    (``None``: a run older than fingerprints)."""
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    return checkpoint.get("data_fingerprint") if isinstance(checkpoint, dict) else None
