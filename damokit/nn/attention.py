"""Multi-head attention pieces shared by the Informer-family forecasters (Transformer, Informer, Autoformer,
FEDformer): the projection wrapper (official ``AttentionLayer`` / ``AutoCorrelationLayer``) and full softmax
attention (official ``FullAttention``).

Notation: ``B`` batch, ``L`` query length, ``S`` key length, ``H`` heads, ``E`` width per head, ``D = H*E``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["AttentionLayer", "FullAttention"]

# inner(q, k, v) -> (B, L, D); q (B, L, H, E), k and v (B, S, H, E), or None for an unused input
InnerAttention = Callable[[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None], torch.Tensor]


class AttentionLayer(nn.Module):
    """Project queries, keys and values per head, run ``inner``, project the result back to ``D``.

    Several inner blocks ignore some of their inputs (FEDformer's Fourier block reads only the queries, its
    multiwavelet block only the values). ``uses`` names the inputs the inner block reads: only those are
    projected. With ``keep_unused=True`` the other projections are still created (never computed) so that a
    state dict keeps the official layout.

    Args:
        inner: module mapping ``(q, k, v)`` to ``(B, L, D)``; unused inputs arrive as ``None``.
        d_model: model width ``D``.
        n_heads: number of heads ``H`` (``D`` must be divisible by it).
        uses: subset of ``"qkv"`` read by ``inner``.
        keep_unused: create the projections of unused inputs too.

    Shapes:
        queries (B, L, D), keys (B, S, D), values (B, S, D) -> (B, L, D)
    """

    def __init__(self, inner: nn.Module, d_model: int, n_heads: int, *, uses: str = "qkv", keep_unused: bool = False):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        if not set(uses) <= set("qkv"):
            raise ValueError(f"uses must be a subset of 'qkv', got {uses!r}")
        self.inner = inner
        self.n_heads = n_heads
        self.uses = uses
        for name in "qkv":
            full = {"q": "query", "k": "key", "v": "value"}[name]
            if name in uses or keep_unused:
                setattr(self, f"{full}_projection", nn.Linear(d_model, d_model))
        self.out_projection = nn.Linear(d_model, d_model)

    def _project(self, name: str, x: torch.Tensor) -> torch.Tensor | None:
        if name[0] not in self.uses:
            return None
        B, L, _ = x.shape
        return getattr(self, f"{name}_projection")(x).view(B, L, self.n_heads, -1)  # (B, L, D) -> (B, L, H, E)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        q = self._project("query", queries)
        k = self._project("key", keys)
        v = self._project("value", values)
        return self.out_projection(self.inner(q, k, v))


class FullAttention(nn.Module):
    """Softmax attention with scale ``1/sqrt(E)``, optional causal mask, dropout on the weights.

    The attention matrix is materialised as in the official code (O(L*S) memory): the point of this
    block is to be the quadratic baseline that FEDformer is compared against.

    Shapes:
        q (B, L, H, E), k (B, S, H, E), v (B, S, H, E) -> (B, L, H*E)
    """

    def __init__(self, *, causal: bool = False, dropout: float = 0.0):
        super().__init__()
        self.causal = causal
        self.dropout = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        B, L, H, E = q.shape
        S = k.shape[1]
        scores = torch.einsum("blhe,bshe->bhls", q, k)  # (B, H, L, S)
        if self.causal:
            mask = torch.ones(L, S, dtype=torch.bool, device=q.device).triu(1)
            scores = scores.masked_fill(mask, float("-inf"))
        attn = self.dropout(torch.softmax(scores * (1.0 / math.sqrt(E)), dim=-1))  # official: softmax(scale * scores)
        return torch.einsum("bhls,bshd->blhd", attn, v).reshape(B, L, -1)  # (B, L, H, E) -> (B, L, D)
