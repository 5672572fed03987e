"""torch's Adam/AdamW as the engine builds them: multi-tensor kernels by default, same updates as the loop."""

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


def test_complex_parameters_get_the_foreach_kernel_with_the_same_updates():
    results = []
    for kwargs in ({}, {"foreach": False}):
        torch.manual_seed(0)
        w = torch.nn.Parameter(torch.randn(8, 8, dtype=torch.cfloat))
        b = torch.nn.Parameter(torch.randn(8))
        opt = build_optimizer("adam", [w, b], lr=1e-2, **kwargs)
        for _ in range(10):
            opt.zero_grad()
            ((w @ torch.ones(8, dtype=torch.cfloat)).abs().sum() * b.square().sum()).backward()
            opt.step()
        results.append((opt.defaults, w.detach(), b.detach()))
    (fast, w_fast, b_fast), (loop, w_loop, b_loop) = results
    assert fast["foreach"] and not fast["fused"] and not loop["foreach"]
    torch.testing.assert_close(w_fast, w_loop)
    torch.testing.assert_close(b_fast, b_loop)
