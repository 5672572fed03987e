"""Honest simple forecasting baselines: repeat the last value, and DLinear.

``repeat_last`` is the *Repeat* row of the DLinear paper (Zeng et al., "Are Transformers Effective for Time
Series Forecasting?", AAAI 2023, arXiv 2205.13504): the last observed value held over the horizon. It has no
parameters. ``dlinear`` is that paper's DLinear (official ``cure-lab/LTSF-Linear`` ``models/DLinear.py``): a
moving-average decomposition (kernel 25) then one linear map over time for the seasonal part and one for the
trend, shared by all channels or one per channel (``individual``).

Both follow the forecasting calling convention: ``forward(x (B, L, C), x_mark=None, y_mark=None) -> (B, H, c_out)``;
the time features are accepted and ignored. With ``c_out < enc_in`` the last ``c_out`` channels are forecast
(the target is the last column in the official custom protocol).

Deviations: the per-channel ("individual") DLinear holds its C linear maps as one ``(C, H, L)`` weight used in a
single einsum instead of a ModuleList of C ``nn.Linear`` (same function and initialisation, no Python loop).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from damokit.nn.decomposition import SeriesDecomposition
from damokit.registry import register_model

__all__ = ["RepeatLast", "DLinear", "repeat_last", "repeat_last_tiny", "dlinear", "dlinear_tiny"]


def _check_common(input_size: int, horizon: int, enc_in: int, c_out: int | None) -> int:
    for name, value in (("input_size", input_size), ("horizon", horizon), ("enc_in", enc_in)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    c_out = enc_in if c_out is None else c_out
    if not 1 <= c_out <= enc_in:
        raise ValueError(
            f"c_out must be in [1, enc_in={enc_in}], got {c_out}; a baseline forecasts the last c_out input channels"
        )
    return c_out


class RepeatLast(nn.Module):
    """Forecast every future step as the last observed value (the DLinear paper's *Repeat*).

    Shapes:
        x: (B, L, C) -> (B, H, c_out)
    """

    MULTIVARIATE = True
    USES_TIME_FEATURES = False

    def __init__(
        self,
        *,
        input_size: int,
        horizon: int,
        label_len: int | None = None,
        enc_in: int = 7,
        c_out: int | None = None,
        d_mark: int = 4,
    ):
        super().__init__()
        self.c_out = _check_common(input_size, horizon, enc_in, c_out)
        self.input_size, self.horizon = input_size, horizon

    def forward(
        self, x: torch.Tensor, x_mark: torch.Tensor | None = None, y_mark: torch.Tensor | None = None
    ) -> torch.Tensor:
        # (B, 1, c_out) -> (B, H, c_out); a copy so callers may modify the result in place
        return x[:, -1:, -self.c_out :].expand(-1, self.horizon, -1).clone()


class DLinear(nn.Module):
    """DLinear: decomposition, then a linear map over time for the seasonal and the trend parts.

    Args:
        input_size: L, the look-back window.
        horizon: H.
        enc_in: number of input channels C.
        c_out: forecast channels (the last ``c_out`` of the input; default all).
        individual: one pair of linear maps per channel (else shared by all channels).
        kernel_size: moving-average window of the decomposition (25 in the paper).

    Shapes:
        x: (B, L, C) -> (B, H, c_out)
    """

    MULTIVARIATE = True
    USES_TIME_FEATURES = False

    def __init__(
        self,
        *,
        input_size: int,
        horizon: int,
        label_len: int | None = None,
        enc_in: int = 7,
        c_out: int | None = None,
        d_mark: int = 4,
        individual: bool = False,
        kernel_size: int = 25,
    ):
        super().__init__()
        self.c_out = _check_common(input_size, horizon, enc_in, c_out)
        self.input_size, self.horizon, self.individual = input_size, horizon, individual
        self.decomposition = SeriesDecomposition(kernel_size)
        channels = enc_in if individual else 1
        # index 0: seasonal map, index 1: trend map; (2, C or 1, H, L) and (2, C or 1, H)
        self.weight = nn.Parameter(torch.empty(2, channels, horizon, input_size))
        self.bias = nn.Parameter(torch.empty(2, channels, horizon))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Linear's default initialisation, as the official code (uniform in +-1/sqrt(L))."""
        bound = 1.0 / math.sqrt(self.input_size)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(
        self, x: torch.Tensor, x_mark: torch.Tensor | None = None, y_mark: torch.Tensor | None = None
    ) -> torch.Tensor:
        _, L, C = x.shape
        if L != self.input_size:
            raise ValueError(f"DLinear was built for input_size={self.input_size}, got inputs of length {L}")
        seasonal, trend = self.decomposition(x)  # (B, L, C) each
        parts = torch.stack([seasonal, trend])  # (2, B, L, C)
        weight = self.weight.expand(2, C, self.horizon, L)  # shared maps: a view over the channels
        bias = self.bias.expand(2, C, self.horizon)
        # sum over the two parts of W_p applied along time: (2, B, L, C) x (2, C, H, L) -> (B, H, C)
        out = torch.einsum("pblc,pchl->bhc", parts, weight) + bias.sum(0).transpose(0, 1)
        return out[..., -self.c_out :]


def _example_inputs(input_size: int, horizon: int, channels: int, label_len: int):
    def make(g: torch.Generator) -> tuple[torch.Tensor, ...]:
        x = torch.randn(2, input_size, channels, generator=g)
        x_mark = torch.rand(2, input_size, 4, generator=g) - 0.5
        y_mark = torch.rand(2, label_len + horizon, 4, generator=g) - 0.5
        return x, x_mark, y_mark

    return make


@register_model(task="forecasting", paper="2205.13504", input_layout="(B, L, C)")
def repeat_last(**kwargs) -> RepeatLast:
    """Repeat the last observed value over the horizon (the DLinear paper's Repeat row); no parameters."""
    return RepeatLast(**{"input_size": 96, "horizon": 96, **kwargs})


@register_model(
    task="forecasting", paper="2205.13504", input_layout="(B, L, C)", example_inputs=_example_inputs(16, 8, 3, 8)
)
def repeat_last_tiny(**kwargs) -> RepeatLast:
    """repeat_last for tests: L=16, H=8, 3 channels."""
    return RepeatLast(**{"input_size": 16, "horizon": 8, "enc_in": 3, **kwargs})


@register_model(task="forecasting", paper="2205.13504", input_layout="(B, L, C)")
def dlinear(**kwargs) -> DLinear:
    """DLinear (shared weights, kernel 25) as in the DLinear paper; L and H default to 96."""
    return DLinear(**{"input_size": 96, "horizon": 96, **kwargs})


@register_model(
    task="forecasting", paper="2205.13504", input_layout="(B, L, C)", example_inputs=_example_inputs(16, 8, 3, 8)
)
def dlinear_tiny(**kwargs) -> DLinear:
    """DLinear for tests: L=16, H=8, 3 channels, per-channel weights, kernel 5."""
    return DLinear(**{"input_size": 16, "horizon": 8, "enc_in": 3, "individual": True, "kernel_size": 5, **kwargs})
