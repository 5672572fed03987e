"""FEDformer-f: mode selection, the vectorised Fourier blocks against reference formulations, the model's
shapes and numerics modes, state-dict round trips and official-checkpoint conversion."""

import math

import numpy as np
import pytest
import torch

import damokit
from damokit.engine import CheckpointError, load_checkpoint, save_checkpoint
from damokit.forecasting import FEDformer, load_official_fedformer
from damokit.forecasting.fedformer import convert_official_state_dict, official_mode_indices
from damokit.forecasting.fourier import FourierBlock, FourierCrossAttention, _complex_tanh, select_modes

SMALL = dict(d_model=16, n_heads=8, d_ff=16, dropout=0.0)  # E = 2: every shape of the paper model, cheaply


# ---------------------------------------------------------------- mode selection (spec §7.1)


@pytest.mark.parametrize(
    "input_size, horizon, expected",
    [
        (96, 96, {"encoder": 48, "decoder_self": 64, "cross_q": 64, "cross_kv": 48}),
        (96, 720, {"encoder": 48, "decoder_self": 64, "cross_q": 64, "cross_kv": 48}),
        (36, 24, {"encoder": 18, "decoder_self": 21, "cross_q": 21, "cross_kv": 18}),
    ],
)
def test_mode_counts(input_size, horizon, expected):
    cfg = {"seq_len": input_size, "label_len": input_size // 2, "pred_len": horizon}
    counts = {k: len(v) for k, v in official_mode_indices(cfg).items()}
    assert counts == expected


def test_seed_2021_replays_the_official_decoder_modes():
    # spec §16.2 (checked against the official process): the first decoder list for I=96, O=96 omits these bins
    lists = official_mode_indices({"seq_len": 96, "label_len": 48, "pred_len": 96})
    assert sorted(set(range(72)) - set(lists["decoder_self"])) == [11, 15, 17, 19, 33, 40, 50, 53]
    assert lists["encoder"] == list(range(48))  # all 48 candidates kept


def test_low_modes_and_errors():
    rng = np.random.RandomState(0)
    assert select_modes(20, 4, "low", rng).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="mode_select must be one of"):
        select_modes(20, 4, "high", rng)
    with pytest.raises(ValueError, match="modes must be >= 1"):
        select_modes(20, 0, "low", rng)
    with pytest.raises(ValueError, match="seq_len must be >= 2"):
        select_modes(1, 4, "low", rng)


# ---------------------------------------------------------------- Fourier blocks vs references


def _block(L=24, modes=12, method="random", corrected=False, seed=0, D=16, H=4):
    torch.manual_seed(seed)
    block = FourierBlock(D, H, L, modes, method, np.random.RandomState(seed), corrected=corrected)
    with torch.no_grad():  # O(1) weights so that differences are visible
        block.weights1.copy_(torch.randn_like(block.weights1))
    return block


def _loop_fourier_block(block, q):
    """Reference: the official per-mode loop (spec §7.3), one small einsum per kept mode."""
    B, L, H, E = q.shape
    x_ft = torch.fft.rfft(q.permute(0, 2, 3, 1), dim=-1)
    out_ft = torch.zeros(B, H, E, L // 2 + 1, dtype=torch.cfloat)
    for m, i in enumerate(block.index.tolist()):
        target = i if block.corrected else m
        out_ft[..., target] = torch.einsum("bhi,hio->bho", x_ft[..., i], block.weights1[..., m])
    out = torch.fft.irfft(out_ft, n=L)  # (B, H, E, L)
    return out.permute(0, 3, 1, 2).reshape(B, L, -1) if block.corrected else out.reshape(B, L, -1)


@pytest.mark.parametrize("corrected", [False, True])
def test_fourier_block_matches_per_mode_loop(corrected):
    block = _block(L=24, modes=7, corrected=corrected)
    q = torch.randn(3, 24, 4, 4)
    torch.testing.assert_close(block(q), _loop_fourier_block(block, q), rtol=1e-5, atol=1e-5)


def test_fourier_block_with_all_modes_equals_dense_dft():
    """All L/2 non-Nyquist bins kept: out = Re(Y G) with X = x F, a dense DFT-matrix formulation."""
    L, H, E = 16, 2, 3
    block = _block(L=L, modes=L, method="low", D=H * E, H=H)
    assert block.index.tolist() == list(range(L // 2))
    q = torch.randn(2, L, H, E, dtype=torch.float64)
    t = torch.arange(L, dtype=torch.float64)
    m = torch.arange(L // 2, dtype=torch.float64)
    F = torch.exp(-2j * math.pi * torch.outer(t, m) / L)  # (L, M) forward DFT bins 0..L/2-1
    c = torch.full((L // 2,), 2.0, dtype=torch.float64)
    c[0] = 1.0  # the DC bin counts once, every other kept bin twice (its conjugate twin); no Nyquist bin
    G = (c[:, None] / L) * torch.exp(2j * math.pi * torch.outer(m, t) / L)  # (M, L) inverse
    X = torch.einsum("blhe,lm->bhem", q.to(torch.complex128), F)
    Y = torch.einsum("bhem,heom->bhom", X, block.weights1.to(torch.complex128))
    Y = torch.complex(Y.real, torch.where(m == 0, 0.0, Y.imag))  # irfft ignores the DC bin's imaginary part
    dense = torch.einsum("bhom,ml->bhol", Y, G).real  # (B, H, E, L)
    out = block(q.float()).double()
    torch.testing.assert_close(out, dense.reshape(2, L, H * E), rtol=1e-4, atol=1e-4)  # faithful reshape


def test_layout_flag_is_reshape_or_permute():
    q = torch.randn(2, 24, 4, 4)
    faithful, corrected = _block(modes=12), _block(modes=12, corrected=True)  # all 12 bins: same placement
    with torch.no_grad():
        corrected.weights1.copy_(faithful.weights1)
    a, b = faithful(q), corrected(q)
    # same numbers, arranged differently: faithful = (B, H, E, L) buffer read as (B, L, H*E)
    torch.testing.assert_close(a, b.reshape(2, 24, 4, 4).permute(0, 2, 3, 1).reshape(2, 24, 16))
    assert not torch.allclose(a, b)


def _heads_first(out, corrected, H=4, E=4):
    """Undo either layout: (B, L, D) -> (B, H, E, L)."""
    B, L, _ = out.shape
    return out.reshape(B, L, H, E).permute(0, 2, 3, 1) if corrected else out.reshape(B, H, E, L)


@pytest.mark.parametrize("method, same", [("low", True), ("random", False)])
def test_placement_matters_only_when_kept_bins_are_not_the_lowest(method, same):
    q = torch.randn(2, 24, 4, 4)
    official, corrected = _block(modes=5, method=method, seed=3), _block(modes=5, method=method, seed=3, corrected=True)
    assert torch.equal(official.weights1, corrected.weights1)
    a, b = _heads_first(official(q), False), _heads_first(corrected(q), True)
    assert torch.allclose(a, b, atol=1e-6) is same


def _cross(corrected=False, activation="tanh", Lq=20, Lkv=24, modes=6):
    torch.manual_seed(0)
    block = FourierCrossAttention(
        16, 4, Lq, Lkv, modes, "random", np.random.RandomState(0), activation=activation, corrected=corrected
    )
    with torch.no_grad():
        block.weights1.copy_(torch.randn_like(block.weights1) * 0.3)
    return block


def _loop_cross(block, q, k, v):
    """Reference: the official FourierCrossAttention loops (spec §8) with the corrections as options."""
    B, L, H, E = q.shape
    xq, xk, xv = (t.permute(0, 2, 3, 1) for t in (q, k, v))
    q_ft = torch.stack([torch.fft.rfft(xq, dim=-1)[..., j] for j in block.index_q.tolist()], -1)
    k_ft = torch.stack([torch.fft.rfft(xk, dim=-1)[..., j] for j in block.index_kv.tolist()], -1)
    v_ft = torch.stack([torch.fft.rfft(xv, dim=-1)[..., j] for j in block.index_kv.tolist()], -1)
    a = torch.einsum("bhex,bhey->bhxy", q_ft, k_ft)
    if block.activation == "tanh":
        a = a.tanh()
    else:
        a = torch.complex(torch.softmax(a.abs(), dim=-1), torch.zeros_like(a.real))
    agg = torch.einsum("bhxy,bhey->bhex", a, v_ft if block.corrected else k_ft)
    y = torch.einsum("bhex,heox->bhox", agg, block.weights1)
    out_ft = torch.zeros(B, H, E, L // 2 + 1, dtype=torch.cfloat)
    for m, j in enumerate(block.index_q.tolist()):
        out_ft[..., j] = y[..., m]
    scale = 1.0 if block.corrected else 16 * 16
    out = torch.fft.irfft(out_ft / scale, n=L)
    return out.permute(0, 3, 1, 2).reshape(B, L, -1) if block.corrected else out.reshape(B, L, -1)


@pytest.mark.parametrize("corrected, activation", [(False, "tanh"), (False, "softmax"), (True, "tanh")])
def test_fourier_cross_attention_matches_loop(corrected, activation):
    block = _cross(corrected, activation)
    q, k, v = torch.randn(2, 20, 4, 4) * 0.3, torch.randn(2, 24, 4, 4) * 0.3, torch.randn(2, 24, 4, 4)
    out = block(q, k, v)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, _loop_cross(block, q, k, v), rtol=1e-4, atol=1e-6)


def test_cross_attention_official_ignores_values_corrected_uses_them():
    q, k, v = torch.randn(2, 20, 4, 4) * 0.3, torch.randn(2, 24, 4, 4) * 0.3, torch.randn(2, 24, 4, 4)
    official, corrected = _cross(False), _cross(True)
    torch.testing.assert_close(official(q, k, v), official(q, k, torch.zeros_like(v)))
    assert not torch.allclose(corrected(q, k, v), corrected(q, k, torch.zeros_like(v)))
    with pytest.raises(ValueError, match="cross activation must be 'tanh' or 'softmax'"):
        _cross(activation="relu")


# ---------------------------------------------------------------- the model


@pytest.mark.parametrize("input_size, horizon, channels", [(96, 96, 7), (96, 192, 8), (36, 24, 7)])
def test_shapes_end_to_end(input_size, horizon, channels):
    model = FEDformer(input_size=input_size, horizon=horizon, enc_in=channels, **SMALL).eval()
    x = torch.randn(2, input_size, channels)
    marks = torch.rand(2, input_size, 4), torch.rand(2, input_size // 2 + horizon, 4)
    assert model(x, *marks).shape == (2, horizon, channels)
    assert model(x).shape == (2, horizon, channels)  # time features are optional


def test_official_parameter_count():
    # spec §1: 16,303,127 parameters by numel (complex counted once, shared encoder weight once), official layout
    model = damokit.create_model("fedformer_fourier", keep_unused_projections=True)
    assert sum(p.numel() for p in model.parameters()) == 16_303_127
    enc = model.encoder.attn_layers
    assert enc[0].attention.inner.weights1 is enc[1].attention.inner.weights1  # shared, as officially
    assert tuple(enc[0].attention.inner.weights1.shape) == (8, 64, 64, 48)


def test_without_marks_the_temporal_embedding_adds_nothing():
    model = FEDformer(input_size=32, horizon=8, enc_in=2, **SMALL).eval()
    with torch.no_grad():
        model.enc_embedding.temporal_embedding.weight.zero_()
        model.dec_embedding.temporal_embedding.weight.zero_()
    x = torch.randn(2, 32, 2)
    marks = torch.rand(2, 32, 4), torch.rand(2, 24, 4)
    torch.testing.assert_close(model(x), model(x, *marks))


def test_mode_buffers_survive_a_state_dict_round_trip(tmp_path):
    a = FEDformer(input_size=48, horizon=48, enc_in=2, modes=8, mode_seed=1, **SMALL).eval()
    b = FEDformer(input_size=48, horizon=48, enc_in=2, modes=8, mode_seed=2, **SMALL).eval()
    x = torch.randn(2, 48, 2)
    assert not torch.equal(
        a.decoder.layers[0].self_attention.inner.index, b.decoder.layers[0].self_attention.inner.index
    )
    path = save_checkpoint(tmp_path / "m.safetensors", {"model": a.state_dict()})
    b.load_state_dict(load_checkpoint(path)["model"])
    assert torch.equal(a.decoder.layers[0].self_attention.inner.index, b.decoder.layers[0].self_attention.inner.index)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_corrected_differs_from_official_and_unshares_blocks():
    kw = dict(input_size=48, horizon=48, enc_in=2, modes=8, **SMALL)
    torch.manual_seed(0)
    official = FEDformer(**kw).eval()
    torch.manual_seed(0)
    corrected = FEDformer(**kw, corrected=True).eval()
    enc = corrected.encoder.attn_layers
    assert enc[0].attention.inner is not enc[1].attention.inner
    assert hasattr(corrected.decoder.layers[0].cross_attention, "value_projection")
    assert not hasattr(official.decoder.layers[0].cross_attention, "value_projection")
    x = torch.randn(2, 48, 2)
    assert not torch.allclose(official(x), corrected(x), atol=1e-4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(version="spline"), "version must be one of"),
        (dict(horizon=0), "horizon must be a positive integer"),
        (dict(input_size=-1), "input_size must be a positive integer"),
        (dict(label_len=40), r"label_len must be in \[0, input_size=32\]"),
        (dict(e_layers=0), "e_layers and d_layers must be >= 1"),
        (dict(d_model=18, n_heads=4), "d_model=18 must be divisible by n_heads=4"),
        (dict(d_mark=-1), "d_mark must be >= 0"),
        (dict(activation="tanh"), "activation must be one of"),
    ],
)
def test_constructor_errors(kwargs, match):
    base = dict(input_size=32, horizon=8, enc_in=2, **SMALL)
    with pytest.raises(ValueError, match=match):
        FEDformer(**{**base, **kwargs})


def test_forward_errors():
    model = FEDformer(input_size=32, horizon=8, enc_in=2, **SMALL)
    with pytest.raises(ValueError, match=r"expects x of shape \(B, input_size=32, enc_in=2\), got \(2, 30, 2\)"):
        model(torch.randn(2, 30, 2))
    with pytest.raises(ValueError, match=r"expects y_mark of shape \(B=2, 24, d_mark=4\)"):
        model(torch.randn(2, 32, 2), None, torch.randn(2, 20, 4))


# ---------------------------------------------------------------- official checkpoints


def _official_layout(model: FEDformer) -> dict[str, torch.Tensor]:
    """Synthetic official state dict from a model built with keep_unused_projections=True: the inverse of the
    converter's renames, kernel-1 Linear -> Conv1d weights, the unused positional buffers (spec §12 key list)."""
    out = {}
    for key, value in model.state_dict().items():
        if key.endswith((".index", ".index_q", ".index_kv")):
            continue  # the official code keeps mode lists outside the state dict
        key = key.replace(".value_embedding.conv.", ".value_embedding.tokenConv.")
        key = key.replace(".temporal_embedding.", ".temporal_embedding.embed.")
        key = key.replace(".inner.", ".inner_correlation.")
        key = key.replace(".core.filters.", ".MWT_CZ.0.").replace(".core.", ".MWT_CZ.0.")
        if key.endswith(".MWT_CZ.0.A.weights1") or key.endswith((".MWT_CZ.0.B.weights1", ".MWT_CZ.0.C.weights1")):
            value = value.permute(1, 2, 0)  # official sparse kernels are (in, out, modes)
        if ".ffn.linear" in key:
            key = key.replace(".ffn.linear", ".conv")
            value = value.unsqueeze(-1)
        out[key] = value.clone()
    for emb in ("enc_embedding", "dec_embedding"):
        out[f"{emb}.position_embedding.pe"] = torch.zeros(1, 5000, model.enc_embedding.d_model)
    return out


OFFICIAL_CFG = dict(seq_len=32, label_len=16, pred_len=24, enc_in=3, c_out=3, d_model=16, n_heads=8, d_ff=16,
                    modes=8, moving_avg=[5], dropout=0.05, version="Fourier", freq="h")  # fmt: skip


def _source_model(**overrides):
    torch.manual_seed(0)
    return FEDformer(input_size=32, horizon=24, enc_in=3, d_model=16, n_heads=8, d_ff=16, modes=8,
                     moving_avg=(5,), keep_unused_projections=True, **overrides).eval()  # fmt: skip


def test_official_layout_keys_follow_the_spec():
    keys = _official_layout(_source_model())
    for key in [
        "decomp.layer.weight",
        "enc_embedding.value_embedding.tokenConv.weight",
        "enc_embedding.position_embedding.pe",
        "encoder.attn_layers.1.attention.inner_correlation.weights1",
        "encoder.attn_layers.0.attention.key_projection.bias",
        "encoder.attn_layers.0.conv1.weight",
        "encoder.norm.layernorm.weight",
        "decoder.layers.0.cross_attention.inner_correlation.weights1",
        "decoder.layers.0.projection.weight",
        "decoder.projection.bias",
    ]:
        assert key in keys, key
    assert keys["encoder.attn_layers.0.conv1.weight"].shape == (16, 16, 1)


def test_load_official_checkpoint_reproduces_outputs(tmp_path):
    source = _source_model()
    path = tmp_path / "checkpoint.pth"
    torch.save(_official_layout(source), path)
    model = load_official_fedformer(path, OFFICIAL_CFG)
    assert not model.training
    assert not hasattr(model.encoder.attn_layers[0].attention, "key_projection")  # unused weights dropped
    x, xm, ym = torch.randn(2, 32, 3), torch.rand(2, 32, 4), torch.rand(2, 40, 4)
    torch.testing.assert_close(model(x, xm, ym), source(x, xm, ym), rtol=0, atol=1e-6)


def test_load_official_with_explicit_mode_indices():
    source = _source_model(mode_seed=7)
    lists = {
        "encoder": source.encoder.attn_layers[0].attention.inner.index.tolist(),
        "decoder_self": source.decoder.layers[0].self_attention.inner.index.tolist(),
        "cross_q": source.decoder.layers[0].cross_attention.inner.index_q.tolist(),
        "cross_kv": source.decoder.layers[0].cross_attention.inner.index_kv.tolist(),
    }
    x = torch.randn(2, 32, 3)
    replayed = load_official_fedformer(_official_layout(source), OFFICIAL_CFG)  # seed 2021: other modes
    assert not torch.allclose(replayed(x), source(x))
    model = load_official_fedformer(_official_layout(source), OFFICIAL_CFG, mode_indices=lists)
    torch.testing.assert_close(model(x), source(x), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="mode_indices lacks \\['cross_kv'\\]"):
        partial = {k: v for k, v in lists.items() if k != "cross_kv"}
        load_official_fedformer(_official_layout(source), OFFICIAL_CFG, mode_indices=partial)
    with pytest.raises(CheckpointError, match="3 mode indices for .* keeps 8 modes"):
        load_official_fedformer(_official_layout(source), OFFICIAL_CFG, mode_indices={**lists, "cross_q": [0, 1, 2]})


def test_load_official_errors(tmp_path):
    sd = _official_layout(_source_model())
    with pytest.raises(FileNotFoundError, match="official FEDformer checkpoint .*nope.pth' does not exist"):
        load_official_fedformer(tmp_path / "nope.pth", OFFICIAL_CFG)
    broken = {k: v for k, v in sd.items() if k != "decoder.projection.bias"}
    with pytest.raises(CheckpointError, match="missing: decoder.projection.bias"):
        load_official_fedformer(broken, OFFICIAL_CFG)
    with pytest.raises(CheckpointError, match=r"mis-shaped: .*weights1: checkpoint \(8, 2, 2, 8\) vs model"):
        load_official_fedformer(sd, {**OFFICIAL_CFG, "modes": 4})
    with pytest.raises(CheckpointError, match="unexpected: extra.weight"):
        load_official_fedformer({**sd, "extra.weight": torch.zeros(1)}, OFFICIAL_CFG)
    unshared = dict(sd)
    key = "encoder.attn_layers.1.attention.inner_correlation.weights1"
    unshared[key] = sd[key] + 1
    with pytest.raises(CheckpointError, match="weights of the shared block differ between encoder"):
        load_official_fedformer(unshared, OFFICIAL_CFG)
    with pytest.raises(ValueError, match="config version must be 'Fourier' or 'Wavelets'"):
        load_official_fedformer(sd, {**OFFICIAL_CFG, "version": "fourier"})
    with pytest.raises(ValueError, match="only embed='timeF'"):
        load_official_fedformer(sd, {**OFFICIAL_CFG, "embed": "fixed"})
    with pytest.raises(ValueError, match="config freq must be one of"):
        load_official_fedformer(sd, {**OFFICIAL_CFG, "freq": "y"})
    with pytest.raises(ValueError, match="dec_in must equal enc_in"):
        load_official_fedformer(sd, {**OFFICIAL_CFG, "dec_in": 4})


def test_converter_keeps_projections_for_a_keeping_model():
    source = _source_model()
    converted = convert_official_state_dict(_official_layout(source), source)
    assert "encoder.attn_layers.0.attention.key_projection.weight" in converted


def test_official_wavelet_weights_load_with_the_sparse_kernels_modes_first():
    torch.manual_seed(0)
    source = FEDformer(input_size=32, horizon=24, enc_in=3, d_model=16, n_heads=8, d_ff=16, moving_avg=(5,),
                       version="wavelet", wavelet_k=2, wavelet_alpha=4, wavelet_c=2, wavelet_cross_c=2,
                       keep_unused_projections=True).eval()  # fmt: skip
    official = _official_layout(source)
    kernel = "encoder.attn_layers.0.attention.inner_correlation.MWT_CZ.0.A.weights1"
    assert official[kernel].shape == (4, 4, 4) and not torch.equal(official[kernel], source.state_dict()[kernel.replace(
        "inner_correlation.MWT_CZ.0", "inner.core")])  # fmt: skip
    converted = convert_official_state_dict(official, source)
    for key, value in source.state_dict().items():
        if key in converted:
            assert torch.equal(converted[key], value), key
    x, x_mark, y_mark = torch.randn(2, 32, 3), torch.randn(2, 32, 4), torch.randn(2, 40, 4)
    torch.manual_seed(1)
    target = FEDformer(input_size=32, horizon=24, enc_in=3, d_model=16, n_heads=8, d_ff=16, moving_avg=(5,),
                       version="wavelet", wavelet_k=2, wavelet_alpha=4, wavelet_c=2, wavelet_cross_c=2,
                       keep_unused_projections=True).eval()  # fmt: skip
    target.load_state_dict(converted)
    torch.testing.assert_close(target(x, x_mark, y_mark), source(x, x_mark, y_mark))


def test_complex_tanh_from_real_ops_equals_torch_complex_tanh_and_its_gradient():
    gen = torch.Generator().manual_seed(0)
    real = torch.cat([torch.randn(500, generator=gen) * 3, torch.tensor([0.0, 30.0, -60.0, 400.0])])
    imag = torch.cat([torch.randn(500, generator=gen) * 3, torch.tensor([1.0, -2.0, 100.0, 0.5])])
    z = torch.complex(real, imag).to(torch.complex128).requires_grad_()
    ours = _complex_tanh(z)
    assert torch.isfinite(torch.view_as_real(ours)).all()  # no overflow at |Re z| = 400
    torch.testing.assert_close(ours, z.tanh())
    weight = torch.randn(z.shape, dtype=torch.complex128, generator=gen)
    (grad,) = torch.autograd.grad((ours * weight).real.sum(), z)
    (expected,) = torch.autograd.grad((z.tanh() * weight).real.sum(), z)
    torch.testing.assert_close(grad, expected)


def test_complex_tanh_stays_accurate_next_to_its_poles_in_float32():
    """Near ``a = 0, b = pi/2 + k pi`` the value is large but finite; a cancelling denominator made it inf/NaN
    (a paper-size Exchange run stopped on a NaN loss from it)."""
    gen = torch.Generator().manual_seed(0)
    n = 100_000
    real = torch.randn(n, generator=gen) * 1e-3
    imag = math.pi / 2 + torch.randint(-3, 4, (n,), generator=gen) * math.pi + torch.randn(n, generator=gen) * 1e-3
    z = torch.complex(real, imag)  # complex64
    ours, reference = _complex_tanh(z), z.to(torch.complex128).tanh()
    assert torch.isfinite(torch.view_as_real(ours)).all()
    relative = (ours.to(torch.complex128) - reference).abs() / reference.abs()
    assert relative.max() < 1e-6, relative.max()  # as accurate as torch.tanh in complex64 (2.5e-7)
