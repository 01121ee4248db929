"""Augmentation pipelines: each option builds a train and an eval transform for a model.

Transforms map an RGB uint8 ``HxWx3`` face crop to a normalised ``3xHxW`` float tensor. The
input size and normalisation come from the model config (``${model.input_size}`` ...), which
asks the model class for them once (``${model_data:mean}``, ``deepfake_exp.utils.data_config``),
so the data always follows the model. Eval transforms are deterministic: resize (+ pad) + normalise.

Seeding, and why it is done here: albumentations 2.0.8 gives every transform of a
``Compose(seed=s)`` its own generator seeded with the same ``s``, so their draws coincide
(with ``seed=0`` a flip with p=0.5 and a rotation with p=0.5 always fire together), and a
forked DataLoader worker inherits its parent's generator, so all workers draw the same
sequence. ``AlbumentationsTransform`` therefore shares one generator across the pipeline and
seeds it once per process from torch (``seed_everything`` fixes it; a worker uses its own
worker seed), optionally mixed with a fixed ``seed``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from deepfake_exp.utils.data_config import IMAGENET_MEAN, IMAGENET_STD
from deepfake_exp.utils.images import denormalise  # noqa: F401  (its old home; figures use it)

Transform = Callable[[np.ndarray], torch.Tensor]

OTHER = "other"  # albumentations target name of the second image of a pair
MAIN_STREAM = -1  # stream id of the main process (worker streams are torch's worker seeds)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """``HxWxC`` array -> contiguous ``CxHxW`` tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


class AlbumentationsTransform:
    """An albumentations pipeline as ``image -> tensor``, seeded per process (see module doc).

    With a fixed ``seed`` the main process replays the same stream every run; without one it
    starts from a draw of torch's RNG, so ``seed_everything`` governs it. A DataLoader worker
    mixes in torch's per-worker seed, so workers never repeat each other.

    The ``HxWxC`` float result becomes a contiguous ``CxHxW`` tensor by a numpy transpose:
    ``ToTensorV2`` returns a channel-last view, and torch's copy of it (``torch.stack`` in the
    collate) measured 25 ms for two 224-px images, against 0.1 ms here.

    Args:
        ops: The albumentations ops, ending in normalisation.
        seed: Fixed base seed, or ``None``.
    """

    def __init__(self, ops: Sequence[A.BasicTransform], seed: int | None = None) -> None:
        self.pipeline = A.Compose(list(ops), additional_targets={OTHER: "image"})
        self.seed = seed
        self._stream: int | None = None  # the process stream the generator was seeded for
        if seed is not None:
            self.reseed(seed)
            self._stream = MAIN_STREAM

    def reseed(self, *keys: int) -> None:
        """Restart the shared random stream from ``keys`` (non-negative ints)."""
        sequence = np.random.SeedSequence([int(k) for k in keys])
        self.pipeline.set_random_state(
            np.random.default_rng(sequence), random.Random(int(sequence.generate_state(1)[0]))
        )

    def _sync_stream(self) -> None:
        info = get_worker_info()
        stream = MAIN_STREAM if info is None else info.seed
        if stream == self._stream:
            return
        self._stream = stream
        base = () if self.seed is None else (self.seed,)
        if info is None:
            self.reseed(*base, int(torch.randint(0, 2**62, ()).item()))
        else:
            self.reseed(*base, info.seed)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        self._sync_stream()
        return to_tensor(self.pipeline(image=image)["image"])

    def pair(
        self, image: np.ndarray, other: np.ndarray, seed: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both images through the SAME random draw (a real face and its pseudo-fake).

        Args:
            image: First image.
            other: Second image, same size as ``image``.
            seed: Reseed first, so the pair depends only on this seed (per-item determinism).
        """
        if seed is None:
            self._sync_stream()
        else:
            self.reseed(seed)
        out = self.pipeline(image=image, **{OTHER: other})
        return to_tensor(out["image"]), to_tensor(out[OTHER])


class Augmentation:
    """Base pipeline: resize + normalise; subclasses add random ops around the resize.

    A train transform is ``train_ops`` (at crop resolution) -> ``train_resize_ops`` ->
    ``post_resize_ops`` (at model resolution) -> normalise. The eval transform is
    ``resize_ops`` -> normalise, with no random op.

    Args:
        input_size: Square side the model expects.
        mean: Per-channel normalisation mean (0..1 scale).
        std: Per-channel normalisation std.
        seed: Fixed augmentation seed (``None``: from torch's seed, per worker).
    """

    def __init__(
        self,
        input_size: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        seed: int | None = None,
    ) -> None:
        self.input_size = int(input_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.seed = seed

    def train_ops(self) -> list[A.BasicTransform]:
        """Random ops applied to the crop before it is resized."""
        return []

    def resize_ops(self) -> list[A.BasicTransform]:
        """Deterministic resize to the model's input (area-averaged when shrinking)."""
        return [A.Resize(self.input_size, self.input_size, area_for_downscale="image")]

    def train_resize_ops(self) -> list[A.BasicTransform]:
        return self.resize_ops()

    def post_resize_ops(self) -> list[A.BasicTransform]:
        """Random ops applied at the model's input size."""
        return []

    def normalise_ops(self) -> list[A.BasicTransform]:
        return [A.Normalize(mean=self.mean, std=self.std)]

    def wrap_train_dataset(self, dataset: Dataset) -> Dataset:
        """Hook for pipelines that change what a training sample is (self-blended pairs)."""
        return dataset

    def _compose(self, ops: list[A.BasicTransform]) -> AlbumentationsTransform:
        return AlbumentationsTransform(ops, seed=self.seed)

    def train_transform(self) -> AlbumentationsTransform:
        return self._compose(
            [
                *self.train_ops(),
                *self.train_resize_ops(),
                *self.post_resize_ops(),
                *self.normalise_ops(),
            ]
        )

    def eval_transform(self) -> AlbumentationsTransform:
        return self._compose([*self.resize_ops(), *self.normalise_ops()])


class NoAugmentation(Augmentation):
    """Resize + normalise only (``augmentation=none``)."""


class BasicAugmentation(Augmentation):
    """The CS4487 torchvision-style pipeline: horizontal flip and a small rotation.

    Args:
        hflip_p: Probability of a horizontal flip.
        rotation: Maximum rotation in degrees (applied with probability ``rotation_p``).
        rotation_p: Probability of a rotation (torchvision's ``RandomRotation`` always rotates).
    """

    def __init__(
        self,
        input_size: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        hflip_p: float = 0.5,
        rotation: float = 10.0,
        rotation_p: float = 1.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(input_size, mean, std, seed)
        self.hflip_p = hflip_p
        self.rotation = rotation
        self.rotation_p = rotation_p

    def train_ops(self) -> list[A.BasicTransform]:
        return [
            A.HorizontalFlip(p=self.hflip_p),
            A.Rotate(limit=self.rotation, border_mode=cv2.BORDER_CONSTANT, p=self.rotation_p),
        ]


def _pair(values: Sequence[float], name: str) -> tuple[float, float]:
    if len(values) != 2 or values[0] > values[1]:
        raise ValueError(f"{name} must be a [low, high] range, got {list(values)}")
    return float(values[0]), float(values[1])


class DFDCAugmentation(Augmentation):
    """The York study's (DFDC winner's) albumentations pipeline, in albumentations 2.x terms.

    Train: JPEG compression, Gaussian noise, horizontal flip, isotropic resize (longest side to
    ``input_size``, random interpolation as the original's three ``IsotropicResize`` variants),
    constant padding to a square, one colour op, grayscale, shift-scale-rotate. Eval:
    isotropic resize + pad. ``ShiftScaleRotate`` is deprecated in 2.x; ``Affine`` with
    ``keep_ratio`` is the same transform.

    Args:
        compression_p: Probability of a JPEG round trip ...
        quality_range: ... with a quality drawn from this range.
        gauss_noise_p: Probability of Gaussian noise ...
        noise_std_range: ... of this std, as a fraction of 255 (2.x's default, 0.2-0.44, is
            ten times 1.x's ``var_limit=(10, 50)`` that the study used: 0.012-0.028).
        hflip_p: Probability of a horizontal flip.
        color_p: Probability of one of brightness/contrast, FancyPCA, hue/saturation.
        gray_p: Probability of grayscale.
        affine_p: Probability of the shift-scale-rotate ...
        shift_limit: ... with shifts up to this fraction of the side,
        scale_limit: ... scales in ``1 +- scale_limit``,
        rotate_limit: ... rotations up to this many degrees.
    """

    def __init__(
        self,
        input_size: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        compression_p: float = 0.5,
        quality_range: Sequence[int] = (60, 100),
        gauss_noise_p: float = 0.1,
        noise_std_range: Sequence[float] = (0.012, 0.028),
        hflip_p: float = 0.5,
        color_p: float = 0.7,
        gray_p: float = 0.2,
        affine_p: float = 0.5,
        shift_limit: float = 0.1,
        scale_limit: float = 0.2,
        rotate_limit: float = 10.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(input_size, mean, std, seed)
        low, high = _pair(quality_range, "quality_range")
        self.quality_range = (int(low), int(high))
        self.noise_std_range = _pair(noise_std_range, "noise_std_range")
        self.compression_p = compression_p
        self.gauss_noise_p = gauss_noise_p
        self.hflip_p = hflip_p
        self.color_p = color_p
        self.gray_p = gray_p
        self.affine_p = affine_p
        self.shift_limit = shift_limit
        self.scale_limit = scale_limit
        self.rotate_limit = rotate_limit

    def _isotropic(self, up: int, area: bool = True) -> A.LongestMaxSize:
        return A.LongestMaxSize(
            max_size=self.input_size, interpolation=up, area_for_downscale="image" if area else None
        )

    def _pad(self) -> A.PadIfNeeded:
        return A.PadIfNeeded(
            self.input_size, self.input_size, border_mode=cv2.BORDER_CONSTANT, fill=0
        )

    def train_ops(self) -> list[A.BasicTransform]:
        return [
            A.ImageCompression(quality_range=self.quality_range, p=self.compression_p),
            A.GaussNoise(std_range=self.noise_std_range, p=self.gauss_noise_p),
            A.HorizontalFlip(p=self.hflip_p),
        ]

    def resize_ops(self) -> list[A.BasicTransform]:
        return [self._isotropic(cv2.INTER_CUBIC), self._pad()]

    def train_resize_ops(self) -> list[A.BasicTransform]:
        variants = [
            self._isotropic(cv2.INTER_CUBIC),
            self._isotropic(cv2.INTER_LINEAR),
            self._isotropic(cv2.INTER_LINEAR, area=False),
        ]
        return [A.OneOf(variants, p=1.0), self._pad()]

    def post_resize_ops(self) -> list[A.BasicTransform]:
        color = [A.RandomBrightnessContrast(), A.FancyPCA(), A.HueSaturationValue()]
        return [
            A.OneOf(color, p=self.color_p),
            A.ToGray(p=self.gray_p),
            A.Affine(
                scale=(1.0 - self.scale_limit, 1.0 + self.scale_limit),
                translate_percent=(-self.shift_limit, self.shift_limit),
                rotate=(-self.rotate_limit, self.rotate_limit),
                keep_ratio=True,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                p=self.affine_p,
            ),
        ]
