"""Series decomposition into trend (moving average) and seasonal (remainder) parts.

Used by Autoformer, FEDformer and DLinear. The moving average pads both ends by repeating the first and
last time step, as the Autoformer/FEDformer official code does, so the trend has the input's length.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["moving_average", "SeriesDecomposition"]


def moving_average(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Centred moving average along time with edge-replicate padding.

    Shapes:
        x: (B, L, C) -> (B, L, C)
    """
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    # the official code pads (k-1)//2 on both sides, so an even kernel yields L-1 steps; we keep that
    pad = (kernel_size - 1) // 2
    front = x[:, :1].expand(-1, pad, -1)
    back = x[:, -1:].expand(-1, pad, -1)
    padded = torch.cat([front, x, back], dim=1)  # (B, L + 2*pad, C)
    return F.avg_pool1d(padded.transpose(1, 2), kernel_size, stride=1).transpose(1, 2)


class SeriesDecomposition(nn.Module):
    """``x -> (seasonal, trend)`` with ``trend = moving_average(x, kernel_size)``.

    Shapes:
        x: (B, L, C) -> seasonal (B, L, C), trend (B, L, C)
    """

    def __init__(self, kernel_size: int):
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        trend = moving_average(x, self.kernel_size)
        return x - trend, trend
