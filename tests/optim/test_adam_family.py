"""AdamFamily: torch equivalence (T1), Condition B (T2), schedules (T3), torch conventions, errors."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from damokit import registry
from damokit.engine import build_optimizer
from damokit.optim import (
    AdaBelief,
    AdaBeliefRule,
    AdaBound,
    AdaBoundRule,
    AdaFom,
    AdaFomRule,
    Adam,
    AdamFamily,
    AdamPlus,
    AdamPlusRule,
    AdamRule,
    AdamW,
    AMSGrad,
    AMSGradRule,
    ConstantMomentum,
    CoupledToLR,
    IdentityRule,
    InverseSqrtMomentum,
    KingmaDecay,
    MomentumSGD,
    RMSPropRule,
    StagewiseMomentum,
    list_optimizers,
)

FAMILY = [e.name for e in registry.entries("optimizer") if e.meta.get("family") == "adam_family"]


def _mlp(dtype: torch.dtype) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Sigmoid(), torch.nn.Linear(8, 2)).to(dtype)


def _lockstep(make_ours, make_torch, dtype=torch.float64, steps=100, problem="mlp"):
    """Step both optimizers on identical gradients; return the largest parameter difference seen."""
    a, b = _mlp(dtype), _mlp(dtype)
    opt_a, opt_b = make_ours(a.parameters()), make_torch(b.parameters())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 6, generator=g, dtype=dtype)
    y = torch.randn(16, 2, generator=g, dtype=dtype)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-7)
    diff = 0.0
    for _ in range(steps):
        noise = [torch.randn(p.shape, generator=g, dtype=dtype) for p in a.parameters()]
        for model, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            if problem == "mlp":
                torch.nn.functional.mse_loss(model(x), y).backward()
            else:  # quadratic 0.5 ||p||^2 plus seeded noise
                for p, n in zip(model.parameters(), noise):
                    p.grad = p.detach() + n
            opt.step()
        with torch.no_grad():
            for p, q in zip(a.parameters(), b.parameters()):
                if not torch.allclose(p, q, **tol):  # cheap check every step; the detailed report on failure
                    torch.testing.assert_close(p, q, **tol)
                diff = max(diff, float((p - q).abs().max()))
    return diff


T1_CASES = {
    "adam": (lambda p: Adam(p, lr=1e-2), lambda p: torch.optim.Adam(p, lr=1e-2, foreach=False)),
    "adam_wd": (
        lambda p: Adam(p, lr=1e-2, weight_decay=1e-2),
        lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-2, foreach=False),
    ),
    "adamw": (
        lambda p: AdamW(p, lr=1e-2, weight_decay=1e-2),
        lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=1e-2, foreach=False),
    ),
    "amsgrad": (lambda p: AMSGrad(p, lr=1e-2), lambda p: torch.optim.Adam(p, lr=1e-2, amsgrad=True, foreach=False)),
    "adam_amsgrad_flag": (
        lambda p: Adam(p, lr=1e-2, betas=(0.8, 0.99), amsgrad=True),
        lambda p: torch.optim.Adam(p, lr=1e-2, betas=(0.8, 0.99), amsgrad=True, foreach=False),
    ),
    "momentum_sgd": (
        lambda p: MomentumSGD(p, lr=1e-2, momentum=0.8, m_init="first_grad"),
        lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.8, dampening=0.8, foreach=False),
    ),
    "family_beta_convention": (
        lambda p: AdamFamily(p, lr=1e-2, rule=AdamRule(), momentum=ConstantMomentum(0.1)),
        lambda p: torch.optim.Adam(p, lr=1e-2, betas=(0.9, 0.999), foreach=False),
    ),
    "maximize": (
        lambda p: Adam(p, lr=1e-2, maximize=True),
        lambda p: torch.optim.Adam(p, lr=1e-2, maximize=True, foreach=False),
    ),
}


@pytest.mark.parametrize("problem", ["mlp", "quadratic"])
@pytest.mark.parametrize("case", sorted(T1_CASES))
def test_t1_lockstep_with_torch_float64(case: str, problem: str):
    ours, ref = T1_CASES[case]
    _lockstep(ours, ref, torch.float64, problem=problem)


@pytest.mark.parametrize("case", ["adam", "adamw", "amsgrad", "momentum_sgd"])
def test_t1_lockstep_with_torch_float32_and_foreach(case: str):
    ours, ref = T1_CASES[case]
    _lockstep(ours, ref, torch.float32)
    # the multi-tensor path rounds like the single-tensor one on CPU (same per-tensor kernels)
    diff = _lockstep(lambda p: _with(ours(p), foreach=True), ref, torch.float64)
    assert diff < 1e-13


def _with(opt: torch.optim.Optimizer, **group_values) -> torch.optim.Optimizer:
    for group in opt.param_groups:
        group.update(group_values)
    return opt


def _run(opt_factory, steps: int, state_from=None):
    model = _mlp(torch.float64)
    opt = opt_factory(model.parameters())
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(16, 6, generator=g, dtype=torch.float64), torch.randn(16, 2, generator=g, dtype=torch.float64)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return model, opt, (x, y)


@pytest.mark.parametrize("name", ["family_adam", "adabound", "adabelief", "amsgrad", "adafom", "adamplus"])
def test_state_dict_round_trip_continues_identically(name: str):
    make = registry.get("optimizer", name).fn
    model, opt, (x, y) = _run(lambda p: make(p, lr=1e-2, momentum_schedule=CoupledToLR(0.1)), 20)
    clone = copy.deepcopy(model)
    opt2 = make(clone.parameters(), lr=1e-2, momentum_schedule=CoupledToLR(0.1))
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    for m, o in ((model, opt), (clone, opt2)):
        for _ in range(10):
            o.zero_grad()
            torch.nn.functional.mse_loss(m(x), y).backward()
            o.step()
    for p, q in zip(model.parameters(), clone.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_lr_scheduler_changes_lr_exactly_as_with_torch():
    ours = Adam(_mlp(torch.float64).parameters(), lr=0.1)
    ref = torch.optim.Adam(_mlp(torch.float64).parameters(), lr=0.1)
    s_ours = torch.optim.lr_scheduler.StepLR(ours, step_size=3, gamma=0.5)
    s_ref = torch.optim.lr_scheduler.StepLR(ref, step_size=3, gamma=0.5)
    for _ in range(10):
        ours.step(), ref.step(), s_ours.step(), s_ref.step()
        assert ours.param_groups[0]["lr"] == ref.param_groups[0]["lr"]
    assert ours.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)


def test_closure_returns_loss_and_grad_none_params_are_skipped():
    w, frozen = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    opt = Adam([w, frozen], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    assert float(opt.step(closure).detach()) == 3.0
    assert torch.equal(frozen.detach(), torch.ones(2)) and frozen not in opt.state
    assert opt.state[w]["step"] == 1


# ---------------------------------------------------------------- T2: Condition B


def _rules():
    return {
        "identity": (IdentityRule(), {}),
        "adam": (AdamRule(beta2=0.99, eps=1e-8), {}),
        "amsgrad": (AMSGradRule(beta2=0.99, eps=1e-8), {}),
        "adabound": (AdaBoundRule(beta2=0.99, final_lr=0.1, gamma=1e-2), {"initial_lr": 1e-3}),
        "adafom": (AdaFomRule(eps=1e-8), {}),
        "adamplus": (AdamPlusRule(eps=1e-8), {}),
        "adabelief": (AdaBeliefRule(beta2=0.99, eps=1e-12), {}),
        "rmsprop": (RMSPropRule(beta2=0.99, eps=1e-8), {}),
    }


def _adversarial_grads(n: int, d: int, G: float, g: torch.Generator) -> torch.Tensor:
    """(n, d) gradients with ||g||_inf <= G: zeros, spikes, alternating signs and uniform noise."""
    out = (torch.rand(n, d, generator=g, dtype=torch.float64) * 2 - 1) * G
    out[50:100] = 0.0  # long run of zero gradients: v decays towards 0, h towards c_u
    out[100:110] = G  # spike after the zeros
    signs = torch.where(torch.arange(d) % 2 == 0, 1.0, -1.0).to(torch.float64)
    out[200:260] = G * signs * torch.where(torch.arange(60) % 2 == 0, 1.0, -1.0)[:, None].to(torch.float64)
    out[300:305, 0] = G  # one coordinate spikes, the rest tiny
    out[300:305, 1:] = 1e-12
    return out


@pytest.mark.parametrize("name", sorted(_rules()))
def test_t2_rule_factor_stays_within_declared_bounds(name: str):
    rule, extra = _rules()[name]
    G, beta, d = 3.0, 0.1, 7
    p = torch.zeros(d, dtype=torch.float64)
    group = {**rule.defaults, **extra, "params": [p]}
    state = {"exp_avg": torch.zeros_like(p), **rule.init_state(p)}
    c_l, c_u = rule.bounds(G, group, bc1_min=beta)
    assert 0 < c_l <= c_u < math.inf
    prod = 1.0
    gen = torch.Generator().manual_seed(0)
    for t, grad in enumerate(_adversarial_grads(500, d, G, gen), start=1):
        state["exp_avg"].lerp_(grad, beta)
        prod *= 1 - beta
        (h,) = rule.factor([state], [grad], [state["exp_avg"]], t, 1 - prod, group)
        assert h.shape == p.shape
        assert bool((h >= c_l * (1 - 1e-12)).all()) and bool((h <= c_u * (1 + 1e-12)).all()), (t, h, c_l, c_u)


@pytest.mark.parametrize("name", ["family_adam", "adabound", "adabelief", "adafom", "rmsprop_momentum"])
def test_t2_track_bounds_during_mlp_run_inside_declared_bounds(name: str):
    make = registry.get("optimizer", name).fn
    model, opt, (x, y) = _run(lambda p: make(p, lr=1e-2, track_bounds=True), 30)
    G = max(float(p.grad.abs().max()) for p in model.parameters()) * 50  # generous bound on all seen grads
    (lo, hi), (c_l, c_u) = opt.state["h_range"][0], opt.factor_bounds(G)[0]
    assert c_l <= lo <= hi <= c_u
    assert hi > lo  # a real range was observed


@pytest.mark.parametrize("rule", [AdamRule, AMSGradRule, AdaFomRule, AdamPlusRule, AdaBeliefRule, RMSPropRule])
def test_t2_eps_zero_raises_for_second_moment_rules(rule):
    with pytest.raises(ValueError, match="eps=0.0 must be > 0"):
        rule(eps=0.0)


def test_adabound_accepts_eps_zero_because_its_clip_bounds_h():
    assert AdaBoundRule(eps=0.0).defaults["eps"] == 0.0


# ---------------------------------------------------------------- T3: schedules


def test_t3_coupled_to_lr_follows_multistep_lr():
    w = torch.nn.Parameter(torch.zeros(1))
    opt = Adam([w], lr=1e-3, momentum_schedule=CoupledToLR(0.1))
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[3, 6], gamma=0.1)
    beta1 = []
    for _ in range(9):
        beta1.append(1 - opt.momentum(1, opt.param_groups[0]))
        w.grad = torch.ones(1)
        opt.step()
        sched.step()
    assert beta1 == pytest.approx([0.9] * 3 + [0.99] * 3 + [0.999] * 3, abs=1e-12)


def test_t3_inverse_sqrt_and_stagewise_and_kingma():
    inv = InverseSqrtMomentum(beta0=1.0)
    assert [inv(t, {}) for t in (1, 4, 100)] == pytest.approx([1.0, 0.5, 0.1])
    stage = StagewiseMomentum(0.1, milestones=[10, 20], factor=10)
    assert [stage(t, {}) for t in (1, 9, 10, 19, 20, 99)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    kingma = KingmaDecay(0.9, 0.5)  # torch beta1_t = 0.9 * 0.5^(t-1) -> 0
    assert [1 - kingma(t, {}) for t in (1, 2, 3)] == pytest.approx([0.9, 0.45, 0.225])


def test_t3_bias_correction_is_the_running_product():
    # constant beta: the product equals 1 - beta1^t; InverseSqrt: prod_s (1 - 1/sqrt(s)) = 0 from s = 1
    w = torch.nn.Parameter(torch.zeros(2))
    opt = Adam([w], lr=1e-3, betas=(0.9, 0.999))
    for t in range(1, 31):
        w.grad = torch.ones(2)
        opt.step()
        assert opt.state[w]["prod_one_minus_beta"] == pytest.approx(0.9**t, rel=1e-12)
    v = torch.nn.Parameter(torch.zeros(2))
    opt = AdamFamily([v], lr=1e-3, momentum=StagewiseMomentum(0.5, [3], factor=2))
    for _ in range(4):
        v.grad = torch.ones(2)
        opt.step()
    assert opt.state[v]["prod_one_minus_beta"] == pytest.approx(0.5 * 0.5 * 0.75 * 0.75)


# ---------------------------------------------------------------- registry, engine, every optimizer descends


def test_registered_presets_and_engine_build_by_name():
    assert set(FAMILY) == {
        "family_adam",
        "family_adamw",
        "amsgrad",
        "adabound",
        "adafom",
        "adamplus",
        "adabelief",
        "rmsprop_momentum",
        "momentum_sgd",
    }
    assert set(FAMILY) <= set(list_optimizers())
    w = torch.nn.Parameter(torch.zeros(2))
    opt = build_optimizer("adabound", [w], lr=1e-3, weight_decay=1e-4, final_lr=0.05)
    assert isinstance(opt, AdamFamily) and isinstance(opt.rule, AdaBoundRule)
    assert opt.param_groups[0]["weight_decay"] == 1e-4 and opt.param_groups[0]["final_lr"] == 0.05


def _rosenbrock(p: torch.Tensor) -> torch.Tensor:
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


@pytest.mark.parametrize("name", FAMILY)
def test_every_preset_decreases_quadratic_and_rosenbrock(name: str):
    make = registry.get("optimizer", name).fn
    lr = 1e-2 if name != "adabound" else 1e-3
    for loss_fn, start, steps in (
        (lambda p: (torch.arange(1.0, 4.0) * p**2).sum(), torch.tensor([1.0, -2.0, 0.5]), 200),
        (_rosenbrock, torch.tensor([-1.5, 2.0]), 500),
    ):
        p = torch.nn.Parameter(start.clone())
        opt = make([p], lr=lr if loss_fn is not _rosenbrock else lr * 0.1, weight_decay=0.0)
        first = float(loss_fn(p).detach())
        for _ in range(steps):
            opt.zero_grad()
            loss_fn(p).backward()
            opt.step()
        last = float(loss_fn(p).detach())
        assert last < 0.5 * first, (name, first, last)


def test_param_groups_carry_rule_hyperparameters():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = AdaBelief([{"params": [a]}, {"params": [b], "beta2": 0.9, "lr": 0.5}], lr=0.1)
    assert opt.param_groups[0]["beta2"] == 0.999 and opt.param_groups[1]["beta2"] == 0.9
    assert opt.param_groups[1]["initial_lr"] == 0.5


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -1.0}, "lr=-1.0 must be a float >= 0"),
        ({"weight_decay": -0.1}, "weight_decay=-0.1 must be >= 0"),
        ({"m_init": "ones"}, "m_init='ones' must be one of"),
        ({"momentum": 0.1, "betas": (0.9, 0.99)}, "not both"),
        ({"momentum": 0.0}, r"beta=0.0 must lie in \(0, 1\]"),
        ({"momentum": 1.5}, r"beta=1.5 must lie in \(0, 1\]"),
        ({"betas": (1.0, 0.99)}, r"beta1=1.0 must lie in \[0, 1\)"),
        ({"betas": (0.9, 1.0)}, r"beta2 must lie in \[0, 1\)"),
        ({"betas": (0.9,)}, "must be a pair"),
        ({"rule": IdentityRule(), "betas": (0.9, 0.99)}, "rule 'identity' has no beta2; pass momentum=0.1"),
    ],
)
def test_adam_family_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdamFamily([torch.nn.Parameter(torch.zeros(1))], **kwargs)


def test_other_errors():
    p = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(TypeError, match="must be an AdaptiveRule instance"):
        AdamFamily([p], rule="adam")
    with pytest.raises(TypeError, match="must be a float in"):
        AdamFamily([p], momentum="fast")
    with pytest.raises(ValueError, match=r"beta2=1.0 must lie in \[0, 1\)"):
        AdamRule(beta2=1.0)
    with pytest.raises(ValueError, match="final_lr=0 must be > 0"):
        AdaBound([p], final_lr=0)
    with pytest.raises(ValueError, match="gamma=-1 must be > 0"):
        AdaBoundRule(gamma=-1)
    with pytest.raises(ValueError, match="eps=-1 must be >= 0"):
        AdaBoundRule(eps=-1)
    with pytest.raises(ValueError, match=r"beta1=1.0 must lie in \[0, 1\)"):
        MomentumSGD([p], momentum=1.0)
    with pytest.raises(ValueError, match=r"beta1=1.5 must lie in \[0, 1\)"):
        AdaFom([p], momentum=1.5)
    with pytest.raises(ValueError, match=r"beta0=0 must be > 0"):
        InverseSqrtMomentum(0)
    with pytest.raises(ValueError, match="strictly increasing"):
        StagewiseMomentum(0.1, [5, 3])
    with pytest.raises(ValueError, match="factor=0.5 must be >= 1"):
        StagewiseMomentum(0.1, [5], factor=0.5)
    with pytest.raises(ValueError, match=r"lam=0 must lie in \(0, 1\]"):
        KingmaDecay(0.9, 0)
    with pytest.raises(ValueError, match=r"beta1=1 must lie in \[0, 1\)"):
        KingmaDecay(1, 0.5)
    bad = AdamFamily([p], momentum=lambda step, group: 2.0)
    p.grad = torch.ones(1)
    with pytest.raises(ValueError, match=r"returned beta=2.0 at step 1; it must lie in \(0, 1\]"):
        bad.step()
    e = torch.nn.Embedding(4, 2, sparse=True)
    e(torch.tensor([1])).sum().backward()
    with pytest.raises(ValueError, match="does not support sparse gradients"):
        AdamPlus(e.parameters()).step()


def test_engine_fit_by_name_checkpoints_and_resumes(tmp_path):
    from damokit.engine import TrainConfig, fit

    x = torch.randn(64, 3)
    y = x.sum(1, keepdim=True)

    def loss_fn(m, b):
        return ((m(b[0]) - b[1]) ** 2).mean()

    def train(epochs: int, resume: bool) -> torch.nn.Module:
        torch.manual_seed(0)
        net = torch.nn.Linear(3, 1)
        config = TrainConfig(epochs=epochs, batch_size=16, lr=1e-2, optimizer="adabound", progress=False)
        fit(net, (x, y), loss_fn=loss_fn, config=config, out_dir=tmp_path / ("a" if resume else "b"), resume=resume)
        return net

    train(2, resume=True)  # first run writes last.safetensors (optimizer state as JSON + tensors)
    resumed = train(4, resume=True)
    straight = train(4, resume=False)
    for p, q in zip(resumed.parameters(), straight.parameters()):
        torch.testing.assert_close(p, q)
    with torch.no_grad():
        assert float(loss_fn(straight, (x, y))) < float(loss_fn(torch.nn.Linear(3, 1), (x, y)))


def _reference_run(update, steps: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``update(p, g, state, t)`` (a hand-written reference step) and return (params, grads used)."""
    g = torch.Generator().manual_seed(5)
    scales = torch.tensor([1e-4, 1e-2, 1.0, 10.0, 1e3], dtype=torch.float64)  # hit both clip bounds of AdaBound
    grads = torch.randn(steps, 5, generator=g, dtype=torch.float64) * scales
    p, state = torch.linspace(-1, 1, 5, dtype=torch.float64), {}
    for t in range(1, steps + 1):
        update(p, grads[t - 1], state, t)
    return p, grads


def _ours(opt_factory, grads: torch.Tensor) -> torch.Tensor:
    p = torch.nn.Parameter(torch.linspace(-1, 1, 5, dtype=torch.float64))
    opt = opt_factory([p])
    for grad in grads:
        p.grad = grad.clone()
        opt.step()
    return p.detach()


def test_adabound_matches_its_reference_code_formula():
    lr, b1, b2, eps, final_lr, gamma = 1e-2, 0.9, 0.999, 1e-8, 0.1, 0.5

    def update(p, g, s, t):  # Luolc/AdaBound adabound.py step, rewritten
        m, v = s.setdefault("m", torch.zeros_like(p)), s.setdefault("v", torch.zeros_like(p))
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        step_size = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        lower, upper = final_lr * (1 - 1 / (gamma * t + 1)), final_lr * (1 + 1 / (gamma * t))
        p.sub_((step_size / (v.sqrt() + eps)).clamp(lower, upper) * m)

    ref, grads = _reference_run(update)
    ours = _ours(lambda ps: AdaBound(ps, lr=lr, final_lr=final_lr, gamma=gamma, track_bounds=True), grads)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


def test_adabelief_and_adafom_match_their_formulas():
    lr, b1, b2, eps = 1e-2, 0.9, 0.999, 1e-12

    def belief(p, g, s, t):  # juntang-zhuang/Adabelief-Optimizer (pypi 0.2) step without rectification
        m, v = s.setdefault("m", torch.zeros_like(p)), s.setdefault("s", torch.zeros_like(p))
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g - m, g - m, value=1 - b2).add_(eps)
        p.addcdiv_(m, v.sqrt() / math.sqrt(1 - b2**t) + eps, value=-lr / (1 - b1**t))

    ref, grads = _reference_run(belief)
    torch.testing.assert_close(_ours(lambda ps: AdaBelief(ps, lr=lr, eps=eps), grads), ref, rtol=1e-10, atol=1e-12)

    def fom(p, g, s, t):  # spec §2.2: h = 1 / (sqrt(S / t) + eps), m without bias correction
        m, total = s.setdefault("m", torch.zeros_like(p)), s.setdefault("S", torch.zeros_like(p))
        m.mul_(b1).add_(g, alpha=1 - b1)
        total.add_(g * g)
        p.sub_(lr * m / ((total / t).sqrt() + 1e-8))

    ref, grads = _reference_run(fom)
    torch.testing.assert_close(_ours(lambda ps: AdaFom(ps, lr=lr, momentum=b1), grads), ref, rtol=1e-10, atol=1e-12)
