"""Test-time augmentation: deterministic views of each face, P(fake) averaged over them."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepfake_exp.inference.proba import fake_probability_model

View = Callable[[Tensor, Tensor], Tensor]  # (normalised images, per-channel black) -> images


def identity_view(images: Tensor, black: Tensor) -> Tensor:
    """The image as the eval transform made it."""
    return images


def hflip_view(images: Tensor, black: Tensor) -> Tensor:
    """The horizontal mirror: a face is (nearly) symmetric, its artefacts need not be."""
    return torch.flip(images, dims=[3])


def scale_view(images: Tensor, black: Tensor, scale: float = 1.0, flip: bool = False) -> Tensor:
    """Zoom about the centre by ``scale`` (> 1 in, < 1 out), optionally mirrored.

    Zooming out pads with black pixels, as the York study's ``ShiftScaleRotate`` /
    ``PadIfNeeded`` with ``BORDER_CONSTANT`` did; in normalised space black is
    ``-mean / std``, so the padding is done on ``images - black``, where it is zero.
    """
    if flip:
        images = hflip_view(images, black)
    if scale == 1.0:
        return images
    theta = torch.zeros(len(images), 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / scale
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    shifted = images - black.view(1, -1, 1, 1)
    zoomed = F.grid_sample(
        shifted, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return zoomed + black.view(1, -1, 1, 1)


# The York study names test-time augmentation as an ingredient but only lists its random train
# pipeline (ShiftScaleRotate with scale_limit=0.2, flips). ``york`` is its deterministic
# counterpart: the face and its mirror, each at scales 0.9 / 1.0 / 1.1 (half the train range
# either way), six views averaged.
TTA_POLICIES: dict[str, tuple[View, ...]] = {
    "none": (identity_view,),
    "flip": (identity_view, hflip_view),
    "york": tuple(
        partial(scale_view, scale=scale, flip=flip)
        for flip in (False, True)
        for scale in (1.0, 0.9, 1.1)
    ),
}


def tta_views(name: str) -> tuple[View, ...]:
    """The views of a TTA policy, with a clear error for an unknown name."""
    if name not in TTA_POLICIES:
        raise ValueError(f"unknown tta {name!r}; choose one of {sorted(TTA_POLICIES)}")
    return TTA_POLICIES[name]


class TTAModel(nn.Module):
    """P(fake) averaged over the views of a TTA policy (``none``: the plain P(fake) model).

    Args:
        module: The trained detector, or its :class:`~deepfake_exp.inference.proba.FakeProbability`.
        tta: Key of :data:`TTA_POLICIES`.
    """

    def __init__(self, module: Any, tta: str = "none") -> None:
        super().__init__()
        self.views = tta_views(tta)
        self.tta = tta
        self.proba = fake_probability_model(module)
        backbone = self.proba.backbone
        device = next(self.proba.parameters()).device
        mean = torch.as_tensor(backbone.mean, dtype=torch.float32, device=device)
        std = torch.as_tensor(backbone.std, dtype=torch.float32, device=device)
        self.register_buffer("black", -mean / std, persistent=False)

    @property
    def device(self) -> torch.device:
        return self.black.device

    def forward(self, images: Tensor) -> Tensor:
        black = self.black.to(images.dtype)
        probs = [self.proba(view(images, black)) for view in self.views]
        return torch.stack(probs).mean(dim=0)
