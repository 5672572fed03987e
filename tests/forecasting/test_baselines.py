"""repeat_last and DLinear: shapes, the reference formula, errors."""

import pytest
import torch

import damokit
from damokit.forecasting.baselines import DLinear, RepeatLast
from damokit.nn.decomposition import moving_average


def test_registered_with_the_forecasting_convention():
    for name in ("repeat_last", "repeat_last_tiny", "dlinear", "dlinear_tiny"):
        assert name in damokit.list_models()
    model = damokit.create_model("dlinear", input_size=24, horizon=12, label_len=12, enc_in=5, c_out=5, d_mark=4)
    out = model(torch.randn(3, 24, 5), torch.randn(3, 24, 4), torch.randn(3, 24, 4))
    assert out.shape == (3, 12, 5)
    assert DLinear.MULTIVARIATE and not DLinear.USES_TIME_FEATURES


def test_repeat_last_values_and_no_parameters():
    x = torch.randn(2, 10, 3)
    model = RepeatLast(input_size=10, horizon=4, enc_in=3)
    out = model(x)
    assert list(model.parameters()) == []
    torch.testing.assert_close(out, x[:, -1:].expand(-1, 4, -1))
    torch.testing.assert_close(
        RepeatLast(input_size=10, horizon=4, enc_in=3, c_out=1)(x), x[:, -1:, -1:].expand(-1, 4, -1)
    )


@pytest.mark.parametrize("individual", [False, True])
def test_dlinear_matches_explicit_linear_maps(individual):
    torch.manual_seed(0)
    L, H, C = 20, 6, 3
    model = DLinear(input_size=L, horizon=H, enc_in=C, individual=individual, kernel_size=5)
    x = torch.randn(4, L, C, dtype=torch.float64)
    model = model.double()
    # reference: the official formulation, one nn.Linear(L, H) per part (and channel), loop over channels
    trend = moving_average(x, 5)
    seasonal = x - trend
    want = torch.empty(4, H, C, dtype=torch.float64)
    for c in range(C):
        k = c if individual else 0
        s = seasonal[:, :, c] @ model.weight[0, k].T + model.bias[0, k]
        t = trend[:, :, c] @ model.weight[1, k].T + model.bias[1, k]
        want[:, :, c] = s + t
    torch.testing.assert_close(model(x), want)


def test_dlinear_init_bound_and_gradients():
    model = DLinear(input_size=16, horizon=4, enc_in=2)
    assert model.weight.abs().max() <= 1 / 4  # nn.Linear default: U(-1/sqrt(L), 1/sqrt(L))
    model(torch.randn(2, 16, 2)).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_bad_arguments():
    with pytest.raises(ValueError, match="horizon must be a positive integer, got 0"):
        DLinear(input_size=16, horizon=0, enc_in=2)
    with pytest.raises(ValueError, match="c_out must be in \\[1, enc_in=2\\], got 3"):
        RepeatLast(input_size=16, horizon=4, enc_in=2, c_out=3)
    with pytest.raises(ValueError, match="built for input_size=16, got inputs of length 12"):
        DLinear(input_size=16, horizon=4, enc_in=2)(torch.randn(1, 12, 2))
