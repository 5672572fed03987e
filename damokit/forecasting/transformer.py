"""Vanilla Transformer forecaster (a FEDformer baseline, and the full-attention reference of its benchmark).

Paper: Vaswani et al., "Attention Is All You Need", NeurIPS 2017, arXiv 1706.03762; the forecasting set-up
(token-conv + position + time-feature embedding, start-token decoder) as in the FEDformer repository's
``models/Transformer.py`` (spec §14).

Encoder: post-norm layers with full softmax attention (``O(L^2)`` time and memory), final LayerNorm. Decoder:
causal self-attention over ``[last label_len steps of x, zeros]``, cross-attention, FFN, final LayerNorm and
``Linear(D -> C)``; the last ``horizon`` steps are the forecast.

Calling convention as ``damokit.forecasting.fedformer``: the decoder input is built from ``x`` exactly as the
official training loop does (``cat(y[:, :label_len], zeros)``, and ``y[:, :label_len]`` is the end of ``x``);
``x_mark``/``y_mark`` are optional.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from damokit.forecasting._model_inputs import check_inputs, check_sizes, example_windows, label_and_zeros
from damokit.nn.attention import AttentionLayer, FullAttention
from damokit.nn.embeddings import DataEmbedding
from damokit.nn.encoder_decoder import Decoder, DecoderLayer, Encoder, EncoderLayer
from damokit.registry import register_model

__all__ = ["Transformer", "transformer", "transformer_tiny"]


class Transformer(nn.Module):
    """Encoder-decoder Transformer with full attention.

    Args:
        input_size, horizon, label_len, enc_in, c_out, d_mark: windows and channels, as ``FEDformer``.
        d_model, n_heads, e_layers, d_layers, d_ff, dropout: widths, depths and dropout (also on attention weights).

    Shapes:
        x: (B, input_size, enc_in), x_mark: (B, input_size, d_mark), y_mark: (B, label_len + horizon, d_mark)
        -> (B, horizon, c_out)
    """

    MULTIVARIATE = True
    USES_TIME_FEATURES = True

    def __init__(
        self,
        *,
        input_size: int = 96,
        horizon: int = 96,
        label_len: int | None = None,
        enc_in: int = 7,
        c_out: int | None = None,
        d_mark: int = 4,
        d_model: int = 512,
        n_heads: int = 8,
        e_layers: int = 2,
        d_layers: int = 1,
        d_ff: int = 2048,
        dropout: float = 0.05,
    ):
        super().__init__()
        label_len = input_size // 2 if label_len is None else label_len
        c_out = enc_in if c_out is None else c_out
        check_sizes(
            input_size=input_size, horizon=horizon, label_len=label_len, enc_in=enc_in, c_out=c_out, d_mark=d_mark
        )
        self.input_size, self.horizon, self.label_len = input_size, horizon, label_len
        self.enc_in, self.c_out, self.d_mark = enc_in, c_out, d_mark

        def attention(causal: bool) -> nn.Module:
            return AttentionLayer(FullAttention(causal=causal, dropout=dropout), d_model, n_heads)

        self.enc_embedding = DataEmbedding(enc_in, d_model, d_mark=d_mark, dropout=dropout, positional=True)
        self.dec_embedding = DataEmbedding(enc_in, d_model, d_mark=d_mark, dropout=dropout, positional=True)
        self.encoder = Encoder(
            [EncoderLayer(attention(False), d_model, d_ff, dropout=dropout) for _ in range(e_layers)], d_model
        )
        self.decoder = Decoder(
            [DecoderLayer(attention(True), attention(False), d_model, d_ff, dropout=dropout) for _ in range(d_layers)],
            d_model,
            c_out,
        )

    def forward(
        self, x: torch.Tensor, x_mark: torch.Tensor | None = None, y_mark: torch.Tensor | None = None
    ) -> torch.Tensor:
        check_inputs(self, x, x_mark, y_mark)
        enc = self.encoder(self.enc_embedding(x, x_mark))  # (B, I, D)
        dec = self.dec_embedding(label_and_zeros(x, self.label_len, self.horizon), y_mark)  # (B, Ld, D)
        return self.decoder(dec, enc)[:, -self.horizon :]


_META = dict(task="forecasting", paper="1706.03762", input_layout="(B, L, C)")


@register_model(**_META)
def transformer(**overrides: Any) -> Transformer:
    """The FEDformer paper's Transformer baseline: D=512, 8 heads, 2+1 layers, d_ff 2048, dropout 0.05."""
    return Transformer(**overrides)


@register_model(**_META, example_inputs=example_windows(32, 8, 16), per_sample=True)
def transformer_tiny(**overrides: Any) -> Transformer:
    """A seconds-scale Transformer for tests."""
    tiny = dict(input_size=32, horizon=8, label_len=16, enc_in=3, d_model=16, n_heads=2, d_ff=32, dropout=0.1)
    return Transformer(**{**tiny, **overrides})
