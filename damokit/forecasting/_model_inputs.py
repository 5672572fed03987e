"""Argument and input checks shared by the encoder-decoder forecasters (FEDformer, Autoformer, Informer,
Transformer), and the decoder start built from the input window as the official experiment code does.

The shared calling convention: ``forward(x (B, L, C), x_mark (B, L, d_mark) | None, y_mark (B, label_len + H,
d_mark) | None) -> (B, H, C)``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["check_sizes", "check_inputs", "decomposition_init", "label_and_zeros", "example_windows"]


def check_sizes(*, input_size: int, horizon: int, label_len: int, enc_in: int, c_out: int, d_mark: int) -> None:
    """Raise ``ValueError`` naming the first invalid window or channel size."""
    for name, value in (("input_size", input_size), ("horizon", horizon), ("enc_in", enc_in), ("c_out", c_out)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not 0 <= label_len <= input_size:
        raise ValueError(
            f"label_len must be in [0, input_size={input_size}] (the decoder's start token is the end of the "
            f"input window), got {label_len}; the official default is input_size // 2"
        )
    if d_mark < 0:
        raise ValueError(f"d_mark must be >= 0 (number of time-feature columns), got {d_mark}")


def check_inputs(model: nn.Module, x: torch.Tensor, x_mark: torch.Tensor | None, y_mark: torch.Tensor | None) -> None:
    """Check ``x``, ``x_mark`` and ``y_mark`` against the model's window sizes and channel counts."""
    name = type(model).__name__
    if x.ndim != 3 or x.shape[1] != model.input_size or x.shape[2] != model.enc_in:
        raise ValueError(
            f"{name} expects x of shape (B, input_size={model.input_size}, enc_in={model.enc_in}), got {tuple(x.shape)}"
        )
    expected = {"x_mark": (x_mark, model.input_size), "y_mark": (y_mark, model.label_len + model.horizon)}
    for arg, (mark, length) in expected.items():
        if mark is None:
            continue
        if mark.shape != (x.shape[0], length, model.d_mark):
            raise ValueError(
                f"{name} expects {arg} of shape (B={x.shape[0]}, {length}, d_mark={model.d_mark}), "
                f"got {tuple(mark.shape)}"
            )


def decomposition_init(
    x: torch.Tensor, decomp: nn.Module, label_len: int, horizon: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Autoformer/FEDformer decoder start: seasonal part padded with zeros, trend part padded with the mean.

    Shapes:
        x: (B, L, C) -> seasonal_init (B, label_len + horizon, C), trend_init (B, label_len + horizon, C)
    """
    L = x.shape[1]
    mean = x.mean(dim=1, keepdim=True).expand(-1, horizon, -1)  # (B, horizon, C)
    seasonal, trend = decomp(x)
    trend_init = torch.cat([trend[:, L - label_len :], mean], dim=1)
    seasonal_init = torch.cat([seasonal[:, L - label_len :], x.new_zeros(x.shape[0], horizon, x.shape[2])], dim=1)
    return seasonal_init, trend_init


def label_and_zeros(x: torch.Tensor, label_len: int, horizon: int) -> torch.Tensor:
    """Transformer/Informer decoder input: the last ``label_len`` steps of ``x``, then ``horizon`` zeros.

    Shapes:
        x: (B, L, C) -> (B, label_len + horizon, C)
    """
    L = x.shape[1]
    return torch.cat([x[:, L - label_len :], x.new_zeros(x.shape[0], horizon, x.shape[2])], dim=1)


def example_windows(input_size: int, horizon: int, label_len: int, channels: int = 3, d_mark: int = 4):
    """``example_inputs`` factory for registered ``*_tiny`` forecasters: 2 windows with time features."""

    def make(g: torch.Generator) -> tuple[torch.Tensor, ...]:
        x = torch.randn(2, input_size, channels, generator=g)
        x_mark = torch.rand(2, input_size, d_mark, generator=g) - 0.5
        y_mark = torch.rand(2, label_len + horizon, d_mark, generator=g) - 0.5
        return x, x_mark, y_mark

    return make
