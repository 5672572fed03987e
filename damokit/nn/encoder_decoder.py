"""Encoder/decoder stacks of the Informer-family forecasters.

Two families, each shared by two models:

- decomposition stacks (Autoformer, FEDformer; official ``layers/Autoformer_EncDec.py``): every sub-layer is
  followed by a series decomposition that drops (encoder) or accumulates (decoder) the trend; the seasonal
  stream is normalised by ``SeasonalLayerNorm``.
- post-norm stacks (vanilla Transformer, Informer; official ``layers/Transformer_EncDec.py``).

The point-wise feed-forward networks are ``Linear`` layers where the official code uses kernel-1 ``Conv1d``
(same function, faster on CPU); official checkpoints map by squeezing the last weight axis.

Notation: ``B`` batch, ``L`` decoder/encoder length, ``S`` encoder length, ``D`` model width,
``C`` output series.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from damokit.nn.layers import Mlp

__all__ = [
    "SeasonalLayerNorm",
    "DecompEncoderLayer",
    "DecompEncoder",
    "DecompDecoderLayer",
    "DecompDecoder",
    "EncoderLayer",
    "Encoder",
    "DecoderLayer",
    "Decoder",
]

Decomposition = Callable[[], nn.Module]  # factory of a (seasonal, trend) decomposition module

_ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu}


def _activation(name: str):
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]


class SeasonalLayerNorm(nn.Module):
    """LayerNorm over channels, then subtract the mean over time (official ``my_Layernorm``).

    Shapes:
        x: (B, L, D) -> (B, L, D)
    """

    def __init__(self, d_model: int):
        super().__init__()
        self.layernorm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_hat = self.layernorm(x)
        return x_hat - x_hat.mean(dim=1, keepdim=True)


class _BiaslessFFN(nn.Module):
    """``dropout(linear2(dropout(act(linear1(x)))))`` without biases (Autoformer/FEDformer FFN)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float, activation: str):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff, bias=False)
        self.linear2 = nn.Linear(d_ff, d_model, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.activation = _activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.linear2(self.dropout(self.activation(self.linear1(x)))))


class DecompEncoderLayer(nn.Module):
    """Attention + decomposition + FFN + decomposition; trends are discarded (paper Eq. 1).

    Shapes:
        x: (B, L, D) -> (B, L, D)
    """

    def __init__(
        self,
        attention: nn.Module,
        d_model: int,
        d_ff: int,
        decomposition: Decomposition,
        *,
        dropout: float = 0.0,
        activation: str = "gelu",
    ):
        super().__init__()
        self.attention = attention
        self.ffn = _BiaslessFFN(d_model, d_ff, dropout, activation)
        self.decomp1 = decomposition()
        self.decomp2 = decomposition()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self.decomp1(x + self.dropout(self.attention(x, x, x)))
        x, _ = self.decomp2(x + self.ffn(x))
        return x


class DecompEncoder(nn.Module):
    """Encoder layers in sequence, then ``SeasonalLayerNorm``."""

    def __init__(self, layers: Sequence[nn.Module], d_model: int):
        super().__init__()
        self.attn_layers = nn.ModuleList(layers)
        self.norm = SeasonalLayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.attn_layers:
            x = layer(x)
        return self.norm(x)


class DecompDecoderLayer(nn.Module):
    """Self-attention, cross-attention and FFN, each followed by a decomposition (paper Eq. 2).

    The three extracted trends are summed and projected to ``C`` by one circular kernel-3 convolution
    (official code; the paper writes three projectors).

    Shapes:
        x: (B, L, D), cross: (B, S, D) -> seasonal (B, L, D), residual trend (B, L, C)
    """

    def __init__(
        self,
        self_attention: nn.Module,
        cross_attention: nn.Module,
        d_model: int,
        c_out: int,
        d_ff: int,
        decomposition: Decomposition,
        *,
        dropout: float = 0.0,
        activation: str = "gelu",
    ):
        super().__init__()
        self.self_attention = self_attention
        self.cross_attention = cross_attention
        self.ffn = _BiaslessFFN(d_model, d_ff, dropout, activation)
        self.decomp1 = decomposition()
        self.decomp2 = decomposition()
        self.decomp3 = decomposition()
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Conv1d(d_model, c_out, 3, padding=1, padding_mode="circular", bias=False)

    def forward(self, x: torch.Tensor, cross: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, trend1 = self.decomp1(x + self.dropout(self.self_attention(x, x, x)))
        x, trend2 = self.decomp2(x + self.dropout(self.cross_attention(x, cross, cross)))
        x, trend3 = self.decomp3(x + self.ffn(x))
        trend = trend1 + trend2 + trend3  # (B, L, D)
        return x, self.projection(trend.transpose(1, 2)).transpose(1, 2)  # (B, D, L) -> (B, C, L) -> (B, L, C)


class DecompDecoder(nn.Module):
    """Decoder layers accumulating the trend, then ``SeasonalLayerNorm`` and ``Linear(D -> C)``.

    Shapes:
        x: (B, L, D), cross: (B, S, D), trend: (B, L, C) -> seasonal (B, L, C), trend (B, L, C)
    """

    def __init__(self, layers: Sequence[nn.Module], d_model: int, c_out: int):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = SeasonalLayerNorm(d_model)
        self.projection = nn.Linear(d_model, c_out)

    def forward(self, x: torch.Tensor, cross: torch.Tensor, trend: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for layer in self.layers:
            x, residual_trend = layer(x, cross)
            trend = trend + residual_trend
        return self.projection(self.norm(x)), trend


class EncoderLayer(nn.Module):
    """Post-norm Transformer encoder layer: ``norm2(y + FFN(y))`` with ``y = norm1(x + attn(x))``.

    Shapes:
        x: (B, L, D) -> (B, L, D)
    """

    def __init__(self, attention: nn.Module, d_model: int, d_ff: int, *, dropout: float = 0.0):
        super().__init__()
        self.attention = attention
        self.ffn = Mlp(d_model, d_ff, drop=dropout)  # Linear -> GELU -> Dropout -> Linear -> Dropout
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.attention(x, x, x)))
        return self.norm2(x + self.ffn(x))


class Encoder(nn.Module):
    """Encoder layers, optionally with a distilling layer after each but the last (Informer), then LayerNorm."""

    def __init__(self, layers: Sequence[nn.Module], d_model: int, conv_layers: Sequence[nn.Module] | None = None):
        super().__init__()
        self.attn_layers = nn.ModuleList(layers)
        self.conv_layers = nn.ModuleList(conv_layers) if conv_layers is not None else None
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.attn_layers):
            x = layer(x)
            if self.conv_layers is not None and i < len(self.conv_layers):
                x = self.conv_layers[i](x)
        return self.norm(x)


class DecoderLayer(nn.Module):
    """Post-norm Transformer decoder layer: self-attention, cross-attention, FFN, three LayerNorms.

    Shapes:
        x: (B, L, D), cross: (B, S, D) -> (B, L, D)
    """

    def __init__(
        self, self_attention: nn.Module, cross_attention: nn.Module, d_model: int, d_ff: int, *, dropout: float = 0.0
    ):
        super().__init__()
        self.self_attention = self_attention
        self.cross_attention = cross_attention
        self.ffn = Mlp(d_model, d_ff, drop=dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cross: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.self_attention(x, x, x)))
        x = self.norm2(x + self.dropout(self.cross_attention(x, cross, cross)))
        return self.norm3(x + self.ffn(x))


class Decoder(nn.Module):
    """Decoder layers, then LayerNorm and ``Linear(D -> C)``.

    Shapes:
        x: (B, L, D), cross: (B, S, D) -> (B, L, C)
    """

    def __init__(self, layers: Sequence[nn.Module], d_model: int, c_out: int):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(d_model)
        self.projection = nn.Linear(d_model, c_out)

    def forward(self, x: torch.Tensor, cross: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, cross)
        return self.projection(self.norm(x))
