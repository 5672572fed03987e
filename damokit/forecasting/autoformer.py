"""Autoformer: decomposition transformer with auto-correlation (a FEDformer baseline).

Paper: Wu, Xu, Wang, Long, "Autoformer: Decomposition Transformers with Auto-Correlation for Long-Term Series
Forecasting", NeurIPS 2021, arXiv 2106.13008. Code followed: the copy in the FEDformer repository
(github.com/MAZiqing/FEDformer ``models/Autoformer.py``, ``layers/AutoCorrelation.py``), which produced the
FEDformer paper's Autoformer rows (spec §14).

Same skeleton as FEDformer (``damokit.nn.encoder_decoder`` decomposition stacks); the inner block is
auto-correlation: period-based lags found from ``irfft(rfft(q) * conj(rfft(k)))``, the top
``int(factor * ln L)`` lags aggregated by rolling the values. Training picks lags shared by the batch (the
official speed-up); eval picks them per sample.

Calling convention as ``damokit.forecasting.fedformer`` (decoder start built from ``x``; ``x_mark``/``y_mark``
optional, the temporal embedding adds nothing without them).

Deviations: the lag aggregation is one FFT product (a circular cross-correlation of the values with the
weights placed at their lags) instead of a Python loop of rolls (same values up to round-off); the official
inference path's ``.cuda()`` call is not copied (it fails on CPU); the model-level decomposition uses the first
kernel as officially, the layers the MOE mixture.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from damokit.forecasting._model_inputs import check_inputs, check_sizes, decomposition_init, example_windows
from damokit.nn.attention import AttentionLayer
from damokit.nn.decomposition import MixtureDecomposition, SeriesDecomposition
from damokit.nn.embeddings import DataEmbedding
from damokit.nn.encoder_decoder import DecompDecoder, DecompDecoderLayer, DecompEncoder, DecompEncoderLayer
from damokit.registry import register_model

__all__ = ["AutoCorrelation", "Autoformer", "autoformer", "autoformer_tiny"]


class AutoCorrelation(nn.Module):
    """Auto-correlation with time-delay aggregation (Autoformer Sec. 3.2).

    Args:
        factor: ``c`` in ``top_k = int(c * ln L)``.

    Shapes:
        q: (B, L, H, E), k: (B, S, H, E), v: (B, S, H, E) -> (B, L, H*E)
    """

    def __init__(self, factor: int = 3):
        super().__init__()
        if factor < 1:
            raise ValueError(f"factor must be >= 1, got {factor}")
        self.factor = factor

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        B, L, H, E = q.shape
        S = k.shape[1]
        if L > S:  # keys and values zero-padded or truncated to the query length
            pad = q.new_zeros(B, L - S, H, E)
            k, v = torch.cat([k, pad], dim=1), torch.cat([v, pad], dim=1)
        else:
            k, v = k[:, :L], v[:, :L]
        q_ft = torch.fft.rfft(q.permute(0, 2, 3, 1), dim=-1)  # (B, H, E, L//2+1)
        k_ft = torch.fft.rfft(k.permute(0, 2, 3, 1), dim=-1)
        corr = torch.fft.irfft(q_ft * torch.conj(k_ft), n=L, dim=-1)  # (B, H, E, L) correlation per lag
        mean_corr = corr.mean(dim=(1, 2))  # (B, L)
        top_k = int(self.factor * math.log(L))
        if self.training:  # lags shared by the batch (by the batch-mean correlation), per-sample weights
            lags = torch.topk(mean_corr.mean(0), top_k, dim=-1).indices  # (k,)
            weights = mean_corr[:, lags]  # (B, k)
            lags = lags.expand(B, -1)
        else:
            weights, lags = torch.topk(mean_corr, top_k, dim=-1)  # (B, k) each
        weights = torch.softmax(weights, dim=-1)
        # sum_i w_i roll(v, -lag_i)[t] = sum_tau a[tau] v[(t + tau) mod L] with a = the weights placed at their
        # lags: a circular cross-correlation, one FFT product instead of k rolled copies of v
        delays = weights.new_zeros(B, L).scatter(-1, lags, weights)  # (B, L)
        delays_ft = torch.conj(torch.fft.rfft(delays, dim=-1))[:, :, None, None]  # (B, L//2+1, 1, 1)
        out = torch.fft.irfft(torch.fft.rfft(v, dim=1) * delays_ft, n=L, dim=1)  # (B, L, H, E)
        return out.reshape(B, L, H * E)


class Autoformer(nn.Module):
    """Autoformer encoder-decoder forecaster.

    Args:
        input_size, horizon, label_len, enc_in, c_out, d_mark: windows and channels, as ``FEDformer``.
        d_model, n_heads, e_layers, d_layers, d_ff, dropout, activation: as ``FEDformer``.
        moving_avg: decomposition kernels (the FEDformer repository's default ``(24,)``; Autoformer's own 25).
        factor: auto-correlation ``c`` (paper scripts: 3).

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
        moving_avg: Sequence[int] = (24,),
        factor: int = 3,
        dropout: float = 0.05,
        activation: str = "gelu",
    ):
        super().__init__()
        label_len = input_size // 2 if label_len is None else label_len
        c_out = enc_in if c_out is None else c_out
        check_sizes(
            input_size=input_size, horizon=horizon, label_len=label_len, enc_in=enc_in, c_out=c_out, d_mark=d_mark
        )
        if isinstance(moving_avg, int):
            moving_avg = (moving_avg,)
        self.input_size, self.horizon, self.label_len = input_size, horizon, label_len
        self.enc_in, self.c_out, self.d_mark = enc_in, c_out, d_mark

        def decomposition() -> nn.Module:
            return MixtureDecomposition(moving_avg)

        def attention() -> nn.Module:
            return AttentionLayer(AutoCorrelation(factor), d_model, n_heads)

        self.decomp = SeriesDecomposition(moving_avg[0])
        self.enc_embedding = DataEmbedding(enc_in, d_model, d_mark=d_mark, dropout=dropout)
        self.dec_embedding = DataEmbedding(enc_in, d_model, d_mark=d_mark, dropout=dropout)
        layer_kw = dict(dropout=dropout, activation=activation)
        self.encoder = DecompEncoder(
            [DecompEncoderLayer(attention(), d_model, d_ff, decomposition, **layer_kw) for _ in range(e_layers)],
            d_model,
        )
        self.decoder = DecompDecoder(
            [
                DecompDecoderLayer(attention(), attention(), d_model, c_out, d_ff, decomposition, **layer_kw)
                for _ in range(d_layers)
            ],
            d_model,
            c_out,
        )

    def forward(
        self, x: torch.Tensor, x_mark: torch.Tensor | None = None, y_mark: torch.Tensor | None = None
    ) -> torch.Tensor:
        check_inputs(self, x, x_mark, y_mark)
        seasonal_init, trend_init = decomposition_init(x, self.decomp, self.label_len, self.horizon)
        enc = self.encoder(self.enc_embedding(x, x_mark))  # (B, I, D)
        seasonal, trend = self.decoder(self.dec_embedding(seasonal_init, y_mark), enc, trend_init)
        return (trend + seasonal)[:, -self.horizon :]


_META = dict(task="forecasting", paper="2106.13008", input_layout="(B, L, C)")


@register_model(**_META)
def autoformer(**overrides: Any) -> Autoformer:
    """Autoformer at the sizes of the FEDformer paper's scripts: D=512, 8 heads, 2+1 layers, factor 3, k=24."""
    return Autoformer(**overrides)


@register_model(**_META, example_inputs=example_windows(32, 8, 16), per_sample=True)
def autoformer_tiny(**overrides: Any) -> Autoformer:
    """A seconds-scale Autoformer for tests."""
    tiny = dict(input_size=32, horizon=8, label_len=16, enc_in=3, d_model=16, n_heads=2, d_ff=32, moving_avg=(5,))
    return Autoformer(**{**tiny, "dropout": 0.1, **overrides})
