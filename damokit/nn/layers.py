"""Small generic layers shared by the transformer backbones: the two-layer MLP and stochastic depth.

Both follow timm (``timm/layers/mlp.py`` ``Mlp``, ``timm/layers/drop.py`` ``DropPath``) in semantics and
parameter names (``fc1``/``fc2``), so official checkpoints of timm-based models map onto them unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Mlp", "DropPath", "drop_path"]


class Mlp(nn.Module):
    """Linear -> GELU -> Dropout -> Linear -> Dropout, applied to the last axis.

    Args:
        in_features: input and (by default) output width.
        hidden_features: width of the hidden layer (default: ``in_features``).
        out_features: output width (default: ``in_features``).
        drop: dropout after the activation and after the second layer.

    Shapes:
        (..., in_features) -> (..., out_features)
    """

    def __init__(
        self, in_features: int, hidden_features: int | None = None, out_features: int | None = None, drop: float = 0.0
    ):
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero whole samples of a residual branch with probability ``p``, rescale the rest."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)  # one draw per sample
    return x * mask / keep


class DropPath(nn.Module):
    """``drop_path`` as a module (identity in eval mode and for ``p=0``).

    Raises:
        ValueError: ``p`` outside [0, 1).
    """

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"DropPath: p must be in [0, 1), got {p}; it is the probability of dropping a branch")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
