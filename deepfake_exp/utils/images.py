"""Pictures as files and as model inputs: the one image-file codec (the JPEG round trip of
crops, JPEG perturbations) and the one inverse of the eval transform's normalisation."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

JPEG_FORMATS = frozenset({"jpg", "jpeg"})


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


def encode_image(image: np.ndarray, image_format: str, jpeg_quality: int = 95) -> np.ndarray:
    """An RGB ``uint8`` image as the bytes of an image file (``jpg``/``jpeg`` at ``jpeg_quality``)."""
    is_jpeg = str(image_format).lower() in JPEG_FORMATS
    suffix = ".jpg" if is_jpeg else f".{image_format}"
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if is_jpeg else []
    ok, encoded = cv2.imencode(suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise RuntimeError(f"could not encode an image as {image_format}")
    return encoded


def as_saved(image: np.ndarray, image_format: str, jpeg_quality: int = 95) -> np.ndarray:
    """The RGB image as it reads back from its file: through the same encoding.

    Inference on new files must see what training read from its crop files; a JPEG crop loses
    detail in the round trip, and the detector learned on that.
    """
    decoded = cv2.imdecode(encode_image(image, image_format, jpeg_quality), cv2.IMREAD_COLOR)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
