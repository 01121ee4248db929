"""The explanation gallery: where a trained detector looks on a sample of scored faces."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor

from deepfake_exp.data.datamodule import FaceDataset
from deepfake_exp.data.records import LABEL_NAMES
from deepfake_exp.evaluation.gradcam import explain, overlay
from deepfake_exp.evaluation.plots import plot_gallery, sample_faces
from deepfake_exp.inference.proba import fake_probability_model
from deepfake_exp.inference.scoring import model_device
from deepfake_exp.utils.images import denormalise


def explanation_figure(
    module: Any,
    faces: pd.DataFrame,
    faces_root: str | Path,
    transform: Callable[[np.ndarray], Tensor],
    k: int = 8,
    seed: int = 0,
) -> Figure | None:
    """Grad-CAM (CNN) or attention-rollout (ViT) overlays for a sample of scored faces.

    Each face is shown as the model saw it, next to its heat map of evidence for FAKE, with
    its true label and P(fake). ``None`` when there is nothing to show.
    """
    sample = sample_faces(faces, k, seed)
    if sample.empty:
        return None
    dataset = FaceDataset(sample, faces_root, transform)
    images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
    proba = fake_probability_model(module)
    backbone = proba.backbone
    maps, method = explain(proba.logits_model(), backbone, images.to(model_device(proba)))
    shown, captions = [], []
    rgb = denormalise(images, backbone.mean, backbone.std)
    for image, heat, label, prob in zip(rgb, maps, sample["label"], sample["prob"], strict=True):
        shown += [image, overlay(image, heat)]
        captions += [f"{LABEL_NAMES[int(label)]}  p={prob:.2f}", method]
    what = "evidence for FAKE" if method == "Grad-CAM" else "where the CLS token looks"
    return plot_gallery(shown, captions, ncols=4, title=f"{method}: {what}")
