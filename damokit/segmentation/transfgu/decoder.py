"""Stage 4 of TransFGU: the Segmenter-style mask-transformer decoder on frozen patch tokens (spec §5).

Official code: ``models/mask_transformer/decoder.py``. Class embeddings join the projected patch tokens,
two ViT blocks mix them, and masks are cosine similarities between patch and class embeddings, normalised
over classes by a LayerNorm.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from damokit.nn.vit import Block

__all__ = ["MaskTransformerDecoder"]


class MaskTransformerDecoder(nn.Module):
    """Patch tokens -> per-class mask logits.

    Args:
        in_dim: backbone width (384 for ViT-S). dim: decoder width (384). n_cls: K, or K_things + 1.
        depth: blocks (2). heads: (6). mlp_ratio: (4). dropout: (0.1); qkv without bias, as the official code.

    Shapes:
        tokens: (N, h*w, in_dim), grid (h, w) -> (N, n_cls, h, w)
    """

    def __init__(
        self,
        *,
        in_dim: int,
        n_cls: int,
        dim: int = 384,
        depth: int = 2,
        heads: int = 6,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
    ):
        super().__init__()
        if n_cls < 2:
            raise ValueError(f"n_cls must be >= 2, got {n_cls}")
        self.n_cls = n_cls
        self.proj_in = nn.Linear(in_dim, dim)
        self.cls_emb = nn.Parameter(torch.empty(1, n_cls, dim))
        nn.init.orthogonal_(self.cls_emb[0])
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, qkv_bias=False, drop=dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.proj_patch = nn.Parameter(torch.randn(dim, dim) * dim**-0.5)  # N(0, 1/dim) entries
        self.proj_classes = nn.Parameter(torch.randn(dim, dim) * dim**-0.5)
        self.mask_norm = nn.LayerNorm(n_cls)

    def class_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """The l2-normalised class embeddings e (N, n_cls, dim), used by the embedding-separation loss."""
        return F.normalize(x[:, -self.n_cls :] @ self.proj_classes, dim=-1)

    def forward_with_embeddings(self, tokens: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([self.proj_in(tokens), self.cls_emb.expand(len(tokens), -1, -1)], dim=1)
        for block in self.blocks:
            x, _ = block(x)
        x = self.norm(x)
        patches = F.normalize(x[:, : -self.n_cls] @ self.proj_patch, dim=-1)  # (N, h*w, dim)
        classes = self.class_embeddings(x)  # (N, n_cls, dim)
        masks = self.mask_norm(torch.einsum("npd,nkd->npk", patches, classes))  # LN over classes
        return rearrange(masks, "n (h w) k -> n k h w", h=grid[0], w=grid[1]), classes

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return self.forward_with_embeddings(tokens, grid)[0]
