"""FEDformer's paper baselines: Autoformer (auto-correlation), Informer (ProbSparse attention, distilling),
and the vanilla Transformer, against reference formulations."""

import math

import pytest
import torch

import damokit
from damokit.forecasting.autoformer import AutoCorrelation, Autoformer
from damokit.forecasting.informer import DistilLayer, Informer, ProbAttention
from damokit.forecasting.transformer import Transformer
from damokit.nn.attention import FullAttention

TINY = dict(input_size=32, horizon=8, label_len=16, enc_in=3, d_model=16, n_heads=2, d_ff=16, dropout=0.0)
MODELS = [Autoformer, Informer, Transformer]


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_shapes_and_optional_marks(cls):
    model = cls(**TINY).eval()
    x = torch.randn(2, 32, 3)
    marks = torch.rand(2, 32, 4), torch.rand(2, 24, 4)
    assert model(x, *marks).shape == (2, 8, 3)
    assert model(x).shape == (2, 8, 3)
    assert cls.MULTIVARIATE and cls.USES_TIME_FEATURES


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_input_errors(cls):
    with pytest.raises(ValueError, match="horizon must be a positive integer, got 0"):
        cls(**{**TINY, "horizon": 0})
    with pytest.raises(ValueError, match=r"expects x of shape \(B, input_size=32, enc_in=3\)"):
        cls(**TINY)(torch.randn(2, 32, 4))


def test_registered_paper_sizes():
    for name in ("autoformer", "informer", "transformer"):
        info = damokit.model_info(name)
        assert info["task"] == "forecasting" and info["input_layout"] == "(B, L, C)"
    model = damokit.create_model("transformer")
    assert model.encoder.attn_layers[0].ffn.fc1.weight.shape == (2048, 512)


# ---------------------------------------------------------------- Autoformer


def _loop_autocorrelation(q, k, v, factor, training):
    """Reference: official ``time_delay_agg_training/inference`` with a Python loop over lags."""
    B, L, H, E = q.shape
    corr = torch.fft.irfft(
        torch.fft.rfft(q.permute(0, 2, 3, 1), dim=-1) * torch.conj(torch.fft.rfft(k.permute(0, 2, 3, 1), dim=-1)),
        n=L,
        dim=-1,
    )
    values = v.permute(0, 2, 3, 1)
    top_k = int(factor * math.log(L))
    mean_value = corr.mean(1).mean(1)  # (B, L)
    out = torch.zeros_like(values)
    if training:
        index = torch.topk(mean_value.mean(0), top_k).indices
        w = torch.softmax(torch.stack([mean_value[:, index[i]] for i in range(top_k)], -1), -1)
        for i in range(top_k):
            out = out + torch.roll(values, -int(index[i]), -1) * w[:, i, None, None, None]
    else:
        weights, delay = torch.topk(mean_value, top_k, dim=-1)
        w = torch.softmax(weights, -1)
        doubled = values.repeat(1, 1, 1, 2)
        base = torch.arange(L).expand(B, H, E, L)
        for i in range(top_k):
            pattern = torch.gather(doubled, -1, base + delay[:, i, None, None, None])
            out = out + pattern * w[:, i, None, None, None]
    return out.permute(0, 3, 1, 2).reshape(B, L, -1)


@pytest.mark.parametrize("training", [True, False])
def test_autocorrelation_matches_loop(training):
    q, k, v = torch.randn(3, 24, 2, 4), torch.randn(3, 24, 2, 4), torch.randn(3, 24, 2, 4)
    block = AutoCorrelation(factor=3).train(training)
    torch.testing.assert_close(block(q, k, v), _loop_autocorrelation(q, k, v, 3, training), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("training", [True, False])
def test_autocorrelation_gradients_match_loop(training):
    """The FFT aggregation back-propagates into q, k (through the lag weights) and v as the roll loop does."""
    g = torch.Generator().manual_seed(1)
    inputs = [torch.randn(2, 30, 2, 3, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    upstream = torch.randn(2, 30, 6, generator=g, dtype=torch.float64)
    block = AutoCorrelation(factor=2).train(training)
    ours = torch.autograd.grad((block(*inputs) * upstream).sum(), inputs)
    ref = torch.autograd.grad((_loop_autocorrelation(*inputs, 2, training) * upstream).sum(), inputs)
    for a, b in zip(ours, ref):
        assert a.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_autocorrelation_pads_or_truncates_keys():
    block = AutoCorrelation(factor=2).eval()
    q = torch.randn(2, 20, 2, 4)
    k, v = torch.randn(2, 12, 2, 4), torch.randn(2, 12, 2, 4)
    padded = torch.cat([k, torch.zeros(2, 8, 2, 4)], 1), torch.cat([v, torch.zeros(2, 8, 2, 4)], 1)
    torch.testing.assert_close(block(q, k, v), block(q, *padded))
    with pytest.raises(ValueError, match="factor must be >= 1"):
        AutoCorrelation(factor=0)


# ---------------------------------------------------------------- Informer


def _to_heads_first(out, H, E):
    """Undo the official layout quirk: (B, L, H*E) read from a (B, H, L, E) buffer."""
    B, L, _ = out.shape
    return out.reshape(B, H, L, E).transpose(1, 2).reshape(B, L, H * E)


@pytest.mark.parametrize("causal", [False, True])
def test_probattention_with_every_query_active_is_full_attention(causal):
    # factor so large that n_top = L: every query is scored against every key, as in full attention
    q, k, v = torch.randn(2, 10, 2, 4), torch.randn(2, 10, 2, 4), torch.randn(2, 10, 2, 4)
    full = FullAttention(causal=causal)(q, k, v)
    corrected = ProbAttention(50, causal=causal, corrected=True).eval()
    official = ProbAttention(50, causal=causal).eval()
    torch.testing.assert_close(corrected(q, k, v), full, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(_to_heads_first(official(q, k, v), 2, 4), full, rtol=1e-5, atol=1e-6)


def test_probattention_lazy_queries_get_the_mean_value():
    q, k, v = torch.randn(1, 30, 1, 4), torch.randn(1, 30, 1, 4), torch.randn(1, 30, 1, 4)
    out = ProbAttention(1, corrected=True).eval()(q, k, v)  # u = ceil(ln 30) = 4 active queries
    is_mean = torch.isclose(out[0], v[0, :, 0].mean(0).expand(30, 4), atol=1e-6).all(-1)
    assert int(is_mean.sum()) == 30 - 4


def test_probattention_eval_is_deterministic_and_errors():
    block = ProbAttention(1).eval()
    q = torch.randn(2, 30, 2, 4)
    torch.testing.assert_close(block(q, q, q), block(q, q, q), rtol=0, atol=0)
    with pytest.raises(ValueError, match="causal ProbAttention needs equal query and key lengths, got 10 and 12"):
        ProbAttention(1, causal=True)(torch.randn(1, 10, 1, 4), torch.randn(1, 12, 1, 4), torch.randn(1, 12, 1, 4))
    with pytest.raises(ValueError, match="factor must be >= 1"):
        ProbAttention(0)


def test_distilling_halves_the_encoder_length():
    assert DistilLayer(8)(torch.randn(2, 96, 8)).shape == (2, 49, 8)  # spec §14: 96 -> 49


def test_informer_corrected_differs():
    torch.manual_seed(0)
    a = Informer(**TINY).eval()
    torch.manual_seed(0)
    b = Informer(**TINY, corrected=True).eval()
    x = torch.randn(2, 32, 3)
    assert not torch.allclose(a(x), b(x), atol=1e-5)


# ---------------------------------------------------------------- Transformer


def test_full_attention_is_causal_when_asked():
    q = torch.randn(1, 8, 2, 4)
    att = FullAttention(causal=True)
    changed = q.clone()
    changed[:, 5:] += 1.0  # the future changes; outputs before step 5 must not
    torch.testing.assert_close(att(q, q, q)[:, :5], att(changed, changed, changed)[:, :5])


def test_transformer_decoder_sees_only_the_label_window():
    model = Transformer(**TINY).eval()
    x = torch.randn(2, 32, 3)
    other = x.clone()
    other[:, 0] += 5.0  # outside the decoder's label window, but inside the encoder's input: output changes
    assert not torch.allclose(model(x), model(other))
