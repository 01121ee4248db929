"""Model inputs back to pictures: the one inverse of the eval transform's normalisation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def denormalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalised ``(3, H, W)`` or ``(B, 3, H, W)`` tensors back to RGB ``uint8`` ``(..., H, W, 3)``.

    Figures show exactly what the model saw (resized, padded, augmented), not the crop file.
    """
    array = images.detach().cpu().float().numpy()
    shape = (3, 1, 1)
    array = array * np.asarray(std, np.float32).reshape(shape) + np.asarray(
        mean, np.float32
    ).reshape(shape)
    array = np.moveaxis(array, -3, -1)
    return (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
