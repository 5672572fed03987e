"""IQNAS on NAS-Bench-Macro: fit an interpretable predictor on a few measured nets, solve the integer program.

Paper: N. Nayman, Y. Aflalo, A. Noy, R. Jin, L. Zelnik-Manor, "IQNAS: Interpretable Integer Quadratic
Programming Neural Architecture Search" (arXiv 2110.12399; later "BINAS"). Official code: github
Alibaba-MIIL/BINAS. Spec: ``specs/iqnas.md``.

The method lives in four modules: ``iqnas_encoding`` (one-hot spaces, ``QuadraticForm``),
``iqnas_resources`` (FLOPs/params/latency models), ``iqnas_predictors`` (fitted and constructed accuracy
predictors, contribution tables) and ``iqnas_program`` (the integer program and its solvers). This module
runs the whole pipeline on the tabular benchmark (spec §10 A), where "measuring" an architecture is a
look-up of its trained CIFAR-10 accuracy, so the pick can be compared with the true constrained optimum.

Deviations: the paper measures accuracies with a one-shot supernet on ImageNet; here they are the
benchmark's trained-from-scratch accuracies (no supernet). Solver: HiGHS via scipy instead of CPLEX /
CP-SAT (see ``iqnas_program``).

Example:
    >>> res = search_macro(budget_flops=45e6, predictor="quadratic", n=100, seed=0)
    >>> res.solution.status, res.flops <= 45e6
    ('optimal', True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from damokit.nas.bench_macro import MacroBench, load_bench_macro
from damokit.nas.iqnas_encoding import QuadraticForm, macro_encode, macro_rows, macro_space
from damokit.nas.iqnas_predictors import (
    contribution_estimator,
    contribution_table,
    fit_linear,
    fit_quadratic,
    rank_correlation,
)
from damokit.nas.iqnas_program import Solution, solve

__all__ = ["PREDICTORS", "MacroSearchResult", "macro_resources", "macro_predictor", "search_macro"]

PREDICTORS = ("quadratic", "linear", "contribution")
# ridge penalties: quadratic 10 (the spec's measured default), linear 1
_RIDGE = {"quadratic": 10.0, "linear": 1.0}
# reference of the contribution estimator: every layer MB3_K3 ("11111111", spec §10 A)
_CONTRIBUTION_BASE_OP = 1


def macro_resources(bench: MacroBench | None = None) -> dict[str, QuadraticForm]:
    """The benchmark's ``flops`` and ``params`` as exactly linear forms with integer coefficients.

    Coefficients are single-layer switches away from the all-identity net (exact because both are sums
    of per-layer costs), so table sums equal the recorded integers in float64 on all 6 561 nets.
    """
    bench = bench or load_bench_macro()
    space = macro_space()
    out = {}
    for name in ("flops", "params"):
        values = getattr(bench, name).astype(np.float64)
        out[name], _ = contribution_estimator(space, lambda o, d, v=values: v[macro_rows(o)], base_op=0)
    return out


def macro_predictor(
    predictor: Literal["quadratic", "linear", "contribution"],
    train_rows: np.ndarray,
    bench: MacroBench | None = None,
    ridge: float | None = None,
) -> tuple[QuadraticForm, int]:
    """Fit (or construct) an accuracy predictor from the benchmark rows ``train_rows``.

    ``"contribution"`` ignores ``train_rows`` and measures its own 17 single-switch look-ups.

    Returns:
        The predictor and the number of measured architectures it used.
    """
    if predictor not in PREDICTORS:
        raise ValueError(f"predictor must be one of {PREDICTORS}; got {predictor!r}")
    bench = bench or load_bench_macro()
    space = macro_space()
    if predictor == "contribution":
        return contribution_estimator(space, lambda o, d: bench.mean_acc[macro_rows(o)], base_op=_CONTRIBUTION_BASE_OP)
    rows = np.asarray(train_rows, dtype=np.int64)
    X, y = macro_encode(bench.choices[rows]), bench.mean_acc[rows]
    lam = _RIDGE[predictor] if ridge is None else ridge
    form = fit_quadratic(space, X, y, ridge=lam) if predictor == "quadratic" else fit_linear(space, X, y, ridge=lam)
    return form, len(rows)


@dataclass
class MacroSearchResult:
    """One budgeted search on NAS-Bench-Macro and how its pick compares with the benchmark's truth.

    Attributes:
        solution: the integer program's result (status, objective = predicted accuracy, bound, gap).
        arch: the pick as the benchmark's choice string (``None`` when infeasible).
        accuracy, flops, params: the pick's recorded values.
        oracle_arch, oracle_accuracy: the best recorded architecture within the budgets.
        random_feasible_mean: mean recorded accuracy over all architectures within the budgets.
        tau_heldout: Kendall tau of the predictor on the architectures it was not fitted on.
        measured: architectures the predictor cost; ``table``: its per-choice contribution table.
    """

    predictor: str
    solution: Solution
    arch: str | None
    accuracy: float | None
    flops: float | None
    params: float | None
    oracle_arch: str | None
    oracle_accuracy: float | None
    random_feasible_mean: float | None
    tau_heldout: float
    measured: int
    table: pd.DataFrame


def search_macro(
    *,
    budget_flops: float | None = None,
    budget_params: float | None = None,
    predictor: Literal["quadratic", "linear", "contribution"] = "quadratic",
    n: int = 500,
    seed: int = 0,
    ridge: float | None = None,
    linearization: Literal["rlt", "mccormick"] = "rlt",
    time_limit: float = 60.0,
) -> MacroSearchResult:
    """Measure ``n`` random architectures, fit ``predictor``, maximise it under the budgets.

    Args:
        budget_flops, budget_params: upper bounds in the benchmark's units (FLOPs at 32x32, parameters);
            ``None`` leaves a resource unconstrained.
        n: measured architectures for the fitted predictors (1 < n <= 6 561).
        seed: seed of the random sample of measured architectures.

    An impossible budget returns a result with ``solution.status == "infeasible"`` (and a message naming the
    smallest achievable value), not an exception.
    """
    bench = load_bench_macro()
    if not 1 < n <= len(bench):
        raise ValueError(f"n must lie in [2, {len(bench)}] (measured architectures); got {n}")
    for name, value in (("budget_flops", budget_flops), ("budget_params", budget_params)):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number (benchmark units) or None; got {value}")
    space = macro_space()
    rng = np.random.default_rng(seed)
    train = rng.permutation(len(bench))[:n]
    form, measured = macro_predictor(predictor, train, bench, ridge)
    X = macro_encode(bench.choices)  # (6561, 24), row i = bench row i
    held = np.ones(len(bench), dtype=bool)
    if predictor != "contribution":
        held[train] = False
    tau = rank_correlation(form(X[held]), bench.mean_acc[held])

    resources = macro_resources(bench)
    budgets = {"flops": budget_flops, "params": budget_params}
    constraints = {k: (resources[k], float(b)) for k, b in budgets.items() if b is not None}
    solution = solve(space, form, constraints, linearization=linearization, time_limit=time_limit)

    feasible = np.ones(len(bench), dtype=bool)
    for k, b in budgets.items():
        if b is not None:
            feasible &= getattr(bench, k) <= b
    oracle = int(np.flatnonzero(feasible)[bench.mean_acc[feasible].argmax()]) if feasible.any() else None
    pick = int(macro_rows(solution.op_ids[None])[0]) if solution.found else None
    table = contribution_table(
        space, form, {k: resources[k] for k in ("flops", "params")}, reference_op=0, X_mean=X[train].mean(0)
    )
    return MacroSearchResult(
        predictor=predictor,
        solution=solution,
        arch=None if pick is None else bench.archs[pick],
        accuracy=None if pick is None else float(bench.mean_acc[pick]),
        flops=None if pick is None else float(bench.flops[pick]),
        params=None if pick is None else float(bench.params[pick]),
        oracle_arch=None if oracle is None else bench.archs[oracle],
        oracle_accuracy=None if oracle is None else float(bench.mean_acc[oracle]),
        random_feasible_mean=float(bench.mean_acc[feasible].mean()) if feasible.any() else None,
        tau_heldout=tau,
        measured=measured,
        table=table,
    )
