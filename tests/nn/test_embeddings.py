"""Forecasting embeddings: token convolution, position code, time-feature term."""

import math

import pytest
import torch

from damokit.nn.embeddings import DataEmbedding, TokenEmbedding, sinusoidal_positions


def test_sinusoidal_positions_golden_values():
    # Vaswani et al. Sec. 3.5: PE(pos, 2i) = sin(pos / 10000^(2i/D)), PE(pos, 2i+1) = cos(...)
    pe = sinusoidal_positions(3, 4)[0]
    assert pe.shape == (3, 4)
    torch.testing.assert_close(pe[0], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    torch.testing.assert_close(pe[1], torch.tensor([math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)]))


def test_token_embedding_is_a_circular_convolution():
    emb = TokenEmbedding(2, 3)
    x = torch.randn(1, 6, 2)
    w = emb.conv.weight  # (3, 2, 3)
    xp = torch.cat([x[:, -1:], x, x[:, :1]], 1)  # circular padding 1 on both sides
    expected = torch.stack([torch.einsum("lc,dcl->d", xp[0, t : t + 3], w) for t in range(6)])
    torch.testing.assert_close(emb(x)[0], expected, rtol=1e-5, atol=1e-6)


def test_data_embedding_terms():
    emb = DataEmbedding(2, 4, d_mark=3, positional=True).eval()
    x, marks = torch.randn(2, 5, 2), torch.randn(2, 5, 3)
    value = emb.value_embedding(x)
    torch.testing.assert_close(emb(x), value + sinusoidal_positions(5, 4))
    torch.testing.assert_close(emb(x, marks), value + emb.temporal_embedding(marks) + sinusoidal_positions(5, 4))
    assert DataEmbedding(2, 4, d_mark=0).temporal_embedding is None
    with pytest.raises(ValueError, match="d_mark must be >= 0"):
        DataEmbedding(2, 4, d_mark=-1)
