"""IQNAS on NAS-Bench-Macro end to end: budgeted picks vs the benchmark, CLI, errors, the planted instance."""

import numpy as np
import pytest

from damokit.cli import main
from damokit.nas.bench_macro import load_bench_macro
from damokit.nas.iqnas import macro_resources, search_macro
from damokit.nas.iqnas_encoding import macro_encode
from damokit.reproduce.iqnas import planted_instance


def test_macro_resources_reproduce_the_recorded_integers():
    bench = load_bench_macro()
    res = macro_resources(bench)
    X = macro_encode(bench.choices)
    # integer coefficients (single-layer switches): the table sum is the recorded value exactly
    np.testing.assert_array_equal(res["flops"](X), bench.flops)
    np.testing.assert_array_equal(res["params"](X), bench.params)


def test_budgeted_pick_matches_the_spec_reference():
    bench = load_bench_macro()
    budget = float(np.quantile(bench.flops, 0.25))  # 45.5 MFLOPs
    res = search_macro(budget_flops=budget, predictor="quadratic", n=500, seed=0)
    # spec §10 (A) (measured for damokit, seed 0): pick 91.90 %, oracle 91.94 %, feasible mean 87.63 %
    assert res.solution.status == "optimal" and res.flops <= budget
    assert res.accuracy == pytest.approx(91.90, abs=0.005)
    assert res.oracle_accuracy == pytest.approx(91.94, abs=0.005)
    assert res.random_feasible_mean == pytest.approx(87.63, abs=0.005)
    assert res.measured == 500 and res.tau_heldout > 0.85
    assert res.solution.objective == pytest.approx(res.solution.solver_objective, abs=1e-6)


def test_params_budget_and_contribution_predictor():
    res = search_macro(budget_params=1.0e6, predictor="contribution")
    assert res.measured == 17 and res.params <= 1.0e6 and res.accuracy <= res.oracle_accuracy
    assert res.accuracy > res.random_feasible_mean + 2.0


def test_impossible_budget_gives_infeasible_not_a_trace():
    res = search_macro(budget_flops=1e6, n=50)
    assert res.solution.status == "infeasible" and res.arch is None and res.oracle_arch is None
    assert "smallest possible flops: 7.71328e+06" in res.solution.message


def test_errors():
    with pytest.raises(ValueError, match=r"n must lie in \[2, 6561\]"):
        search_macro(n=1)
    with pytest.raises(ValueError, match="budget_flops must be a positive number"):
        search_macro(budget_flops=-5.0)
    with pytest.raises(ValueError, match="predictor must be one of"):
        search_macro(predictor="mlp")


def test_cli(capsys):
    assert main(["nas", "iqnas", "--bench", "nas-bench-macro", "--budget-flops", "45e6", "--n", "200"]) == 0
    out = capsys.readouterr().out
    assert "highs optimal" in out and "pick " in out and "oracle " in out
    assert main(["nas", "iqnas", "--budget-flops", "1e6", "--n", "50"]) == 1
    assert "no architecture satisfies flops <= 1e+06" in capsys.readouterr().out
    assert main(["nas", "iqnas", "explain", "--predictor", "linear", "--n", "100"]) == 0
    assert "accuracy_per_flops" in capsys.readouterr().out
    assert main(["nas", "iqnas", "--n", "0"]) == 2
    assert "n must lie in" in capsys.readouterr().err


def test_planted_instance_matches_the_spec():
    space, truth, latency = planted_instance(0)
    # spec §10 (B): 36 op + 9 depth binaries, 144 within-stage op pairs, additive latency
    assert (space.dim, space.size, len(truth.pairs)) == (45, 592_704, 144)
    stage = np.array([s for s, _ in space.layers]).repeat(4)
    assert (stage[truth.pairs[:, 0]] == stage[truth.pairs[:, 1]]).all()
    assert latency.is_linear and (latency.linear[36:] == 0).all()
