"""Rebuild a trained detector from its checkpoint alone and run it over faces."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from deepfake_exp.models.module import DeepfakeDetector


def resolve_checkpoint(ckpt_path: str | Path | None, run_dir: str | Path | None) -> Path:
    """``ckpt_path`` itself, or ``<run_dir>/checkpoints/best.ckpt``; clear error if absent."""
    if ckpt_path:
        path = Path(ckpt_path)
    elif run_dir:
        path = Path(run_dir) / "checkpoints" / "best.ckpt"
    else:
        raise ValueError("give ckpt_path=<file.ckpt> or run_dir=<train run directory>")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path.resolve()} does not exist")
    return path


def load_detector(
    ckpt_path: str | Path, map_location: str = "cpu"
) -> tuple[DeepfakeDetector, DictConfig]:
    """The trained module and the run's resolved config, from the checkpoint file only.

    Pretrained-weight loading is switched off: the checkpoint holds the trained weights, and
    a machine without network must still be able to evaluate.
    """
    checkpoint = torch.load(ckpt_path, map_location=map_location, weights_only=True)
    if "run_config" not in checkpoint:
        raise KeyError(f"{ckpt_path} has no run_config: it was not written by deepfake_exp.train")
    cfg = OmegaConf.create(checkpoint["run_config"])
    model_cfg = cfg.model.copy()
    for key in ("pretrained", "weights_path"):
        if key in model_cfg:
            model_cfg[key] = None if key == "weights_path" else False
    module = instantiate(cfg.module, backbone=instantiate(model_cfg))
    module.load_state_dict(checkpoint["state_dict"])
    module.run_config = checkpoint["run_config"]
    return module.eval(), cfg


@torch.no_grad()
def predict_batches(
    module: DeepfakeDetector,
    batches: Iterable[dict[str, torch.Tensor]],
    flip_tta: bool = False,
    progress: bool = False,
    desc: str = "predict",
) -> pd.DataFrame:
    """P(fake) per sample as a frame with ``index``, ``label``, ``prob``.

    ``flip_tta`` averages the prediction of the image and its horizontal mirror.
    """
    module.eval()
    device = module.device
    rows = {"index": [], "label": [], "prob": []}
    for batch in tqdm(batches, desc=desc, disable=not progress, leave=False):
        images = batch["image"].to(device)
        prob = module.predict_proba(images)
        if flip_tta:
            prob = (prob + module.predict_proba(torch.flip(images, dims=[3]))) / 2
        rows["index"].append(batch["index"].cpu().numpy())
        rows["label"].append(batch["label"].cpu().numpy())
        rows["prob"].append(prob.float().cpu().numpy())
    return pd.DataFrame({k: np.concatenate(v) if v else np.array([]) for k, v in rows.items()})
