"""Input embeddings of the Informer-family forecasters (official ``layers/Embed.py`` of FEDformer/Autoformer).

``DataEmbedding`` = token convolution over the values + linear embedding of the ``timeF`` time features
(+ the sinusoidal position code for Transformer/Informer; FEDformer and Autoformer go without it), then
dropout. When no time features are given (``x_mark=None``) the temporal term contributes nothing.

Deviation: the official code registers a ``[1, 5000, D]`` positional buffer in every embedding, even where it
is never added; we compute the code for the needed length on the fly (same values, no state-dict entry,
no length limit).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["TokenEmbedding", "sinusoidal_positions", "DataEmbedding"]


class TokenEmbedding(nn.Module):
    """Conv1d over time (kernel 3, circular padding, no bias) from ``c_in`` series to ``d_model``.

    Shapes:
        x: (B, L, c_in) -> (B, L, d_model)
    """

    def __init__(self, c_in: int, d_model: int):
        super().__init__()
        self.conv = nn.Conv1d(c_in, d_model, kernel_size=3, padding=1, padding_mode="circular", bias=False)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_in", nonlinearity="leaky_relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, L, C) -> (B, C, L) -> (B, D, L) -> (B, L, D)


def sinusoidal_positions(length: int, d_model: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """The Transformer's sine/cosine position code, computed as the official code does (float32, log space).

    Shapes:
        -> (1, length, d_model)
    """
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)  # (L, 1)
    div_term = (torch.arange(0, d_model, 2, device=device).float() * -(math.log(10000.0) / d_model)).exp()
    pe = torch.zeros(length, d_model, device=device)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term[: d_model // 2])
    return pe.unsqueeze(0).to(dtype)


class DataEmbedding(nn.Module):
    """Value (token conv) + temporal (``timeF`` linear) [+ position] embedding, then dropout.

    Args:
        c_in: number of input series.
        d_model: embedding width ``D``.
        d_mark: number of time-feature columns (4 for hourly ``timeF``; 0 disables the temporal term).
        dropout: dropout on the sum.
        positional: add the sinusoidal position code (Transformer, Informer) or not (Autoformer, FEDformer:
            the official ``DataEmbedding_wo_pos``).

    Shapes:
        x: (B, L, c_in), x_mark: (B, L, d_mark) or None -> (B, L, d_model)
    """

    def __init__(self, c_in: int, d_model: int, *, d_mark: int = 4, dropout: float = 0.0, positional: bool = False):
        super().__init__()
        if d_mark < 0:
            raise ValueError(f"d_mark must be >= 0 (number of time-feature columns), got {d_mark}")
        self.d_model = d_model
        self.positional = positional
        self.value_embedding = TokenEmbedding(c_in, d_model)
        self.temporal_embedding = nn.Linear(d_mark, d_model, bias=False) if d_mark else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, x_mark: torch.Tensor | None = None) -> torch.Tensor:
        out = self.value_embedding(x)
        if x_mark is not None and self.temporal_embedding is not None:
            out = out + self.temporal_embedding(x_mark)
        if self.positional:
            out = out + sinusoidal_positions(x.shape[1], self.d_model, device=x.device, dtype=out.dtype)
        return self.dropout(out)
