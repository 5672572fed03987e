"""FEDformer's Fourier-basis frequency blocks: FEB-f (self-attention) and FEA-f (cross-attention).

Paper: Zhou et al., "FEDformer: Frequency Enhanced Decomposed Transformer for Long-term Series Forecasting",
ICML 2022, arXiv 2201.12740, Sec. 3.2-3.3. Official code: github.com/MAZiqing/FEDformer,
``layers/FourierCorrelation.py``.

Both blocks are vectorised: the kept modes are gathered with an index tensor and mixed by one batched
complex ``einsum`` (the official code runs one small einsum per mode in a Python loop). The kept-mode
indices are drawn once at construction from a passed ``numpy.random.RandomState`` and stored as int64
buffers, so a saved state dict reloads to the same function (official issue #77).

Official quirks reproduced by default (``corrected=False``), each fixed by ``corrected=True``:

1. Output layout (both blocks): the result is computed as ``(B, H, E, L)`` and the official wrapper
   reinterprets that contiguous buffer as ``(B, L, H*E)`` (a reshape without permute), scrambling time and
   channels before the output projection. Corrected: permute to ``(B, L, H, E)`` first.
2. Placement (FEB-f): the spectrum computed for source bin ``index[m]`` is written to output bin ``m``
   (the lowest ``M`` bins). Corrected: written back to bin ``index[m]``.
3. Keys as values (FEA-f): the attention weights aggregate the keys' spectrum; the value input is unused.
   Corrected: aggregate the values' spectrum.
4. Scale (FEA-f): the output spectrum is divided by ``D_in * D_out`` on top of the ``1/(D_in*D_out)``
   weight init, so the block's output is tiny. Corrected: no division.

Notation: ``B`` batch, ``L`` length, ``H`` heads, ``E`` width per head, ``M`` kept modes.
"""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange
from torch import nn

__all__ = ["select_modes", "FourierBlock", "FourierCrossAttention"]

MODE_SELECT_METHODS = ("random", "low")


def select_modes(seq_len: int, modes: int, method: str, rng: np.random.RandomState) -> np.ndarray:
    """Kept frequency bins for a length-``seq_len`` series (official ``get_frequency_modes``).

    Candidates are ``0 .. seq_len//2 - 1`` (never the Nyquist bin); ``M = min(modes, seq_len//2)``.
    ``random`` shuffles the candidates with ``rng`` (consuming it exactly as the official ``np.random.shuffle``
    does, so seeding ``rng`` with 2021 and drawing in the official order replays the official lists) and keeps
    the first ``M``; ``low`` keeps ``0 .. M-1``. Returned sorted.
    """
    if method not in MODE_SELECT_METHODS:
        raise ValueError(f"mode_select must be one of {MODE_SELECT_METHODS}, got {method!r}")
    if modes < 1:
        raise ValueError(f"modes must be >= 1, got {modes}")
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2 to keep any frequency mode, got {seq_len}")
    m = min(modes, seq_len // 2)
    index = np.arange(seq_len // 2)
    if method == "random":
        rng.shuffle(index)
    return np.sort(index[:m])


def _complex_weight(heads: int, e_in: int, e_out: int, modes: int, scale: float) -> nn.Parameter:
    """Official init: real and imaginary parts each uniform on [0, 1), times ``scale``."""
    return nn.Parameter(scale * torch.rand(heads, e_in, e_out, modes, dtype=torch.cfloat))


def _to_model_layout(out: torch.Tensor, corrected: bool) -> torch.Tensor:
    """``(B, H, E, L)`` -> ``(B, L, H*E)``: official reshape without permute, or the proper permute."""
    B, H, E, L = out.shape
    if corrected:
        return rearrange(out, "b h e l -> b l (h e)")
    return out.reshape(B, L, H * E)  # flat index (h*E + e)*L + l -> row f // D, column f % D (quirk 1)


def _complex_tanh(z: torch.Tensor) -> torch.Tensor:
    """``tanh`` of a complex tensor from real ``tanh``/``sin``/``cos``: the same function, a fraction of the cost.

    ``tanh(a + ib) = (t + i sin(b) cos(b) s) / (cos(b)^2 + t^2 sin(b)^2)`` with ``t = tanh(a)`` and
    ``s = 1 - t^2`` (divide ``sinh(2a) + i sin(2b)`` and ``cosh(2a) + cos(2b)`` by ``2 cosh(a)^2``). No term
    overflows for any ``a``, and the denominator is a sum of two squares, so it stays accurate next to the poles
    ``a = 0, b = pi/2 + k pi`` (written ``1 - sin(b)^2 s``, it cancels to zero there and gives inf/NaN where
    the true value is finite). Autograd through it gives the holomorphic derivative ``1 - tanh(z)^2``.
    PyTorch's complex ``tanh`` kernel is scalar code, about 10x slower on CPU, and was the single most expensive
    elementwise op of a full-size FEDformer forward.
    """
    t = torch.tanh(z.real)
    sin_b, cos_b = torch.sin(z.imag), torch.cos(z.imag)
    denominator = cos_b * cos_b + (t * sin_b) ** 2
    return torch.complex(t / denominator, sin_b * cos_b * (1 - t * t) / denominator)


class FourierBlock(nn.Module):
    """FEB-f: per-head complex channel mixing of ``M`` kept Fourier modes of the queries.

    Args:
        d_model: model width ``D``.
        n_heads: heads ``H``; the weight is block-diagonal per head (the official code hard-codes 8).
        seq_len: input length ``L`` the modes are drawn for.
        modes: number of modes to keep (capped at ``L//2``).
        mode_select: ``"random"`` or ``"low"``.
        rng: numpy RandomState the random modes are drawn from.
        corrected: fix quirks 1 and 2 of the module docstring.

    Shapes:
        q: (B, L, H, E) -> (B, L, D); keys and values are ignored.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        seq_len: int,
        modes: int,
        mode_select: str,
        rng: np.random.RandomState,
        *,
        corrected: bool = False,
    ):
        super().__init__()
        self.corrected = corrected
        self.register_buffer("index", torch.as_tensor(select_modes(seq_len, modes, mode_select, rng)))
        E = d_model // n_heads
        self.weights1 = _complex_weight(n_heads, E, E, len(self.index), 1.0 / (d_model * d_model))

    def forward(self, q: torch.Tensor, k: torch.Tensor | None = None, v: torch.Tensor | None = None) -> torch.Tensor:
        B, L, H, E = q.shape
        x_ft = torch.fft.rfft(q.permute(0, 2, 3, 1), dim=-1)  # (B, L, H, E) -> (B, H, E, L) -> (B, H, E, L//2+1)
        y = torch.einsum("bhem,heom->bhom", x_ft.index_select(-1, self.index), self.weights1)  # (B, H, E, M)
        if self.corrected:  # write mode m back to its own bin index[m]
            spectrum = y.new_zeros(B, H, y.shape[2], L // 2 + 1).index_copy(-1, self.index, y)
            out = torch.fft.irfft(spectrum, n=L, dim=-1)
        else:  # quirk 2: the M results fill bins 0..M-1; irfft zero-pads the rest
            out = torch.fft.irfft(y, n=L, dim=-1)  # (B, H, E, L)
        return _to_model_layout(out, self.corrected)


class FourierCrossAttention(nn.Module):
    """FEA-f: attention between kept Fourier modes of queries and keys, with complex ``tanh`` or softmax.

    Scores ``A = Q~ K~^T`` (no conjugate, no ``1/sqrt(E)``, as in the official code and paper Eq. 7),
    activation, aggregation, per-head complex channel mixing, scatter to the query bins, inverse FFT.

    Args:
        d_model, n_heads, modes, mode_select, rng: as ``FourierBlock``.
        seq_len_q: query length the query modes are drawn for.
        seq_len_kv: key length the key modes are drawn for (query modes are drawn first, as officially).
        activation: ``"tanh"`` (complex tanh, the paper default) or ``"softmax"`` (over ``|A|``).
        corrected: fix quirks 1, 3 and 4 of the module docstring.

    Shapes:
        q: (B, Lq, H, E), k: (B, Lkv, H, E), v: (B, Lkv, H, E) or None -> (B, Lq, D)
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        seq_len_q: int,
        seq_len_kv: int,
        modes: int,
        mode_select: str,
        rng: np.random.RandomState,
        *,
        activation: str = "tanh",
        corrected: bool = False,
    ):
        super().__init__()
        if activation not in ("tanh", "softmax"):
            raise ValueError(f"cross activation must be 'tanh' or 'softmax', got {activation!r}")
        self.activation = activation
        self.corrected = corrected
        self.d_model = d_model
        self.register_buffer("index_q", torch.as_tensor(select_modes(seq_len_q, modes, mode_select, rng)))
        self.register_buffer("index_kv", torch.as_tensor(select_modes(seq_len_kv, modes, mode_select, rng)))
        E = d_model // n_heads
        self.weights1 = _complex_weight(n_heads, E, E, len(self.index_q), 1.0 / (d_model * d_model))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None = None) -> torch.Tensor:
        B, L, H, E = q.shape
        q_ft = torch.fft.rfft(q.permute(0, 2, 3, 1), dim=-1).index_select(-1, self.index_q)  # (B, H, E, Mq)
        k_ft = torch.fft.rfft(k.permute(0, 2, 3, 1), dim=-1).index_select(-1, self.index_kv)  # (B, H, E, Mkv)
        scores = torch.einsum("bhex,bhey->bhxy", q_ft, k_ft)  # (B, H, Mq, Mkv)
        if self.activation == "tanh":
            weights = _complex_tanh(scores)
        else:
            weights = torch.complex(torch.softmax(scores.abs(), dim=-1), torch.zeros_like(scores.real))
        if self.corrected:
            values_ft = torch.fft.rfft(v.permute(0, 2, 3, 1), dim=-1).index_select(-1, self.index_kv)
        else:
            values_ft = k_ft  # quirk 3: keys' spectrum used as values
        agg = torch.einsum("bhxy,bhey->bhex", weights, values_ft)  # (B, H, E, Mq)
        y = torch.einsum("bhex,heox->bhox", agg, self.weights1)  # (B, H, E_out, Mq)
        if not self.corrected:
            y = y / self.d_model / self.d_model  # quirk 4: divide by D_in * D_out (same order as official)
        spectrum = y.new_zeros(B, H, y.shape[2], L // 2 + 1).index_copy(-1, self.index_q, y)
        out = torch.fft.irfft(spectrum, n=L, dim=-1)  # (B, H, E_out, Lq)
        return _to_model_layout(out, self.corrected)
