"""DTN: the decoupled temporal network, a multi-scale Transformer over per-frame tokens (spec §3.2).

Three branches see 1/4, 1/2 and 3/4 of the frame tokens (16/32/48 of 64), each with its own CLS token,
positional embedding and per-layer Transformer block; branches never exchange information. The first layer
runs a temporal inception module over the tokens (local temporal modelling) and every attention keeps only
the top-k keys per query (k-NN attention).

Notation: B batch, T frame tokens, n tokens of a branch, D width, h heads, e head width.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from damokit.video.motion_rgbd.sampling import segment_indices

__all__ = ["KNNAttention", "TemporalBlock", "TemporalInception", "MultiScaleTemporalTransformer"]


class KNNAttention(nn.Module):
    """Multi-head self-attention where each query keeps only its ``floor(ratio * N)`` highest-scoring keys.

    Shapes:
        x: (B, N, D) -> (B, N, D)
    """

    def __init__(self, dim: int, *, heads: int, head_dim: int, knn_ratio: float, dropout: float = 0.0):
        super().__init__()
        if not 0.0 < knn_ratio <= 1.0:
            raise ValueError(f"knn_ratio must be in (0, 1], got {knn_ratio}")
        self.heads, self.scale, self.knn_ratio = heads, head_dim**-0.5, knn_ratio
        self.qkv = nn.Linear(dim, 3 * heads * head_dim, bias=False)  # official: qkv_bias=False
        self.proj = nn.Sequential(nn.Linear(heads * head_dim, dim), nn.Dropout(dropout))
        self.attn_drop = nn.Dropout(dropout)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The attention weights (B, h, N, N), rows summing to one with exactly k non-zeros."""
        q, k, _ = rearrange(self.qkv(x), "b n (three h e) -> three b h n e", three=3, h=self.heads)
        return self._weights(q, k)

    def _weights(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        scores = torch.einsum("bhie,bhje->bhij", q, k) * self.scale  # (B, h, N, N)
        n = scores.shape[-1]
        keep = max(1, int(self.knn_ratio * n))
        if keep < n:
            top = scores.topk(keep, dim=-1).indices
            mask = torch.full_like(scores, float("-inf")).scatter(-1, top, 0.0)
            scores = scores + mask
        return scores.softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (three h e) -> three b h n e", three=3, h=self.heads)
        attn = self.attn_drop(self._weights(q, k))
        out = torch.einsum("bhij,bhje->bhie", attn, v)  # (B, h, N, e)
        return self.proj(rearrange(out, "b h n e -> b n (h e)"))


class TemporalBlock(nn.Module):
    """Pre-norm Transformer block with k-NN attention and a GELU feed-forward. Shapes: (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int, *, heads: int, head_dim: int, mlp_dim: int, knn_ratio: float, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = KNNAttention(dim, heads=heads, head_dim=head_dim, knn_ratio=knn_ratio, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_dim, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _conv_bn(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm1d(cout), nn.ReLU())


def _inception_widths(dim: int) -> tuple[int, int, int, int, int, int]:
    """Mixed_4c's [160, 112->224, 24->64, pool->64] for D=512, scaled to ``dim`` (outputs sum to ``dim``)."""
    c0, c1a, c2a, c2, c3 = (max(1, round(dim * w / 512)) for w in (160, 112, 24, 64, 64))
    return c0, c1a, dim - c0 - c2 - c3, c2a, c2, c3


class TemporalInception(nn.Module):
    """Inception over time (kernels of 3 along T) + temporal max-pool, for the first layer's local modelling.

    Shapes:
        x: (B, n, D) -> (B, n, D)
    """

    def __init__(self, dim: int):
        super().__init__()
        c0, c1a, c1, c2a, c2, c3 = _inception_widths(dim)
        self.b0 = _conv_bn(dim, c0, 1)
        self.b1 = nn.Sequential(_conv_bn(dim, c1a, 1), _conv_bn(c1a, c1, 3))
        self.b2 = nn.Sequential(_conv_bn(dim, c2a, 1), _conv_bn(c2a, c2, 3))
        self.b3 = nn.Sequential(nn.MaxPool1d(3, stride=1, padding=1), _conv_bn(dim, c3, 1))
        self.pool = nn.MaxPool1d(3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # (B, D, n)
        out = torch.cat([self.b0(x), self.b1(x), self.b2(x), self.b3(x)], dim=1)
        return self.pool(out).transpose(1, 2)


class MultiScaleTemporalTransformer(nn.Module):
    """The three-branch temporal Transformer; returns each branch's final CLS feature.

    Args:
        dim: token width D (512 in the paper).
        frames: tokens per clip T (64).
        branch_frames: tokens each branch samples (16, 32, 48).
        depth: multi-scale layers N (6); each holds one block per branch.
        knn_ratio: fraction of keys each query keeps (0.7).
        random_test_sampling: the official code also samples branch tokens at random in eval mode; off by
            default (middle of each segment), on to reproduce the official evaluation.

    Shapes:
        tokens: (B, T, D) -> (branches, B, D)
    """

    def __init__(
        self,
        *,
        dim: int,
        frames: int,
        branch_frames: tuple[int, ...],
        depth: int,
        heads: int,
        head_dim: int,
        mlp_dim: int,
        knn_ratio: float,
        dropout: float,
        local_inception: bool = True,
        random_test_sampling: bool = False,
    ):
        super().__init__()
        if any(n < 1 or n > frames for n in branch_frames):
            raise ValueError(f"branch_frames {branch_frames} must lie in [1, frames={frames}]")
        self.frames, self.branch_frames = frames, tuple(branch_frames)
        self.random_test_sampling = random_test_sampling
        nb = len(branch_frames)
        self.cls_tokens = nn.Parameter(torch.zeros(nb, 1, dim))
        self.pos_embeds = nn.ParameterList([nn.Parameter(torch.zeros(1, n + 1, dim)) for n in branch_frames])
        self.local = nn.ModuleList([TemporalInception(dim) for _ in branch_frames]) if local_inception else None
        block = dict(heads=heads, head_dim=head_dim, mlp_dim=mlp_dim, knn_ratio=knn_ratio, dropout=dropout)
        self.layers = nn.ModuleList(
            [nn.ModuleList([TemporalBlock(dim, **block) for _ in branch_frames]) for _ in range(depth)]
        )
        nn.init.trunc_normal_(self.cls_tokens, std=0.02)
        for pos in self.pos_embeds:
            nn.init.trunc_normal_(pos, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        B, T, D = tokens.shape
        if T != self.frames:
            raise ValueError(f"expected {self.frames} frame tokens, got {T}")
        random = self.training or self.random_test_sampling
        outs = []
        for b, n in enumerate(self.branch_frames):
            idx = segment_indices(T, n, train=random, batch=B).to(tokens.device)  # (B, n)
            x = torch.gather(tokens, 1, idx[..., None].expand(B, n, D))  # (B, n, D)
            x = torch.cat([self.cls_tokens[b].expand(B, 1, D), x], dim=1) + self.pos_embeds[b]  # (B, n+1, D)
            for depth, layer in enumerate(self.layers):
                if depth == 0 and self.local is not None:
                    x = torch.cat([x[:, :1], self.local[b](x[:, 1:])], dim=1)  # CLS re-attached unchanged
                x = layer[b](x)
            outs.append(x[:, 0])
        return torch.stack(outs)  # (branches, B, D): raw CLS outputs; heads apply their own LayerNorm
