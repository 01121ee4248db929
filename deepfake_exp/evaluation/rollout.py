"""Attention rollout (Abnar & Zuidema, 2020): pure math over a ViT's attention maps.

The ViT (:mod:`deepfake_exp.models.vit`) only exposes its attentions (``store_attention``,
``attention_maps()``); turning them into a heat map is evaluation's job, so evaluation needs
nothing from ``models``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def attention_rollout(attentions: Sequence[Tensor]) -> Tensor:
    """How much the CLS token draws on each patch.

    Each layer's head-averaged attention plus the identity (the residual path), row
    normalised, is multiplied through the layers.

    Args:
        attentions: Per-layer ``(B, heads, T, T)`` maps, input to output, T = 1 + grid**2.

    Returns:
        ``(B, grid, grid)`` non-negative weights of the patches.
    """
    if not attentions:
        raise ValueError("attention_rollout needs at least one attention map")
    tokens = attentions[0].shape[-1]
    grid = math.isqrt(tokens - 1)
    if grid * grid != tokens - 1:
        raise ValueError(f"{tokens} tokens are not a CLS token plus a square patch grid")
    eye = torch.eye(tokens, device=attentions[0].device, dtype=attentions[0].dtype)
    rollout = eye.expand(attentions[0].shape[0], tokens, tokens)
    for attention in attentions:
        layer = attention.mean(dim=1) + eye
        layer = layer / layer.sum(dim=-1, keepdim=True)
        rollout = layer @ rollout
    return rollout[:, 0, 1:].reshape(-1, grid, grid)
