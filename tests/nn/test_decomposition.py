"""Series decomposition: the moving average against an explicit loop, and the MOE mixture."""

import pytest
import torch

from damokit.nn.decomposition import MixtureDecomposition, SeriesDecomposition, moving_average


def _explicit_moving_average(x: torch.Tensor, k: int) -> torch.Tensor:
    """Reference: pad (k-1) - (k-1)//2 copies of the first step in front, (k-1)//2 of the last at the end
    (spec §4.1, official ``moving_avg``), then average each window of k steps in a Python loop."""
    end = (k - 1) // 2
    front = k - 1 - end
    padded = torch.cat([x[:, :1].repeat(1, front, 1), x, x[:, -1:].repeat(1, end, 1)], dim=1)
    return torch.stack([padded[:, t : t + k].mean(dim=1) for t in range(x.shape[1])], dim=1)


@pytest.mark.parametrize("k", [1, 2, 5, 24, 25])
def test_moving_average_matches_explicit_windows(k):
    x = torch.randn(2, 40, 3, dtype=torch.float64)
    out = moving_average(x, k)
    assert out.shape == x.shape  # length kept for odd and even k
    torch.testing.assert_close(out, _explicit_moving_average(x, k))


@pytest.mark.parametrize(("k", "length"), [(1, 6), (2, 6), (5, 6), (24, 40), (25, 9), (4, 1)])
def test_moving_average_gradient_equals_the_explicit_windows_gradient(k, length):
    # the hand-written backward (window mean of the zero-padded gradient, padding folded onto the ends)
    # against autograd through the loop reference, including series shorter than the window
    x = torch.randn(2, length, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, length, 3, dtype=torch.float64)
    (grad,) = torch.autograd.grad((moving_average(x, k) * weight).sum(), x)
    (expected,) = torch.autograd.grad((_explicit_moving_average(x, k) * weight).sum(), x)
    torch.testing.assert_close(grad, expected)
    assert torch.autograd.gradcheck(lambda t: moving_average(t, k), (x,))


def test_moving_average_even_kernel_pads_one_more_in_front():
    # k=4 on a ramp 0..9: front pad 2 (value 0), end pad 1 (value 9); first window = (0+0+0+1)/4
    x = torch.arange(10.0).view(1, 10, 1)
    out = moving_average(x, 4).flatten()
    assert out[0].item() == pytest.approx(0.25)
    assert out[-1].item() == pytest.approx((7 + 8 + 9 + 9) / 4)


def test_series_decomposition_sums_back():
    x = torch.randn(3, 30, 2)
    seasonal, trend = SeriesDecomposition(7)(x)
    torch.testing.assert_close(seasonal + trend, x)
    torch.testing.assert_close(trend, moving_average(x, 7))


def test_mixture_with_one_kernel_is_plain_moving_average():
    x = torch.randn(2, 30, 4)
    block = MixtureDecomposition([24])
    assert not hasattr(block, "layer")  # the gate would be a constant softmax of one logit
    seasonal, trend = block(x)
    torch.testing.assert_close(trend, moving_average(x, 24))
    assert MixtureDecomposition([24], keep_unused_gate=True).layer.weight.shape == (1, 1)


def test_mixture_weights_are_a_per_element_softmax():
    torch.manual_seed(0)
    x = torch.randn(2, 20, 3)
    block = MixtureDecomposition([3, 7])
    _, trend = block(x)
    # paper Eq. 10: softmax(L(x)) per scalar of x, over the K kernels
    logits = x.unsqueeze(-1) * block.layer.weight.view(-1) + block.layer.bias  # (B, L, C, K)
    w = torch.softmax(logits, dim=-1)
    expected = w[..., 0] * moving_average(x, 3) + w[..., 1] * moving_average(x, 7)
    torch.testing.assert_close(trend, expected)


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_bad_kernel_sizes_are_rejected(bad):
    with pytest.raises(ValueError, match="kernel_size must be an integer >= 1"):
        moving_average(torch.zeros(1, 5, 1), bad)
    with pytest.raises(ValueError, match="kernel_size must be an integer >= 1"):
        SeriesDecomposition(bad)


def test_mixture_needs_a_kernel():
    with pytest.raises(ValueError, match="at least one moving-average window"):
        MixtureDecomposition([])
