"""Where a detector looks: Grad-CAM for CNN backbones, attention rollout for the ViT.

The Midway study planned Grad-CAM to check that a detector judges the face and not the
background. Both explanations are heat maps in [0, 1] at the input resolution, one per image,
so one gallery shows either. Grad-CAM comes from the ``grad-cam`` package (pytorch-grad-cam);
the rollout from :func:`deepfake_exp.evaluation.rollout.attention_rollout` over the maps a ViT
exposes (``store_attention``, ``attention_maps()``). Everything here takes a plain
``nn.Module`` and tensors: no model code, no data loading.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from torch import Tensor, nn

from deepfake_exp.evaluation.rollout import attention_rollout


def fake_log_odds(output: Tensor) -> Tensor:
    """The log-odds of FAKE from a head's logits, for either head type.

    A softmax head gives two logits (``fake - real`` is the log-odds), a sigmoid head one.
    Explaining the log-odds rather than one softmax logit shows evidence *for fake against
    real*, which is what the detector decides on.
    """
    if output.shape[-1] == 2:
        return output[..., 1] - output[..., 0]
    if output.shape[-1] == 1:
        return output[..., 0]
    raise ValueError(f"expected 1 or 2 logits per image, got shape {tuple(output.shape)}")


def last_conv_block(blocks: Sequence[nn.Module]) -> nn.Module:
    """The last block holding a ``Conv2d``: Grad-CAM's usual target layer.

    ``Backbone.blocks()[-1]`` is that block for ResNet, MobileNet and EfficientNet; for VGG
    (whose hidden ``Linear`` layers stay in the backbone) and DenseNet (a final BatchNorm)
    the last block is not spatial, so we search backwards.
    """
    for block in reversed(list(blocks)):
        if any(isinstance(m, nn.Conv2d) for m in block.modules()):
            return block
    raise ValueError("no block holds a Conv2d: Grad-CAM needs a convolutional backbone")


def gradcam_maps(model: nn.Module, images: Tensor, target_layer: nn.Module) -> np.ndarray:
    """Grad-CAM heat maps ``(B, H, W)`` in [0, 1] for the FAKE log-odds of ``model(images)``.

    Args:
        model: Maps normalised images ``(B, 3, H, W)`` to logits ``(B, 1 or 2)``.
        images: The normalised model inputs.
        target_layer: A module inside ``model`` whose 4-D output is explained.
    """
    was_training = model.training
    # Gradients must reach the target layer even when its weights are frozen (linear probe).
    inputs = images.detach().clone().requires_grad_(True)
    targets = [fake_log_odds] * len(images)
    try:
        with torch.enable_grad(), GradCAM(model=model, target_layers=[target_layer]) as cam:
            maps = cam(input_tensor=inputs, targets=targets)
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    return np.asarray(maps, dtype=np.float32)


@torch.no_grad()
def rollout_maps(vit: nn.Module, images: Tensor) -> np.ndarray:
    """Attention-rollout heat maps ``(B, H, W)`` in [0, 1] for a ``VisionTransformer``."""
    previous = vit.store_attention
    vit.store_attention = True
    try:
        vit(images)
        weights = attention_rollout(vit.attention_maps())
    finally:
        vit.store_attention = previous
    maps = F.interpolate(
        weights[:, None].float(), size=images.shape[-2:], mode="bilinear", align_corners=False
    )[:, 0]
    low = maps.amin(dim=(1, 2), keepdim=True)
    high = maps.amax(dim=(1, 2), keepdim=True)
    return ((maps - low) / (high - low).clamp_min(1e-12)).cpu().numpy().astype(np.float32)


def explain(model: nn.Module, backbone: nn.Module, images: Tensor) -> tuple[np.ndarray, str]:
    """Heat maps for ``images`` and the method's name: rollout for a ViT, else Grad-CAM.

    Args:
        model: The whole detector (backbone + head), logits out.
        backbone: Its backbone; a ViT is recognised by its ``attention_maps`` method, a CNN
            must expose ``blocks()`` (every ``deepfake_exp`` backbone does).
        images: Normalised inputs ``(B, 3, H, W)``.
    """
    if hasattr(backbone, "attention_maps"):
        was_training = backbone.training
        backbone.eval()
        try:
            return rollout_maps(backbone, images), "attention rollout"
        finally:
            backbone.train(was_training)
    return gradcam_maps(model, images, last_conv_block(backbone.blocks())), "Grad-CAM"


def overlay(image: np.ndarray, heat: np.ndarray, image_weight: float = 0.55) -> np.ndarray:
    """A JET heat map blended over an RGB ``uint8`` image; returns RGB ``uint8``."""
    if heat.shape != image.shape[:2]:
        heat = cv2.resize(heat, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    rgb = image.astype(np.float32) / 255.0
    return show_cam_on_image(rgb, np.clip(heat, 0.0, 1.0), use_rgb=True, image_weight=image_weight)
