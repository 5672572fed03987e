"""Series decomposition into trend (moving average) and seasonal (remainder) parts.

Used by Autoformer, FEDformer and DLinear. The moving average pads by repeating the first and last time
step so that the trend keeps the input's length, with the FEDformer rule (official
``layers/Autoformer_EncDec.py``, ``moving_avg``): ``front = (k-1) - (k-1)//2`` copies of the first step,
``end = (k-1)//2`` copies of the last one. For odd ``k`` this equals Autoformer's/DLinear's symmetric padding;
for even ``k`` (FEDformer's default 24) the symmetric rule would shorten the series by one step.

``MixtureDecomposition`` is FEDformer's MOEDecomp (paper Sec. 3.4, Eq. 10; official ``series_decomp_multi``):
several moving averages mixed by a per-element softmax gate ``Linear(1, K)`` applied to every scalar of ``x``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["moving_average", "SeriesDecomposition", "MixtureDecomposition"]


def _check_kernel(kernel_size: int) -> None:
    if not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f"kernel_size must be an integer >= 1, got {kernel_size!r}; use e.g. 25")


def _window_mean(padded: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Mean over every length-``kernel_size`` window in time: ``(B, P, C) -> (B, P - kernel_size + 1, C)``.

    An ``avg_pool2d`` over a channels-last view (time as height, series as channels): no transposed copies,
    and the CPU kernel vectorises over the series (about twice as fast as ``avg_pool1d`` on the transpose).
    """
    B, _, C = padded.shape
    nhwc = padded.unsqueeze(2).permute(0, 3, 1, 2)  # (B, C, P, 1) with channels-last strides, no copy
    return F.avg_pool2d(nhwc, (kernel_size, 1), stride=1).permute(0, 2, 3, 1).reshape(B, -1, C)


class _MovingAverage(torch.autograd.Function):
    """Replicate-padded moving average whose backward is another window mean.

    The adjoint of "pad by replication, then average each window" is "average each window of the
    zero-padded gradient, then fold the padding's share onto the first and last step". Computing it that
    way costs what the forward costs; autograd's own ``avg_pool2d`` backward on the channels-last view is
    about 20x slower and was a tenth of a full-size FEDformer training step.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel_size: int) -> torch.Tensor:
        end = (kernel_size - 1) // 2
        front = kernel_size - 1 - end
        ctx.kernel_size, ctx.front = kernel_size, front
        padded = torch.cat([x[:, :1].expand(-1, front, -1), x, x[:, -1:].expand(-1, end, -1)], dim=1)
        return _window_mean(padded, kernel_size)  # (B, L+k-1, C) -> (B, L, C)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        k, front = ctx.kernel_size, ctx.front
        L = grad.shape[1]
        grad_padded = _window_mean(F.pad(grad, (0, 0, k - 1, k - 1)), k)  # (B, L+2k-2, C) -> (B, L+k-1, C)
        grad_x = grad_padded[:, front : front + L].clone()  # (B, L, C)
        grad_x[:, 0] += grad_padded[:, :front].sum(1)  # the replicated first step
        grad_x[:, -1] += grad_padded[:, front + L :].sum(1)  # the replicated last step
        return grad_x, None


def moving_average(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Moving average along time with edge-replicate padding; output length equals input length.

    Shapes:
        x: (B, L, C) -> (B, L, C)
    """
    _check_kernel(kernel_size)
    return _MovingAverage.apply(x, kernel_size)


class SeriesDecomposition(nn.Module):
    """``x -> (seasonal, trend)`` with ``trend = moving_average(x, kernel_size)``.

    Shapes:
        x: (B, L, C) -> seasonal (B, L, C), trend (B, L, C)
    """

    def __init__(self, kernel_size: int):
        super().__init__()
        _check_kernel(kernel_size)
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        trend = moving_average(x, self.kernel_size)
        return x - trend, trend


class MixtureDecomposition(nn.Module):
    """FEDformer's mixture-of-experts decomposition over several moving-average kernels.

    ``trend = sum_j softmax_j(layer(x)) * moving_average(x, k_j)`` with ``layer = Linear(1, K)`` applied to
    each scalar of ``x`` (data-dependent, per-element weights), ``seasonal = x - trend``. With a single
    kernel (the released default ``[24]``) the softmax is identically 1 and the block is a plain moving
    average: the gate is then not created (its parameters receive no gradient in the official code either)
    unless ``keep_unused_gate=True`` asks for the official state-dict layout.

    Args:
        kernel_sizes: moving-average windows ``k_1..k_K``.
        keep_unused_gate: create the gate ``Linear(1, 1)`` even for a single kernel (never computed).

    Shapes:
        x: (B, L, C) -> seasonal (B, L, C), trend (B, L, C)
    """

    def __init__(self, kernel_sizes: Sequence[int], *, keep_unused_gate: bool = False):
        super().__init__()
        kernel_sizes = tuple(kernel_sizes)
        if not kernel_sizes:
            raise ValueError("kernel_sizes must name at least one moving-average window, e.g. (24,)")
        for k in kernel_sizes:
            _check_kernel(k)
        self.kernel_sizes = kernel_sizes
        if len(kernel_sizes) > 1 or keep_unused_gate:
            self.layer = nn.Linear(1, len(kernel_sizes))  # the gate; name kept from the official code

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self.kernel_sizes) == 1:
            trend = moving_average(x, self.kernel_sizes[0])
        else:
            trends = torch.stack([moving_average(x, k) for k in self.kernel_sizes], dim=-1)  # (B, L, C, K)
            gate = torch.softmax(self.layer(x.unsqueeze(-1)), dim=-1)  # (B, L, C, 1) -> (B, L, C, K)
            trend = (trends * gate).sum(-1)
        return x - trend, trend
