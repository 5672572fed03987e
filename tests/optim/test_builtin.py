"""torch's Adam/AdamW as the engine builds them: multi-tensor kernels by default, same updates as the loop."""

import pytest
import torch

from damokit.engine.loop import build_optimizer


def _train(opt_name: str, steps: int = 20, **kwargs) -> tuple[torch.optim.Optimizer, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt = build_optimizer(opt_name, model.parameters(), lr=1e-2, weight_decay=0.01, **kwargs)
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    for _ in range(steps):
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
    return opt, torch.cat([p.detach().flatten() for p in model.parameters()])


def test_adam_and_adamw_are_fused_by_default_and_match_the_per_tensor_loop():
    for name in ("adam", "adamw"):
        fused, weights = _train(name)
        loop, reference = _train(name, fused=False)
        assert fused.defaults["fused"] and not loop.defaults["fused"]
        torch.testing.assert_close(weights, reference, rtol=1e-5, atol=1e-6)


def test_an_explicit_choice_and_param_groups_are_kept():
    model = torch.nn.Linear(3, 2)
    groups = [{"params": iter([model.weight]), "weight_decay": 0.1}, {"params": iter([model.bias])}]
    opt = build_optimizer("adamw", groups, lr=1e-3)
    assert [len(g["params"]) for g in opt.param_groups] == [1, 1] and opt.defaults["fused"]
    assert not build_optimizer("adam", model.parameters(), lr=1e-3, foreach=True).defaults.get("fused")
    double = torch.nn.Linear(3, 2).double()
    assert build_optimizer("adam", double.parameters(), lr=1e-3).defaults["fused"]  # any float dtype fuses


def _train_complex(name: str, steps: int, opt=None, **kwargs):
    """A complex and a real parameter trained together; returns the optimizer and both parameters."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(8, 8, dtype=torch.cfloat))
    b = torch.nn.Parameter(torch.randn(8))
    opt = opt or build_optimizer(name, [w, b], lr=1e-2, weight_decay=0.01, **kwargs)
    for _ in range(steps):
        opt.zero_grad()
        ((w @ torch.ones(8, dtype=torch.cfloat)).abs().sum() * b.square().sum()).backward()
        opt.step()
    return opt, w, b


def test_complex_parameters_are_fused_as_real_views_with_the_same_updates():
    for name in ("adam", "adamw"):
        fast, w_fast, b_fast = _train_complex(name, 10)
        loop, w_loop, b_loop = _train_complex(name, 10, foreach=False)
        assert fast.defaults["fused"] and not loop.defaults["foreach"]
        assert all(not p.is_complex() for g in fast.param_groups for p in g["params"])
        torch.testing.assert_close(w_fast.detach(), w_loop.detach())
        torch.testing.assert_close(b_fast.detach(), b_loop.detach())
        fast.zero_grad()
        ((w_fast @ torch.ones(8, dtype=torch.cfloat)).abs().sum() * b_fast.square().sum()).backward()  # new grads
        fast.zero_grad(set_to_none=False)
        assert w_fast.grad is not None and not w_fast.grad.any()  # zeroed in place, through the view
        fast.zero_grad()
        assert w_fast.dtype == torch.cfloat and w_fast.grad is None  # zero_grad reaches the parameter itself


def test_complex_moments_saved_by_the_foreach_kernel_resume_in_the_fused_one():
    straight, w_ref, _ = _train_complex("adam", 10, foreach=True)
    half, w, b = _train_complex("adam", 5, foreach=True)
    assert any(v.is_complex() for s in half.state_dict()["state"].values() for v in s.values())
    fused = build_optimizer("adam", [w, b], lr=1e-2, weight_decay=0.01)
    fused.load_state_dict(half.state_dict())
    for _ in range(5):
        fused.zero_grad()
        ((w @ torch.ones(8, dtype=torch.cfloat)).abs().sum() * b.square().sum()).backward()
        fused.step()
    torch.testing.assert_close(w.detach(), w_ref.detach())


def test_a_complex_parameter_passed_twice_is_refused():
    w = torch.nn.Parameter(torch.randn(2, dtype=torch.cfloat))
    with pytest.raises(ValueError, match="passed to the optimizer twice"):
        build_optimizer("adam", [{"params": [w]}, {"params": [w]}], lr=1e-3)
