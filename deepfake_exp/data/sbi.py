"""Self-blended images (SBI; Shiohara & Yamasaki, CVPR 2022): pseudo-fakes made from real faces.

A real face crop is blended into itself: a copy ("source") gets a colour and frequency jitter
and a slight affine warp, and is pasted back through a blurred, elastically deformed face mask.
The result carries the generic traces of a face swap (a blending boundary, a colour and
sharpness mismatch, a landmark misalignment) but no identity change, so a detector trained on
(real, pseudo-fake) pairs learns those traces instead of one generator's fingerprint.

Without landmarks the face mask is an ellipse at the crop centre: preprocessing crops are
squares around the detector's box grown by ``margin``, so the face box is the central
``1 / (1 + margin)`` of the side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from deepfake_exp.data.records import FAKE, REAL
from deepfake_exp.data.transforms import AlbumentationsTransform, Augmentation
from deepfake_exp.utils.data_config import IMAGENET_MEAN, IMAGENET_STD

BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # SBI's choices (full blends twice as likely)
FREQUENCY_OPS = ("downscale", "sharpen", "blur")
MASK_FLOOR = 1e-3  # weights below this are cut to 0: the blur's far tail changes no pixel


def _range(values: Sequence[float], name: str, low: float = 0.0) -> tuple[float, float]:
    values = tuple(float(v) for v in values)
    if len(values) != 2 or not low <= values[0] <= values[1]:
        raise ValueError(f"BlendParams.{name} must be [low, high] with {low} <= low <= high")
    return values


@dataclass(frozen=True)
class BlendParams:
    """How a self-blended image is made (SBI's defaults where the paper gives them).

    Lengths are fractions of the crop side, so the same values fit any crop size.

    Attributes:
        margin: Crop margin used by preprocessing (face box side = crop side / (1 + margin)).
        mask_scale: Ellipse half-height as a fraction of the face box's half side.
        mask_aspect: Ellipse width / height.
        mask_shift: Random offset of the ellipse centre (fraction of the side).
        elastic_amount: Std of the mask's elastic displacement (fraction of the side).
        elastic_scale: Feature size (smoothness) of that displacement field.
        mask_blur: Range of the Gaussian sigma that softens the mask edge (SBI: ~0.005-0.02;
            wider here, so soft seams are seen too).
        blend_ratios: Peak opacity of the source, drawn uniformly from this list.
        shift_x: Horizontal shift of the source, up to this fraction (SBI: 0.03).
        shift_y: Vertical shift of the source (SBI: 0.015).
        scale: Scale of the source in ``[1 - scale, 1 / (1 - scale)]`` (SBI: 0.05).
        brightness: Brightness change, fraction of 255 (SBI: 0.1).
        contrast: Contrast change, relative (SBI: 0.1).
        hue_shift: Hue shift in degrees.
        saturation: Relative saturation change.
        rgb_shift: Per-channel shift in 0..255 units ...
        rgb_shift_p: ... applied with this probability (SBI: 20, 0.3).
        frequency_ops: Frequency changes to choose from (``downscale``, ``sharpen``, ``blur``) ...
        frequency_p: ... one applied with this probability (SBI: downscale or sharpen, always).
    """

    margin: float = 0.5
    mask_scale: tuple[float, float] = (0.8, 1.0)
    mask_aspect: tuple[float, float] = (0.75, 0.9)
    mask_shift: float = 0.02
    elastic_amount: float = 0.01
    elastic_scale: float = 0.04
    mask_blur: tuple[float, float] = (0.005, 0.06)
    blend_ratios: tuple[float, ...] = BLEND_RATIOS
    shift_x: float = 0.03
    shift_y: float = 0.015
    scale: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1
    hue_shift: float = 5.0
    saturation: float = 0.1
    rgb_shift: float = 20.0
    rgb_shift_p: float = 0.3
    frequency_ops: tuple[str, ...] = ("downscale", "sharpen")
    frequency_p: float = 1.0

    def __post_init__(self) -> None:
        for name in ("mask_scale", "mask_aspect", "mask_blur"):
            object.__setattr__(self, name, _range(getattr(self, name), name))
        ratios = tuple(float(r) for r in self.blend_ratios)
        if not ratios or not all(0.0 < r <= 1.0 for r in ratios):
            raise ValueError(f"BlendParams.blend_ratios must lie in (0, 1], got {list(ratios)}")
        object.__setattr__(self, "blend_ratios", ratios)
        ops = tuple(str(op) for op in self.frequency_ops)
        unknown = sorted(set(ops) - set(FREQUENCY_OPS))
        if unknown:
            raise ValueError(f"BlendParams.frequency_ops: unknown {unknown}; use {FREQUENCY_OPS}")
        object.__setattr__(self, "frequency_ops", ops)
        if not 0.0 <= self.scale < 1.0 or self.margin < 0:
            raise ValueError("BlendParams: scale must be in [0, 1) and margin >= 0")
        for name in ("rgb_shift_p", "frequency_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"BlendParams.{name} must be a probability")


class SelfBlend(NamedTuple):
    """A pseudo-fake, the per-pixel weight of the source in it, and the source itself."""

    blended: np.ndarray
    mask: np.ndarray
    source: np.ndarray


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _colour_jitter(image: np.ndarray, rng: np.random.Generator, p: BlendParams) -> np.ndarray:
    """Hue/saturation, brightness/contrast and (sometimes) an RGB shift: a skin-tone mismatch."""
    out = image
    if p.hue_shift or p.saturation:
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL)
        hue = np.arange(256, dtype=np.float32) + rng.uniform(-p.hue_shift, p.hue_shift) * 256 / 360
        sat = np.arange(256, dtype=np.float32) * (1.0 + rng.uniform(-p.saturation, p.saturation))
        lut = np.stack([np.round(hue) % 256, np.round(np.clip(sat, 0, 255)), np.arange(256)], 1)
        hsv = cv2.LUT(hsv, lut.astype(np.uint8).reshape(256, 1, 3))
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)
    gain = 1.0 + rng.uniform(-p.contrast, p.contrast)
    offset = np.full(3, rng.uniform(-p.brightness, p.brightness) * 255.0, np.float32)
    if rng.random() < p.rgb_shift_p:
        offset += rng.uniform(-p.rgb_shift, p.rgb_shift, 3).astype(np.float32)
    mean = float(np.mean(cv2.mean(out)[:3]))
    levels = np.arange(256, dtype=np.float32)[:, None]
    lut = np.clip((levels - mean) * gain + mean + offset + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(out, lut.reshape(256, 1, 3))


def _frequency_jitter(image: np.ndarray, rng: np.random.Generator, p: BlendParams) -> np.ndarray:
    """One sharpness change: the resolution mismatch of a synthesised face."""
    if not p.frequency_ops or rng.random() >= p.frequency_p:
        return image
    op = p.frequency_ops[int(rng.integers(len(p.frequency_ops)))]
    height, width = image.shape[:2]
    if op == "downscale":  # SBI's RandomDownScale: nearest down by 2 or 4, linear back up
        factor = (2, 4)[int(rng.integers(2))]
        small = cv2.resize(
            image,
            (max(width // factor, 1), max(height // factor, 1)),
            interpolation=cv2.INTER_NEAREST,
        )
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    if op == "sharpen":  # albumentations' Sharpen: alpha 0.2-0.5, lightness 0.5-1
        alpha, lightness = rng.uniform(0.2, 0.5), rng.uniform(0.5, 1.0)
        identity = np.zeros((3, 3), np.float32)
        identity[1, 1] = 1.0
        laplace = np.array([[-1, -1, -1], [-1, 8 + lightness, -1], [-1, -1, -1]], np.float32)
        kernel = (1 - alpha) * identity + alpha * laplace
        sharp = cv2.filter2D(image.astype(np.float32), -1, kernel)
        return np.clip(sharp + 0.5, 0, 255).astype(np.uint8)
    sigma = rng.uniform(0.005, 0.015) * max(height, width)
    return cv2.GaussianBlur(image, (0, 0), sigma)


def _ellipse_mask(shape: tuple[int, int], rng: np.random.Generator, p: BlendParams) -> np.ndarray:
    """Binary face ellipse at the crop centre, sized from the crop margin."""
    height, width = shape
    side = min(height, width)
    half_face = side / (1.0 + p.margin) / 2.0
    semi_y = _uniform(rng, p.mask_scale) * half_face
    semi_x = semi_y * _uniform(rng, p.mask_aspect)
    cx = width / 2.0 + rng.uniform(-p.mask_shift, p.mask_shift) * side
    cy = height / 2.0 + rng.uniform(-p.mask_shift, p.mask_shift) * side
    mask = np.zeros((height, width), np.uint8)
    cv2.ellipse(mask, ((cx, cy), (2 * semi_x, 2 * semi_y), 0.0), 1, -1, cv2.LINE_8)
    return mask.astype(np.float32)


def _hull_mask(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """Convex hull of facial landmarks (``N x 2`` pixel coordinates), as SBI does."""
    mask = np.zeros(shape, np.uint8)
    hull = cv2.convexHull(np.asarray(landmarks, np.float32).reshape(-1, 1, 2).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    return mask.astype(np.float32)


def _source_warp(shape: tuple[int, int], rng: np.random.Generator, p: BlendParams) -> np.ndarray:
    """A small scale + translation about the centre (SBI's landmark misalignment)."""
    height, width = shape
    scale = rng.uniform(1.0 - p.scale, 1.0 / (1.0 - p.scale))
    dx = rng.uniform(-p.shift_x, p.shift_x) * width
    dy = rng.uniform(-p.shift_y, p.shift_y) * height
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    return np.array(
        [[scale, 0.0, cx - scale * cx + dx], [0.0, scale, cy - scale * cy + dy]], np.float32
    )


def _elastic(mask: np.ndarray, rng: np.random.Generator, p: BlendParams) -> np.ndarray:
    """Deform the mask outline with a smooth random displacement field.

    The field is white noise on a coarse grid (one knot per ~2.5 ``elastic_scale``),
    upsampled bicubically: as smooth as Gaussian-filtered noise, at a fraction of the cost.
    """
    if p.elastic_amount <= 0:
        return mask
    height, width = mask.shape
    side = min(height, width)
    knots = int(np.ceil(1.0 / (2.5 * max(p.elastic_scale, 1e-3)))) + 1
    displacement = []
    for _ in range(2):
        coarse = rng.standard_normal((knots, knots)).astype(np.float32)
        field = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
        displacement.append(field * (p.elastic_amount * side / (field.std() + 1e-8)))
    ys, xs = np.indices((height, width), dtype=np.float32)
    warped = cv2.remap(
        mask,
        xs + displacement[0],
        ys + displacement[1],
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
    )
    return (warped > 0.5).astype(np.float32)


def blend_mask(
    shape: tuple[int, int],
    rng: np.random.Generator,
    params: BlendParams,
    warp: np.ndarray | None = None,
    landmarks: np.ndarray | None = None,
) -> np.ndarray:
    """The blending weight: face region, warped with the source, deformed, blurred, scaled.

    Values are exactly 0 away from the face (the blur kernel is finite), so the blend leaves
    the background bit-identical.
    """
    height, width = shape
    mask = _ellipse_mask(shape, rng, params) if landmarks is None else _hull_mask(shape, landmarks)
    if warp is not None:
        mask = cv2.warpAffine(mask, warp, (width, height), flags=cv2.INTER_LINEAR)
        mask = (mask > 0.5).astype(np.float32)
    mask = _elastic(mask, rng, params)
    sigma = _uniform(rng, params.mask_blur) * min(height, width)
    if sigma > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    peak = float(mask.max())
    if peak > 0:
        mask = mask / peak
    mask[mask < MASK_FLOOR] = 0.0
    ratio = params.blend_ratios[int(rng.integers(len(params.blend_ratios)))]
    return (mask * ratio).astype(np.float32)


def self_blend(
    image: np.ndarray,
    rng: np.random.Generator,
    landmarks: np.ndarray | None = None,
    **params: Any,
) -> SelfBlend:
    """Make an SBI pseudo-fake of one real RGB uint8 face crop.

    Args:
        image: Real face crop, ``HxWx3`` uint8.
        rng: The only source of randomness: the same generator state gives the same output.
        landmarks: Optional ``N x 2`` landmark pixels; the mask is then their convex hull.
        **params: ``BlendParams`` fields (defaults: SBI's).

    Returns:
        ``(blended, mask, source)``: the pseudo-fake (uint8), the source's per-pixel weight
        (float32 in [0, 1]; where it is 0 the pseudo-fake equals ``image``), and the
        jittered, warped source.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"self_blend needs an HxWx3 uint8 image, got {image.dtype} {image.shape}")
    return blend_with(image, rng, BlendParams(**params), landmarks)


def blend_with(
    image: np.ndarray,
    rng: np.random.Generator,
    p: BlendParams,
    landmarks: np.ndarray | None = None,
) -> SelfBlend:
    """``self_blend`` with validated parameters (the per-item path of the dataset)."""
    height, width = image.shape[:2]
    source = _frequency_jitter(_colour_jitter(image, rng, p), rng, p)
    warp = _source_warp((height, width), rng, p)
    source = cv2.warpAffine(
        source, warp, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    mask = blend_mask((height, width), rng, p, warp, landmarks)
    weight = mask[..., None]
    blended = source.astype(np.float32) * weight + image.astype(np.float32) * (1.0 - weight)
    return SelfBlend(np.clip(blended + 0.5, 0, 255).astype(np.uint8), mask, source)


def collate_pairs(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Flatten pair items into one batch: real, fake, real, fake, ... (labels 0, 1, 0, 1, ...)."""
    return {key: torch.cat([item[key] for item in items]) for key in items[0]}


class SelfBlendedDataset(Dataset):
    """The real faces of a training set, each item a (real, pseudo-fake) pair.

    Both images of a pair pass through the train transform with the same random draw, so
    they differ only by the blend. Items are stacked pairs (``image`` ``2x3xHxW``,
    ``label`` ``[0, 1]``, ``index`` the real row twice); ``collate_fn`` flattens them, so a
    loader's ``batch_size`` counts pairs.

    Args:
        dataset: A ``FaceDataset`` (``frame``, ``labels``, ``load_image``).
        transform: Train transform with a ``pair(image, other, seed)`` method.
        params: How pseudo-fakes are made.
        seed: Base seed of every item's generator.
        resample: Draw new pseudo-fakes each epoch (mixing in a draw from torch's RNG, which
            ``seed_everything`` and the DataLoader's per-worker seeding fix); ``False`` makes
            each item depend on ``(seed, index)`` only.
    """

    collate_fn = staticmethod(collate_pairs)

    def __init__(
        self,
        dataset: Any,
        transform: AlbumentationsTransform,
        params: BlendParams | None = None,
        seed: int = 0,
        resample: bool = True,
    ) -> None:
        self.dataset = dataset
        self.transform = transform
        self.params = params or BlendParams()
        self.seed = int(seed)
        self.resample = resample
        labels = np.asarray(dataset.labels)
        self.real_indices = np.flatnonzero(labels == REAL)
        if len(self.real_indices) == 0:
            raise ValueError("self-blended training needs REAL faces; the training split has none")
        self.frame = dataset.frame.iloc[self.real_indices].reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.real_indices)

    def item_rng(self, index: int) -> np.random.Generator:
        """The generator of one item (``index``: row in the wrapped dataset)."""
        keys = [self.seed, index]
        if self.resample:
            keys.append(int(torch.randint(0, 2**62, ()).item()))
        return np.random.default_rng(keys)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        index = int(self.real_indices[i])
        rng = self.item_rng(index)
        image = self.dataset.load_image(index)
        fake = blend_with(image, rng, self.params).blended
        real_t, fake_t = self.transform.pair(image, fake, seed=int(rng.integers(0, 2**62)))
        # numpy's stack: torch.stack of two 224-px images stalls for ~30 ms on a busy CPU
        return {
            "image": torch.from_numpy(np.stack([real_t.numpy(), fake_t.numpy()])),
            "label": torch.tensor([REAL, FAKE]),
            "index": torch.tensor([index, index]),
        }


class SBIAugmentation(Augmentation):
    """Train on real faces and their self-blended pseudo-fakes (``augmentation=sbi``).

    The wrapped training set drops the split's fakes: SBI learns from real faces alone, so
    its score on real fakes measures generalisation to an unseen manipulation. The train ops
    are SBI's own, applied to both images of a pair after blending.

    Args:
        blend: How pseudo-fakes are made (a ``BlendParams`` or its fields).
        hflip_p: Probability of a horizontal flip.
        rgb_shift_p: Probability of an RGB shift ...
        rgb_shift_limit: ... of up to this much per channel (0..255 units).
        hue_saturation_p: Probability of a hue/saturation/value shift ...
        hue_saturation_limits: ... of up to these (albumentations' uint8 units).
        brightness_contrast_p: Probability of a brightness/contrast change ...
        brightness_contrast_limit: ... of up to this much (SBI: 0.3).
        compression_p: Probability of a JPEG round trip ...
        quality_range: ... at a quality in this range (SBI: 40-100).
        resample: New pseudo-fakes every epoch (see ``SelfBlendedDataset``).
    """

    def __init__(
        self,
        input_size: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        blend: BlendParams | Mapping[str, Any] | None = None,
        hflip_p: float = 0.5,
        rgb_shift_p: float = 0.3,
        rgb_shift_limit: float = 20.0,
        hue_saturation_p: float = 0.3,
        hue_saturation_limits: Sequence[float] = (10, 15, 10),
        brightness_contrast_p: float = 0.3,
        brightness_contrast_limit: float = 0.3,
        compression_p: float = 0.5,
        quality_range: Sequence[int] = (40, 100),
        resample: bool = True,
        seed: int | None = None,
    ) -> None:
        super().__init__(input_size, mean, std, seed)
        if blend is None or isinstance(blend, BlendParams):
            self.blend = blend or BlendParams()
        else:
            self.blend = BlendParams(**blend)
        self.hflip_p = hflip_p
        self.rgb_shift_p = rgb_shift_p
        self.rgb_shift_limit = rgb_shift_limit
        self.hue_saturation_p = hue_saturation_p
        self.hue_saturation_limits = tuple(float(v) for v in hue_saturation_limits)
        self.brightness_contrast_p = brightness_contrast_p
        self.brightness_contrast_limit = brightness_contrast_limit
        self.compression_p = compression_p
        self.quality_range = (int(quality_range[0]), int(quality_range[1]))
        self.resample = resample

    def train_ops(self) -> list[A.BasicTransform]:
        return [
            A.HorizontalFlip(p=self.hflip_p),
            A.RGBShift(*[self.rgb_shift_limit] * 3, p=self.rgb_shift_p),
            A.HueSaturationValue(*self.hue_saturation_limits, p=self.hue_saturation_p),
            A.RandomBrightnessContrast(
                self.brightness_contrast_limit,
                self.brightness_contrast_limit,
                p=self.brightness_contrast_p,
            ),
            A.ImageCompression(quality_range=self.quality_range, p=self.compression_p),
        ]

    def wrap_train_dataset(self, dataset: Dataset) -> SelfBlendedDataset:
        return SelfBlendedDataset(
            dataset,
            self.train_transform(),
            self.blend,
            seed=0 if self.seed is None else self.seed,
            resample=self.resample,
        )
