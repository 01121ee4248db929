"""Augmentation pipelines: each option builds a train and an eval transform for a model.

Transforms map an RGB uint8 ``HxWx3`` face crop to a normalised ``3xHxW`` float tensor. The
input size and normalisation come from the model config (``${model.input_size}`` ...), so the
data always follows the model. Eval transforms are deterministic: resize + normalise only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import albumentations as A
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from torch.utils.data import Dataset

Transform = Callable[[np.ndarray], torch.Tensor]


class Augmentation:
    """Base pipeline: subclasses list their random train ops in ``train_ops``.

    Args:
        input_size: Square side the model expects.
        mean: Per-channel normalisation mean (0..1 scale).
        std: Per-channel normalisation std.
    """

    def __init__(
        self,
        input_size: int,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
    ) -> None:
        self.input_size = int(input_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def train_ops(self) -> list[A.BasicTransform]:
        return []

    def wrap_train_dataset(self, dataset: Dataset) -> Dataset:
        """Hook for pipelines that change what a training sample is (self-blended pairs)."""
        return dataset

    def _finish(self) -> list[A.BasicTransform]:
        return [
            A.Resize(self.input_size, self.input_size),
            A.Normalize(mean=self.mean, std=self.std),
            ToTensorV2(),
        ]

    def _compose(self, ops: list[A.BasicTransform]) -> Transform:
        pipeline = A.Compose(ops)
        return lambda image: pipeline(image=image)["image"]

    def train_transform(self) -> Transform:
        return self._compose([*self.train_ops(), *self._finish()])

    def eval_transform(self) -> Transform:
        return self._compose(self._finish())


class NoAugmentation(Augmentation):
    """Resize + normalise only (``augmentation=none``)."""


class BasicAugmentation(Augmentation):
    """The CS4487 torchvision-style pipeline: horizontal flip and a small rotation.

    Args:
        hflip_p: Probability of a horizontal flip.
        rotation: Maximum rotation in degrees (applied with probability ``rotation_p``).
        rotation_p: Probability of a rotation.
    """

    def __init__(
        self,
        input_size: int,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        hflip_p: float = 0.5,
        rotation: float = 10.0,
        rotation_p: float = 0.5,
    ) -> None:
        super().__init__(input_size, mean, std)
        self.hflip_p = hflip_p
        self.rotation = rotation
        self.rotation_p = rotation_p

    def train_ops(self) -> list[A.BasicTransform]:
        return [
            A.HorizontalFlip(p=self.hflip_p),
            A.Rotate(limit=self.rotation, border_mode=0, p=self.rotation_p),
        ]
