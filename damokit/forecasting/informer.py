"""Informer: ProbSparse self-attention and self-attention distilling (a FEDformer baseline).

Paper: Zhou et al., "Informer: Beyond Efficient Transformer for Long Sequence Time-Series Forecasting",
AAAI 2021, arXiv 2012.07436. Code followed: the copy in the FEDformer repository (github.com/MAZiqing/FEDformer
``models/Informer.py``, ``layers/SelfAttention_Family.py``), whose lineage produced the Informer rows the
FEDformer paper quotes (spec §14).

ProbSparse attention scores only the ``u = c * ceil(ln L_q)`` "active" queries (largest max-minus-mean score
over ``c * ceil(ln L_k)`` sampled keys); the other queries get the mean of the values (or, with the causal
mask, their cumulative sum). A distilling layer (circular conv, BatchNorm, ELU, max-pool stride 2) halves the
sequence between encoder layers.

Calling convention as ``damokit.forecasting.fedformer`` (decoder input ``[end of x, zeros]`` built inside).

Official quirk reproduced by default: ProbAttention returns its context as ``(B, H, L, E)`` and the wrapper
reads that buffer as ``(B, L, H*E)`` (no transpose), mixing heads and time. ``corrected=True`` transposes.

Deviations: in eval mode the key sample is drawn from a fixed-seed generator, so inference is deterministic
(the official code draws from the global RNG at every call); in training it uses the global RNG as officially.
The official ``.squeeze()`` of the sampled scores (which breaks for batch size 1 or one head) is a targeted
squeeze.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from damokit.forecasting._model_inputs import check_inputs, check_sizes, example_windows, label_and_zeros
from damokit.nn.attention import AttentionLayer
from damokit.nn.embeddings import DataEmbedding
from damokit.nn.encoder_decoder import Decoder, DecoderLayer, Encoder, EncoderLayer
from damokit.registry import register_model

__all__ = ["ProbAttention", "DistilLayer", "Informer", "informer", "informer_tiny"]

EVAL_SAMPLE_SEED = 0  # seed of the key sample in eval mode


class ProbAttention(nn.Module):
    """ProbSparse attention (Informer Sec. 3.1).

    Args:
        factor: sampling factor ``c``.
        causal: causal mask (decoder self-attention; needs equal query and key lengths).
        corrected: return the context in ``(B, L, H, E)`` order (the official code does not transpose).

    Shapes:
        q: (B, L, H, E), k: (B, S, H, E), v: (B, S, H, E) -> (B, L, H*E)
    """

    def __init__(self, factor: int = 3, *, causal: bool = False, corrected: bool = False):
        super().__init__()
        if factor < 1:
            raise ValueError(f"factor must be >= 1, got {factor}")
        self.factor, self.causal, self.corrected = factor, causal, corrected

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        B, L, H, E = q.shape
        S = k.shape[1]
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, ., E)
        n_sample = min(self.factor * math.ceil(math.log(S)), S)
        n_top = min(self.factor * math.ceil(math.log(L)), L)

        generator = None if self.training else torch.Generator().manual_seed(EVAL_SAMPLE_SEED)
        sample = torch.randint(S, (L, n_sample), generator=generator).to(q.device)  # (L, n_sample) key ids
        k_sample = k[:, :, sample]  # (B, H, L, n_sample, E)
        qk_sample = (q.unsqueeze(-2) @ k_sample.transpose(-2, -1)).squeeze(-2)  # (B, H, L, n_sample)
        sparsity = qk_sample.max(-1).values - qk_sample.sum(-1) / S  # max-mean measurement, (B, H, L)
        top = sparsity.topk(n_top, sorted=False).indices  # (B, H, u)

        q_top = torch.gather(q, 2, top.unsqueeze(-1).expand(-1, -1, -1, E))  # (B, H, u, E)
        scores = (q_top @ k.transpose(-2, -1)) * (1.0 / math.sqrt(E))  # (B, H, u, S)
        if self.causal:
            if L != S:
                raise ValueError(f"causal ProbAttention needs equal query and key lengths, got {L} and {S}")
            mask = torch.ones(L, S, dtype=torch.bool, device=q.device).triu(1)[top]  # (B, H, u, S)
            scores = scores.masked_fill(mask, float("-inf"))
            context = v.cumsum(dim=-2)  # (B, H, L, E)
        else:
            context = v.mean(dim=-2, keepdim=True).expand(B, H, L, E)
        attn_out = torch.softmax(scores, dim=-1) @ v  # (B, H, u, E)
        context = context.scatter(2, top.unsqueeze(-1).expand(-1, -1, -1, E), attn_out.to(context.dtype))
        if self.corrected:
            return context.transpose(1, 2).reshape(B, L, H * E)
        return context.reshape(B, L, H * E)  # official: (B, H, L, E) buffer read as (B, L, H*E)


class DistilLayer(nn.Module):
    """Self-attention distilling between encoder layers (official ``ConvLayer``): length ``L -> L//2 + 1``.

    Shapes:
        x: (B, L, D) -> (B, floor((L+1)/2) + 1, D)
    """

    def __init__(self, d_model: int):
        super().__init__()
        self.downConv = nn.Conv1d(d_model, d_model, 3, padding=2, padding_mode="circular")
        self.norm = nn.BatchNorm1d(d_model)
        self.activation = nn.ELU()
        self.maxPool = nn.MaxPool1d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(self.norm(self.downConv(x.transpose(1, 2))))  # (B, D, L + 2)
        return self.maxPool(x).transpose(1, 2)


class Informer(nn.Module):
    """Informer encoder-decoder forecaster.

    Args:
        input_size, horizon, label_len, enc_in, c_out, d_mark: windows and channels, as ``FEDformer``.
        d_model, n_heads, e_layers, d_layers, d_ff, dropout: widths, depths and dropout.
        factor: ProbSparse sampling factor ``c`` (paper scripts: 3).
        distil: distilling layers between encoder layers (official default on).
        corrected: fix the context layout quirk (module docstring).

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
        factor: int = 3,
        distil: bool = True,
        dropout: float = 0.05,
        corrected: bool = False,
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
            return AttentionLayer(ProbAttention(factor, causal=causal, corrected=corrected), d_model, n_heads)

        self.enc_embedding = DataEmbedding(enc_in, d_model, d_mark=d_mark, dropout=dropout, positional=True)
        self.dec_embedding = DataEmbedding(enc_in, d_model, d_mark=d_mark, dropout=dropout, positional=True)
        self.encoder = Encoder(
            [EncoderLayer(attention(False), d_model, d_ff, dropout=dropout) for _ in range(e_layers)],
            d_model,
            conv_layers=[DistilLayer(d_model) for _ in range(e_layers - 1)] if distil else None,
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
        enc = self.encoder(self.enc_embedding(x, x_mark))  # (B, I', D), I' halved per distilling layer
        dec = self.dec_embedding(label_and_zeros(x, self.label_len, self.horizon), y_mark)  # (B, Ld, D)
        return self.decoder(dec, enc)[:, -self.horizon :]


_META = dict(task="forecasting", paper="2012.07436", input_layout="(B, L, C)")


@register_model(**_META)
def informer(**overrides: Any) -> Informer:
    """Informer at the FEDformer paper scripts' sizes: D=512, 8 heads, 2+1 layers, factor 3, distilling on."""
    return Informer(**overrides)


@register_model(**_META, example_inputs=example_windows(32, 8, 16), per_sample=True)
def informer_tiny(**overrides: Any) -> Informer:
    """A seconds-scale Informer for tests."""
    tiny = dict(input_size=32, horizon=8, label_len=16, enc_in=3, d_model=16, n_heads=2, d_ff=32, factor=2)
    return Informer(**{**tiny, "dropout": 0.1, **overrides})
