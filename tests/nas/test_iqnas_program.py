"""IQNAS integer program: linearisation identity, HiGHS = brute force, strict feasibility, statuses, errors."""

import numpy as np
import pytest

from damokit.nas.bench_macro import load_bench_macro
from damokit.nas.iqnas_encoding import OneHotSpace, QuadraticForm, macro_encode, macro_space
from damokit.nas.iqnas_predictors import pair_index
from damokit.nas.iqnas_program import linearize, solve
from damokit.nas.iqnas_resources import fit_resource

SMALL_DEPTH = OneHotSpace(depths=((1, 2, 3), (2, 3)), ops=("a", "b", "c"))  # 39 * 36 = 1 404 architectures


def _random_quadratic(space, rng, pairs="all", scale=1.0, positive=False):
    P = pair_index(space, pairs)
    lin, w = rng.normal(size=space.dim), rng.normal(size=len(P)) * scale
    if positive:
        lin, w = np.abs(lin) + 0.1, np.abs(w) * 0.2
    return QuadraticForm(rng.normal(), lin, P, w)


def _extended_point(space, lin, x):
    """The MILP vector for encoding x: x, absent indicators, exact products."""
    v = np.zeros(lin.A.shape[1])
    v[: space.dim] = x
    opt = np.flatnonzero(space.optional)
    k = space.num_ops
    for t, layer in enumerate(opt):
        v[space.dim + t] = 1.0 - x[layer * k : (layer + 1) * k].sum()
    for (u, w), idx in lin.product_index.items():
        v[idx] = v[u] * v[w]
    return v


@pytest.mark.parametrize("linearization", ["rlt", "mccormick"])
def test_linearization_equals_the_quadratic_on_one_hot_points(linearization):
    rng = np.random.default_rng(0)
    space = SMALL_DEPTH
    obj = _random_quadratic(space, rng)
    res = _random_quadratic(space, rng, pairs="adjacent", positive=True)
    lin = linearize(space, obj, {"res": (res, 1e9)}, linearization)
    X = space.enumerate()[::7]
    for x in X:
        v = _extended_point(space, lin, x)
        # same objective value, every row satisfied: no pairwise term dropped, no valid point cut off
        assert lin.const - lin.c @ v == pytest.approx(obj(x[None])[0], abs=1e-9)
        row = lin.A @ v
        assert (row >= lin.lo - 1e-9).all() and (row <= lin.hi + 1e-9).all()
        scale = lin.budget_scale[0]
        assert row[lin.budget_rows[0]] * scale + res.const == pytest.approx(res(x[None])[0], rel=1e-9)


@pytest.mark.parametrize("linearization", ["rlt", "mccormick"])
def test_highs_equals_brute_force_on_nas_bench_macro(linearization):
    rng = np.random.default_rng(1)
    space = macro_space()
    bench = load_bench_macro()
    X = macro_encode(bench.choices)
    flops, _ = fit_resource(space, X, bench.flops / 1e6)  # exactly linear (test_iqnas_resources)
    obj = _random_quadratic(space, rng, scale=0.5)
    for q in (0.1, 0.5):
        budget = float(np.quantile(bench.flops / 1e6, q))
        sol = solve(space, obj, {"mflops": (flops, budget)}, linearization=linearization)
        ref = solve(space, obj, {"mflops": (flops, budget)}, backend="brute")
        assert sol.status == ref.status == "optimal"
        assert sol.objective == pytest.approx(ref.objective, abs=1e-6)
        assert sol.solver_objective == pytest.approx(sol.objective, abs=1e-6)
        assert sol.resources["mflops"] <= budget  # strictly, in float64
        assert sol.gap is not None and 0.0 <= sol.gap <= 1e-4
        # the decoded pick is a real benchmark row whose recorded FLOPs meet the budget too
        row = int("".join(str(v) for v in sol.op_ids[sol.op_ids >= 0]), 3)
        assert bench.flops[row] / 1e6 <= budget + 1e-9


def test_highs_equals_brute_force_with_depth_and_two_quadratic_resources():
    rng = np.random.default_rng(2)
    space = SMALL_DEPTH
    obj = _random_quadratic(space, rng)
    r1 = _random_quadratic(space, rng, pairs="within_stage", positive=True)
    r2 = QuadraticForm(0.0, np.abs(rng.normal(size=space.dim)))
    X = space.enumerate()
    cons = {"lat": (r1, float(np.quantile(r1(X), 0.3))), "mem": (r2, float(np.quantile(r2(X), 0.5)))}
    sol = solve(space, obj, cons)
    ref = solve(space, obj, cons, backend="brute")
    assert sol.status == "optimal"
    assert sol.objective == pytest.approx(ref.objective, abs=1e-6)
    assert all(sol.resources[n] <= b for n, (_, b) in cons.items())
    np.testing.assert_array_equal(space.encode(sol.op_ids[None], sol.depth[None])[0], sol.x)


def test_impossible_budget_is_a_clear_infeasible_result():
    space = macro_space()
    cost = QuadraticForm(5.0, np.tile([0.0, 1.0, 2.0], 8))
    sol = solve(space, QuadraticForm(0.0, np.ones(24)), {"cost": (cost, 4.0)})
    assert sol.status == "infeasible" and sol.x is None and not sol.found
    assert "no architecture satisfies cost <= 4 (smallest possible cost: 5)" in sol.message
    brute = solve(space, QuadraticForm(0.0, np.ones(24)), {"cost": (cost, 4.0)}, backend="brute")
    assert brute.status == "infeasible"


def test_time_limited_status_is_honest():
    # a dense random quadratic on the paper-scale space is not closed in a fraction of a second (spec §5.1)
    from damokit.nas.iqnas_encoding import mobilenet_space

    rng = np.random.default_rng(3)
    space = mobilenet_space()
    obj = _random_quadratic(space, rng, pairs="adjacent")
    cost = QuadraticForm(0.0, np.abs(rng.normal(size=space.dim)))
    X = space.encode(*space.sample(200, rng))
    sol = solve(space, obj, {"cost": (cost, float(np.median(cost(X))))}, time_limit=1.0)
    assert sol.status in ("optimal", "feasible", "no_solution")
    if sol.found:
        assert sol.bound >= sol.objective - 1e-6 if sol.bound is not None else sol.status == "feasible"
        if sol.status == "optimal":
            assert sol.gap <= 1e-6 * max(1.0, abs(sol.objective)) + 1e-6
        assert sol.resources["cost"] <= sol.budgets["cost"]


def test_errors():
    space = macro_space()
    obj = QuadraticForm(0.0, np.zeros(24))
    with pytest.raises(ValueError, match="backend must be 'highs' or 'brute'"):
        solve(space, obj, backend="cpsat")
    with pytest.raises(ValueError, match="linearization must be 'rlt' or 'mccormick'"):
        solve(space, obj, linearization="glover")
    with pytest.raises(ValueError, match="time_limit must be > 0"):
        solve(space, obj, time_limit=0)
    with pytest.raises(ValueError, match=r"rel_gap must lie in \[0, 1\)"):
        solve(space, obj, rel_gap=1.5)
    with pytest.raises(ValueError, match="objective has dim 3, the space's encoding has dim 24"):
        solve(space, QuadraticForm(0.0, np.zeros(3)))
    with pytest.raises(ValueError, match="budget of 'f' must be finite"):
        solve(space, obj, {"f": (obj, np.inf)})
    with pytest.raises(ValueError, match="resource 'f' has dim 3"):
        solve(space, obj, {"f": (QuadraticForm(0.0, np.zeros(3)), 1.0)})
    with pytest.raises(ValueError, match="constraint 'f' must be a"):
        solve(space, obj, {"f": 1.0})
