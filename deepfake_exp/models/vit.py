"""The Vision Transformer the Emory study trained from scratch, as a ``Backbone``.

Study setting (its "87% val / 81% test"): 224 px images cut into 16 px patches (196 tokens),
a linear patch projection, a CLS token, a learnable position embedding, pre-LN transformer
blocks (LayerNorm first inside each residual branch, which trains without warm-up) built on
``nn.MultiheadAttention``, embedding 256, MLP hidden 512, 8 heads, dropout 0.2. The
classification head is built separately (``heads.build_head``) on the final-LN CLS embedding.

Attention maps can be kept for attention rollout: set ``store_attention = True``, run a
forward pass, read ``attention_maps()`` and pass them to
:func:`deepfake_exp.evaluation.rollout.attention_rollout`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepfake_exp.models.backbones import Backbone
from deepfake_exp.models.weights import load_pretrained


class PatchEmbedding(nn.Module):
    """Image -> CLS token + one token per patch, with learnable position embeddings.

    The projection is a convolution with kernel = stride = patch size: the same linear map
    applied to each flattened patch, without materialising the patches.
    """

    def __init__(self, input_size: int, patch_size: int, embed_dim: int, dropout: float) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.grid = input_size // patch_size
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embedding = nn.Parameter(torch.zeros(1, 1 + self.grid**2, embed_dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embedding, std=0.02)
        self.dropout = nn.Dropout(dropout)

    def position_embedding(self, height: int, width: int) -> Tensor:
        """Position embeddings for a ``height x width`` patch grid.

        At the configured size they are the learned ones; at another size (test-time scales,
        small test images) the patch part is resized bicubically, as timm does, so a model
        trained at 224 px still runs at, e.g., 160 px.
        """
        if (height, width) == (self.grid, self.grid):
            return self.pos_embedding
        cls_pos, patch_pos = self.pos_embedding[:, :1], self.pos_embedding[:, 1:]
        dim = patch_pos.shape[-1]
        grid = patch_pos.reshape(1, self.grid, self.grid, dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)
        return torch.cat([cls_pos, grid.flatten(2).transpose(1, 2)], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2] % self.patch_size or x.shape[-1] % self.patch_size:
            raise ValueError(
                f"image size {tuple(x.shape[-2:])} is not a multiple of patch_size={self.patch_size}"
            )
        patches = self.proj(x)  # (B, D, h, w)
        height, width = patches.shape[-2:]
        tokens = patches.flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self.position_embedding(height, width)
        return self.dropout(tokens)


class TransformerBlock(nn.Module):
    """Pre-LN block: ``x + MHA(LN(x))`` then ``x + MLP(LN(x))``."""

    def __init__(self, embed_dim: int, mlp_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dim)
        self.attn = nn.MultiheadAttention(embed_dim, num_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, embed_dim),
            nn.Dropout(dropout),
        )
        self.store_attention = False
        self.attention: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm1(x)
        # Weights are only computed on request: without them PyTorch uses its fused kernel.
        out, weights = self.attn(
            h, h, h, need_weights=self.store_attention, average_attn_weights=False
        )
        self.attention = weights.detach() if weights is not None else None  # (B, heads, T, T)
        x = x + out
        return x + self.mlp(self.norm2(x))


class VisionTransformer(Backbone):
    """ViT from scratch; ``forward_features`` returns the final-LayerNorm CLS embedding."""

    def __init__(
        self,
        input_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 256,
        mlp_dim: int = 512,
        num_heads: int = 8,
        depth: int = 6,
        dropout: float = 0.2,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        pretrained: bool = False,
        weights_path: str | None = None,
    ) -> None:
        """Build the ViT.

        Args:
            pretrained: There are no published weights for this model; True raises unless
                ``weights_path`` is given (kept so every model config has the same keys).
            weights_path: A state dict of this backbone (e.g. from an earlier run) to start from.
        """
        super().__init__(input_size, mean, std)
        if self.input_size % patch_size:
            raise ValueError(
                f"input_size={input_size} must be a multiple of patch_size={patch_size}"
            )
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        self.patch_size = patch_size
        self.num_features = embed_dim
        self.embedding = PatchEmbedding(self.input_size, patch_size, embed_dim, dropout)
        self.layers = nn.Sequential(
            *(TransformerBlock(embed_dim, mlp_dim, num_heads, dropout) for _ in range(depth))
        )
        self.norm = nn.LayerNorm(embed_dim)
        if pretrained or weights_path is not None:
            load_pretrained(self, url=None, weights_path=weights_path)

    def forward_features(self, x: Tensor) -> Tensor:
        tokens = self.norm(self.layers(self.embedding(x)))
        return tokens[:, 0]

    @property
    def store_attention(self) -> bool:
        """Whether each block keeps its last attention weights (slower: no fused kernel)."""
        return all(block.store_attention for block in self.layers)

    @store_attention.setter
    def store_attention(self, value: bool) -> None:
        for block in self.layers:
            block.store_attention = bool(value)
            block.attention = None

    def attention_maps(self) -> list[Tensor]:
        """Per-block attention ``(B, heads, T, T)`` of the last forward pass, input to output."""
        maps = [block.attention for block in self.layers]
        if any(m is None for m in maps):
            raise RuntimeError("no attention stored: set store_attention = True, then run forward")
        return maps  # type: ignore[return-value]
