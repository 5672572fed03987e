"""RCM: the recoupling module and its self-distillation loss (spec §4, official ``RCMModule``).

The per-frame tokens X (B, T, C) are re-weighted by the outer product of a temporal weight vector w_t (B, T)
and a channel weight vector w_c (B, C), both in (0, 1). A linear map P turns w_t into a C-dim vector that is
distilled towards the (detached) mean of the temporal network's branch CLS outputs.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

__all__ = ["RecouplingModule", "recoupling_distill_loss"]


class RecouplingModule(nn.Module):
    """Gate the token matrix by ``w_t w_c^T``.

    Args:
        frames: T. dim: C. hidden: width of the temporal MLP (256; the official code never uses its 128 for
            THU-READ because of a dataset-name mismatch). qk_dim: per-head q/k width (64). heads: SEHeads (1).

    Shapes:
        x: (B, T, C) -> recoupled (B, T, C), w_t (B, T), w_c (B, C)
    """

    def __init__(self, *, frames: int, dim: int, hidden: int = 256, qk_dim: int = 64, heads: int = 1):
        super().__init__()
        self.heads, self.scale = heads, qk_dim**-0.5
        self.temporal = nn.Sequential(
            nn.Linear(frames, hidden, bias=False),
            nn.GELU(),
            nn.Linear(hidden, frames, bias=False),
            nn.LayerNorm(frames),
        )
        self.q = nn.Linear(frames, qk_dim * heads, bias=False)
        self.k = nn.Linear(frames, qk_dim * heads, bias=False)
        self.merge = (
            nn.Sequential(nn.Dropout(0.4), nn.Linear(dim * heads, dim), nn.LayerNorm(dim)) if heads > 1 else None
        )
        self.to_feature = nn.Linear(frames, dim)  # P: R^T -> R^C, for the distillation

    def weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(w_t (B, T), w_c (B, C)), both through a sigmoid."""
        xt = x.transpose(1, 2)  # (B, C, T): each row is one channel's temporal profile
        w_t = torch.sigmoid(self.temporal(xt.mean(dim=1)))  # (B, T)
        q = rearrange(self.q(xt), "b c (h e) -> b h c e", h=self.heads)
        k = rearrange(self.k(xt), "b c (h e) -> b h c e", h=self.heads)
        scores = torch.einsum("bhie,bhje->bhij", q, k) * self.scale  # (B, h, C, C)
        per_key = scores.mean(dim=2)  # average over the query channel: (B, h, C)
        if self.merge is None:
            return w_t, torch.sigmoid(per_key[:, 0])
        return w_t, torch.sigmoid(self.merge(rearrange(per_key, "b h c -> b (h c)")))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        w_t, w_c = self.weights(x)
        return x * (w_t[:, :, None] * w_c[:, None, :]), w_t, w_c


def recoupling_distill_loss(
    rcm: RecouplingModule, w_t: torch.Tensor, teacher: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``KL(softmax(teacher / T) || softmax(P(w_t) / T))`` over the C features, averaged over the batch.

    The official code sums over the batch; we average so the loss weight does not scale with batch size.
    ``teacher`` is detached here, so no gradient reaches the temporal network through it.

    Shapes:
        w_t: (B, T), teacher: (B, C) -> scalar
    """
    student = F.log_softmax(rcm.to_feature(w_t) / temperature, dim=-1)
    target = F.softmax(teacher.detach() / temperature, dim=-1)
    return F.kl_div(student, target, reduction="batchmean")
