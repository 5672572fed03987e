"""FEDformer: Frequency Enhanced Decomposed Transformer for long-term series forecasting.

Paper: Zhou, Ma, Wen, Wang, Sun, Jin, ICML 2022, arXiv 2201.12740. Official code: github.com/MAZiqing/FEDformer
(``models/FEDformer.py``). Spec: ``shared/specs/fedformer.md``.

The Autoformer skeleton (series decomposition inside every layer, seasonal stream through the layers,
trend accumulated in the decoder) with frequency enhanced blocks in place of attention: Fourier
(``version="fourier"``, FEDformer-f; ``fourier.py``) or multiwavelet (``version="wavelet"``, FEDformer-w;
``wavelet.py``).

Calling convention (shared by every forecaster here): ``forward(x (B, L, C), x_mark (B, L, d_mark) | None,
y_mark (B, label_len + H, d_mark) | None) -> (B, H, C)``. The decoder start (seasonal part of the last
``label_len`` steps plus zeros; trend part plus the window mean) is built from ``x`` inside the model, as the
official model does. Without time features (``x_mark=None``/``y_mark=None``) the temporal embedding adds
nothing.

Numerics: by default (``corrected=False``) the official code's quirks are reproduced so that published
numbers and official checkpoints carry over (``load_official_fedformer``; the blocks' docstrings list them):
reshape without permute after the Fourier blocks, low-bin placement in FEB-f, keys as values and a ``1/D**2``
output scale in the cross blocks, one frequency block shared by all encoder layers (likewise decoder), and the
round-off in the multiwavelet filters (FEDformer-w). ``corrected=True`` fixes all of them (and gives each layer
its own block).

Deviations from the official code:
- Kept Fourier modes are drawn from ``numpy.random.RandomState(mode_seed)`` in the official order (encoder,
  decoder self, cross queries, cross keys) and stored as buffers; the default ``mode_seed=2021`` reproduces the
  indices of the official script's first run.
- Decoder-side mode counts use the true decoder length ``label_len + horizon``; the official code assumes
  ``label_len = input_size // 2`` (identical in that case).
- The k/v projections that the frequency blocks never read are not created unless
  ``keep_unused_projections=True``; the unused positional buffers are never created.
- Feed-forward ``Conv1d(kernel_size=1)`` layers are ``Linear`` layers (same function, faster).
- The number of heads is a real argument (the official blocks hard-code 8).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from damokit.engine.checkpoint import CheckpointError, load_weights
from damokit.forecasting._model_inputs import check_inputs, check_sizes, decomposition_init, example_windows
from damokit.forecasting.fourier import FourierBlock, FourierCrossAttention
from damokit.forecasting.wavelet import MultiWaveletCross, MultiWaveletTransform
from damokit.nn.attention import AttentionLayer
from damokit.nn.decomposition import MixtureDecomposition
from damokit.nn.embeddings import DataEmbedding
from damokit.nn.encoder_decoder import DecompDecoder, DecompDecoderLayer, DecompEncoder, DecompEncoderLayer
from damokit.registry import register_model

__all__ = [
    "FEDformer",
    "fedformer_fourier",
    "fedformer_wavelet",
    "fedformer_fourier_tiny",
    "fedformer_wavelet_tiny",
    "fedformer_tiny",
    "convert_official_state_dict",
    "load_official_fedformer",
    "official_mode_indices",
]

VERSIONS = ("fourier", "wavelet")


class FEDformer(nn.Module):
    """FEDformer encoder-decoder forecaster.

    Args:
        input_size: input window ``I`` (official ``seq_len``).
        horizon: forecast length ``O`` (``pred_len``).
        label_len: decoder start-token length (default ``input_size // 2``).
        enc_in: number of input series ``C``.
        c_out: number of output series (default ``enc_in``).
        d_mark: number of time-feature columns (4 for hourly ``timeF``; 0 for none).
        version: ``"fourier"`` (FEDformer-f) or ``"wavelet"`` (FEDformer-w).
        modes: kept Fourier modes ``M`` (paper Sec. 3.2; also the wavelet cross block's modes).
        mode_select: ``"random"`` (paper default) or ``"low"``.
        mode_seed: seed of the mode draw (2021 replays the official indices).
        d_model, n_heads, e_layers, d_layers, d_ff: widths and depths (``D``, ``H``, encoder/decoder layers, FFN).
        moving_avg: decomposition kernels; one kernel is a plain moving average, several the MOE mixture.
        dropout: dropout rate everywhere (official 0.05).
        activation: FFN activation, ``"gelu"`` or ``"relu"``.
        cross_activation: ``"tanh"`` (complex tanh) or ``"softmax"`` in the cross block.
        wavelet_levels: FEB-w levels not decomposed (official ``L``).
        wavelet_base: ``"legendre"`` or ``"chebyshev"``.
        wavelet_k: multiwavelet polynomial order.
        wavelet_alpha: Fourier modes in FEB-w's sparse kernels.
        wavelet_c: FEB-w channels; ``wavelet_cross_c``: FEA-w channels.
        corrected: fix the official code's quirks (module docstring).
        keep_unused_projections: create the official never-read projections and single-kernel decomposition
            gates (for an exact official state-dict layout).

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
        version: str = "fourier",
        modes: int = 64,
        mode_select: str = "random",
        mode_seed: int = 2021,
        d_model: int = 512,
        n_heads: int = 8,
        e_layers: int = 2,
        d_layers: int = 1,
        d_ff: int = 2048,
        moving_avg: Sequence[int] = (24,),
        dropout: float = 0.05,
        activation: str = "gelu",
        cross_activation: str = "tanh",
        wavelet_levels: int = 3,
        wavelet_base: str = "legendre",
        wavelet_k: int = 8,
        wavelet_alpha: int = 16,
        wavelet_c: int = 128,
        wavelet_cross_c: int = 64,
        corrected: bool = False,
        keep_unused_projections: bool = False,
    ):
        super().__init__()
        label_len = input_size // 2 if label_len is None else label_len
        c_out = enc_in if c_out is None else c_out
        check_sizes(
            input_size=input_size, horizon=horizon, label_len=label_len, enc_in=enc_in, c_out=c_out, d_mark=d_mark
        )
        if version not in VERSIONS:
            raise ValueError(f"version must be one of {VERSIONS}, got {version!r}")
        if e_layers < 1 or d_layers < 1:
            raise ValueError(f"e_layers and d_layers must be >= 1, got {e_layers} and {d_layers}")
        if isinstance(moving_avg, int):
            moving_avg = (moving_avg,)
        self.input_size, self.horizon, self.label_len = input_size, horizon, label_len
        self.enc_in, self.c_out, self.d_mark = enc_in, c_out, d_mark
        self.version, self.corrected = version, corrected
        dec_len = label_len + horizon

        def decomposition() -> nn.Module:
            return MixtureDecomposition(moving_avg, keep_unused_gate=keep_unused_projections)

        rng = np.random.RandomState(mode_seed)
        keep = keep_unused_projections

        def blocks() -> tuple[nn.Module, nn.Module, nn.Module]:
            """Encoder self, decoder self and cross blocks, drawn in the official order."""
            if version == "fourier":
                return (
                    FourierBlock(d_model, n_heads, input_size, modes, mode_select, rng, corrected=corrected),
                    FourierBlock(d_model, n_heads, dec_len, modes, mode_select, rng, corrected=corrected),
                    FourierCrossAttention(
                        d_model, n_heads, dec_len, input_size, modes, mode_select, rng,
                        activation=cross_activation, corrected=corrected,
                    ),
                )  # fmt: skip
            wave = dict(k=wavelet_k, base=wavelet_base, corrected=corrected)  # corrected: accurate filters too
            return (
                MultiWaveletTransform(d_model, alpha=wavelet_alpha, c=wavelet_c, levels=wavelet_levels, **wave),
                MultiWaveletTransform(d_model, alpha=wavelet_alpha, c=wavelet_c, levels=wavelet_levels, **wave),
                MultiWaveletCross(
                    d_model, modes=modes, c=wavelet_cross_c, activation=cross_activation, keep_unused=keep, **wave,
                ),
            )  # fmt: skip

        # which projected inputs each block reads (module docstrings of fourier.py / wavelet.py)
        if version == "fourier":
            uses = ("q", "q", "qkv" if corrected else "qk")
        else:
            uses = ("v", "v", "qkv" if corrected else "qk")
        shared = blocks()  # official: one block instance passed to every layer
        enc_blocks = [shared[0]] + [(shared[0] if not corrected else blocks()[0]) for _ in range(e_layers - 1)]
        dec_blocks = [shared[1:]] + [(shared[1:] if not corrected else blocks()[1:]) for _ in range(d_layers - 1)]

        self.decomp = decomposition()
        self.enc_embedding = DataEmbedding(enc_in, d_model, d_mark=d_mark, dropout=dropout)
        self.dec_embedding = DataEmbedding(enc_in, d_model, d_mark=d_mark, dropout=dropout)
        self.encoder = DecompEncoder(
            [
                DecompEncoderLayer(
                    AttentionLayer(block, d_model, n_heads, uses=uses[0], keep_unused=keep),
                    d_model, d_ff, decomposition, dropout=dropout, activation=activation,
                )
                for block in enc_blocks
            ],
            d_model,
        )  # fmt: skip
        self.decoder = DecompDecoder(
            [
                DecompDecoderLayer(
                    AttentionLayer(self_block, d_model, n_heads, uses=uses[1], keep_unused=keep),
                    AttentionLayer(cross_block, d_model, n_heads, uses=uses[2], keep_unused=keep),
                    d_model, c_out, d_ff, decomposition, dropout=dropout, activation=activation,
                )
                for self_block, cross_block in dec_blocks
            ],
            d_model,
            c_out,
        )  # fmt: skip

    def forward(
        self, x: torch.Tensor, x_mark: torch.Tensor | None = None, y_mark: torch.Tensor | None = None
    ) -> torch.Tensor:
        check_inputs(self, x, x_mark, y_mark)
        seasonal_init, trend_init = decomposition_init(x, self.decomp, self.label_len, self.horizon)  # (B, Ld, C)
        enc = self.encoder(self.enc_embedding(x, x_mark))  # (B, I, D)
        seasonal, trend = self.decoder(self.dec_embedding(seasonal_init, y_mark), enc, trend_init)  # (B, Ld, C)
        return (trend + seasonal)[:, -self.horizon :]


# ---------------------------------------------------------------------------------------------------------
# registered variants

_META = dict(task="forecasting", paper="2201.12740", input_layout="(B, L, C)")


_TINY = dict(input_size=32, horizon=8, label_len=16, enc_in=3, d_model=16, n_heads=2, d_ff=32, dropout=0.1)


@register_model(**_META)
def fedformer_fourier(**overrides: Any) -> FEDformer:
    """FEDformer-f at the paper's ETTh1 sizes (spec §1): D=512, 8 heads, 2+1 layers, 64 random modes, k=24."""
    return FEDformer(**{"version": "fourier", **overrides})


@register_model(**_META)
def fedformer_wavelet(**overrides: Any) -> FEDformer:
    """FEDformer-w at the official sizes: Legendre multiwavelets k=8, c=128, alpha=16, L=3 (~100 M parameters
    per FEB-w; heavy on CPU)."""
    return FEDformer(**{"version": "wavelet", **overrides})


@register_model(**_META, example_inputs=example_windows(32, 8, 16), per_sample=True)
def fedformer_fourier_tiny(**overrides: Any) -> FEDformer:
    """A seconds-scale FEDformer-f for tests: D=16, 6 of 16/12 random modes, a two-kernel MOE decomposition."""
    return FEDformer(**{**_TINY, "version": "fourier", "modes": 6, "moving_avg": (5, 9), **overrides})


@register_model(**_META, example_inputs=example_windows(32, 8, 16), per_sample=True)
def fedformer_wavelet_tiny(**overrides: Any) -> FEDformer:
    """A seconds-scale FEDformer-w for tests: Legendre k=4, c=2, alpha=4, L=1."""
    config = dict(version="wavelet", modes=6, moving_avg=(5,), wavelet_k=4, wavelet_c=2, wavelet_cross_c=2)
    return FEDformer(**{**_TINY, **config, "wavelet_alpha": 4, "wavelet_levels": 1, **overrides})


@register_model(**_META, example_inputs=example_windows(32, 8, 16), per_sample=True)
def fedformer_tiny(**overrides: Any) -> FEDformer:
    """Alias of ``fedformer_fourier_tiny`` (the default FEDformer for quick tests)."""
    return fedformer_fourier_tiny(**overrides)


# ---------------------------------------------------------------------------------------------------------
# official checkpoints

# official run.py argument -> FEDformer keyword (defaults of run.py where a key is absent)
_OFFICIAL_ARGS = {
    "seq_len": ("input_size", 96),
    "label_len": ("label_len", 48),
    "pred_len": ("horizon", 96),
    "enc_in": ("enc_in", 7),
    "c_out": ("c_out", 7),
    "d_model": ("d_model", 512),
    "n_heads": ("n_heads", 8),
    "e_layers": ("e_layers", 2),
    "d_layers": ("d_layers", 1),
    "d_ff": ("d_ff", 2048),
    "moving_avg": ("moving_avg", [24]),
    "modes": ("modes", 64),
    "mode_select": ("mode_select", "random"),
    "dropout": ("dropout", 0.05),
    "activation": ("activation", "gelu"),
    "cross_activation": ("cross_activation", "tanh"),
    "L": ("wavelet_levels", 3),
    "base": ("wavelet_base", "legendre"),
}
_FREQ_WIDTH = {"h": 4, "t": 5, "s": 6, "m": 1, "a": 1, "w": 2, "d": 3, "b": 3}  # official timeF widths
MODE_KEYS = ("encoder", "decoder_self", "cross_q", "cross_kv")


def _official_kwargs(config: Mapping[str, Any] | Any) -> dict[str, Any]:
    """Translate an official run.py configuration (mapping or argparse namespace) into FEDformer keywords."""
    cfg = dict(config) if isinstance(config, Mapping) else dict(vars(config))
    version = cfg.get("version", "Fourier")
    if version not in ("Fourier", "Wavelets"):
        raise ValueError(f"config version must be 'Fourier' or 'Wavelets' (official names), got {version!r}")
    if cfg.get("embed", "timeF") != "timeF":
        raise ValueError(f"only embed='timeF' checkpoints are supported, got embed={cfg['embed']!r}")
    freq = cfg.get("freq", "h")
    if freq not in _FREQ_WIDTH:
        raise ValueError(f"config freq must be one of {sorted(_FREQ_WIDTH)}, got {freq!r}")
    if cfg.get("dec_in", cfg.get("enc_in", 7)) != cfg.get("enc_in", 7):
        raise ValueError("dec_in must equal enc_in: the decoder input is built from the encoder input")
    kwargs = {ours: cfg.get(theirs, default) for theirs, (ours, default) in _OFFICIAL_ARGS.items()}
    moving_avg = kwargs["moving_avg"]
    kwargs["moving_avg"] = tuple(moving_avg) if isinstance(moving_avg, (list, tuple)) else (moving_avg,)
    kwargs["version"] = "fourier" if version == "Fourier" else "wavelet"
    if kwargs["version"] == "fourier":
        kwargs["cross_activation"] = "tanh"  # the official model never passes cross_activation to FEA-f
    kwargs["d_mark"] = _FREQ_WIDTH[freq]
    return kwargs


def official_mode_indices(config: Mapping[str, Any] | Any, seed: int = 2021) -> dict[str, list[int]]:
    """The Fourier mode lists an official process draws after ``np.random.seed(seed)`` (spec §7.1)."""
    kw = _official_kwargs(config)
    rng = np.random.RandomState(seed)
    from damokit.forecasting.fourier import select_modes

    dec = kw["label_len"] + kw["horizon"]
    lengths = (kw["input_size"], dec, dec, kw["input_size"])
    return {key: select_modes(n, kw["modes"], kw["mode_select"], rng).tolist() for key, n in zip(MODE_KEYS, lengths)}


_RENAMES = (
    (r"\.value_embedding\.tokenConv\.", ".value_embedding.conv."),
    (r"\.temporal_embedding\.embed\.", ".temporal_embedding."),
    (r"\.inner_correlation\.", ".inner."),
    (r"\.conv([12])\.weight$", r".ffn.linear\1.weight"),
    (r"\.MWT_CZ\.0\.", ".core."),
)
_DROPPED = re.compile(r"position_embedding\.pe$")
_SPARSE_KERNEL = re.compile(r"\.core\.[ABC]\.weights1$")  # FEB-w sparse Fourier kernels
_FILTER = re.compile(r"\.(ec_s|ec_d|rc_e|rc_o)$")  # fixed wavelet filters: recomputed here, only compared


def convert_official_state_dict(
    state_dict: Mapping[str, torch.Tensor], model: FEDformer, mode_indices: Mapping[str, Sequence[int]] | None = None
) -> dict[str, torch.Tensor]:
    """Map an official FEDformer state dict onto ``model``'s key layout.

    Drops the unused positional buffers, checks the fixed wavelet filters against ours, renames modules,
    squeezes kernel-1 convolutions, puts the FEB-w sparse kernels' modes first, drops the projections and
    gates ``model`` does not hold (never read), checks that the shared encoder/decoder block weights are
    equal, and adds the mode-index buffers (from ``mode_indices`` with keys ``encoder, decoder_self, cross_q,
    cross_kv``, else ``model``'s own).

    Raises:
        CheckpointError: shared block weights differ, a wavelet filter differs, or a mode list does not fit.
    """
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if _DROPPED.search(key):
            continue
        new = key
        for pattern, repl in _RENAMES:
            new = re.sub(pattern, repl, new)
        if _FILTER.search(new):
            head, name = new.rsplit(".", 1)
            ours = model.get_buffer(f"{head}.filters.{name}")
            if ours.shape != value.shape or not torch.allclose(ours, value.to(ours.dtype), atol=1e-5):
                raise CheckpointError(f"official wavelet filter {key} differs from ours: another base or order k?")
            continue
        if re.search(r"\.linear[12]\.weight$", new) and value.ndim == 3:
            value = value.squeeze(-1)  # Conv1d (out, in, 1) -> Linear (out, in)
        if _SPARSE_KERNEL.search(new) and value.ndim == 3:
            value = value.permute(2, 0, 1)  # FEB-w kernel (in, out, modes) -> ours, modes first
        if new not in own and re.search(r"\.(query|key|value)_projection\.|\.T0\.|\.Lv\.|decomp\d?\.layer\.", new):
            continue  # a projection or single-kernel gate that is never read, not kept by this model
        out[new] = value
    groups: dict[int, list[str]] = {}  # keys of one shared tensor (the block shared by all encoder layers)
    for key, value in own.items():
        groups.setdefault(value.data_ptr(), []).append(key)
    for keys in groups.values():
        present = [k for k in keys if k in out]
        if any(not torch.equal(out[present[0]], out[k]) for k in present[1:]):
            raise CheckpointError(f"official weights of the shared block differ between {present[0]} and others")
    if model.version == "fourier":
        indices = {}
        if mode_indices is not None:
            missing = set(MODE_KEYS) - set(mode_indices)
            if missing:
                raise ValueError(f"mode_indices lacks {sorted(missing)}; give all of {MODE_KEYS}")
            indices = {k: torch.as_tensor(list(v), dtype=torch.int64) for k, v in mode_indices.items()}
        slots = {
            "encoder.attn_layers.{}.attention.inner.index": "encoder",
            "decoder.layers.{}.self_attention.inner.index": "decoder_self",
            "decoder.layers.{}.cross_attention.inner.index_q": "cross_q",
            "decoder.layers.{}.cross_attention.inner.index_kv": "cross_kv",
        }
        for key in own:
            template = re.sub(r"\.\d+\.", ".{}.", key, count=1)
            if template in slots:
                out[key] = indices.get(slots[template], own[key])
                weight_key = key.rsplit(".", 1)[0] + ".weights1"
                checkable = mode_indices is not None and slots[template] != "cross_kv" and weight_key in out
                if checkable and out[weight_key].shape[-1] != len(out[key]):
                    raise CheckpointError(
                        f"{len(out[key])} mode indices for {key} but the checkpoint's {weight_key} keeps "
                        f"{out[weight_key].shape[-1]} modes; pass the mode lists of the run that saved it"
                    )
    return out


def load_official_fedformer(
    path: str | os.PathLike | Mapping[str, torch.Tensor],
    config: Mapping[str, Any] | Any,
    *,
    mode_indices: Mapping[str, Sequence[int]] | None = None,
    mode_seed: int = 2021,
) -> FEDformer:
    """Build a FEDformer from an official checkpoint (``torch.save(model.state_dict())`` by the official code).

    Args:
        path: the official ``checkpoint.pth`` (loaded with ``weights_only=True``) or an already loaded state dict.
        config: the official run's arguments (a mapping or argparse namespace with run.py names: ``seq_len``,
            ``label_len``, ``pred_len``, ``enc_in``, ``c_out``, ``d_model``, ``modes``, ``moving_avg``, ``version``,
            ``freq``, ...; run.py defaults fill the gaps).
        mode_indices: the run's Fourier mode lists (``encoder``, ``decoder_self``, ``cross_q``, ``cross_kv``),
            e.g. captured from the official blocks' ``index``/``index_q``/``index_kv``. Default: replayed from
            ``np.random.seed(mode_seed)`` as the official process draws them (right for the first run of a
            process seeded with 2021).
        mode_seed: seed to replay when ``mode_indices`` is not given.

    Returns:
        The model in eval mode; outputs match the official model's on the same inputs.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the checkpoint does not fit the config (lists missing, unexpected, mis-shaped keys).

    Example:
        >>> model = load_official_fedformer("checkpoints/ETTh1_96/checkpoint.pth", {"seq_len": 96})  # doctest: +SKIP
    """
    if isinstance(path, Mapping):
        state_dict, source = path, "official state_dict"
    else:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"official FEDformer checkpoint {os.fspath(path)!r} does not exist")
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
        source = f"official checkpoint {os.fspath(path)}"
    model = FEDformer(**_official_kwargs(config), mode_seed=mode_seed)
    converted = convert_official_state_dict(state_dict, model, mode_indices)
    load_weights(model, converted, source=source)
    return model.eval()
