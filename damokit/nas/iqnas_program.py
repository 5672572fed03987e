"""IQNAS integer quadratic program: maximise a quadratic accuracy predictor under resource budgets.

Paper: IQNAS / BINAS (arXiv 2110.12399), official code github Alibaba-MIIL/BINAS (``nas/src/optim/iqcp.py``
solves the same program with IBM CPLEX). Spec: ``specs/iqnas.md`` §5.

    max_x  ACC(x)   s.t.  RES_k(x) <= T_k  (k = 1..K),   x a valid one-hot encoding of the space,

with ``ACC`` and ``RES_k`` ``QuadraticForm``s of the encoding. Backends:

* ``"highs"``: ``scipy.optimize.milp`` (HiGHS branch and bound) on a linearised form. Each product
  ``x_i x_j`` gets a continuous variable ``z_ij`` in [0, 1]. ``linearization="rlt"`` (default) uses the
  one-hot structure: every block pair that carries a product gets all its products, tied by
  ``sum_v z_uv = x_u`` for each entry ``u`` of one block (and symmetrically), which forces ``z = x_u x_v``
  at integral points and gives a much tighter relaxation than McCormick (measured: 3-10x faster on
  NAS-Bench-Macro, ``benchmarks/bench_iqnas.py``). ``"mccormick"`` is the textbook form, with only the
  side of ``z <= x_i, z <= x_j, z >= x_i + x_j - 1`` that each coefficient's sign needs (spec §5.1).
  Absent optional layers are modelled by an "absent" indicator per optional layer, equal to the sum of
  the depths that omit the layer, which makes every layer block an exact one-hot.
* ``"brute"``: exhaustive enumeration (spaces up to ``ENUMERATE_LIMIT``); the reference in tests.

Deviations: the spec recommends OR-Tools CP-SAT; damokit adds no dependency for it and uses HiGHS, which
scipy ships (the spec's fallback). Status honesty: ``"optimal"`` only when the backend proved it (HiGHS:
gap within ``rel_gap``; brute force: exhaustive); a time-limited run with an incumbent is ``"feasible"``
with its bound and gap. The returned architecture is re-checked in float64 against every budget; if
solver tolerances let a violation through, the budget row is tightened and the program re-solved.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from damokit.nas.iqnas_encoding import ENUMERATE_LIMIT, OneHotSpace, QuadraticForm

__all__ = ["Solution", "solve", "linearize", "Linearized"]

Status = Literal["optimal", "feasible", "infeasible", "no_solution"]


@dataclass
class Solution:
    """Result of one solve.

    Attributes:
        status: ``"optimal"`` (proved), ``"feasible"`` (incumbent, optimality not proved),
            ``"infeasible"`` (proved: no architecture meets the budgets) or ``"no_solution"`` (stopped at
            the time limit without a feasible point).
        x: ``(dim,)`` encoding of the pick, or ``None``.
        op_ids, depth: the pick decoded (``(S, D)`` with -1 at absent layers, ``(S,)``), or ``None``.
        objective: the objective recomputed from the full quadratic at ``x`` (float64).
        solver_objective: the objective the solver reported (equals ``objective`` up to tolerances).
        bound: proved upper bound on the objective over all feasible architectures.
        gap: ``bound - objective`` (absolute, >= 0).
        resources: name -> value of each constrained resource at ``x``; ``budgets``: name -> budget.
        time_s: wall time of the solve(s); ``message``: the backend's message or why nothing was found.
    """

    status: Status
    x: np.ndarray | None
    op_ids: np.ndarray | None
    depth: np.ndarray | None
    objective: float | None
    solver_objective: float | None
    bound: float | None
    gap: float | None
    resources: dict[str, float] = field(default_factory=dict)
    budgets: dict[str, float] = field(default_factory=dict)
    time_s: float = 0.0
    backend: str = ""
    message: str = ""
    num_variables: int = 0
    num_constraints: int = 0

    @property
    def found(self) -> bool:
        return self.x is not None


@dataclass
class Linearized:
    """The MILP in ``scipy.optimize.milp`` form: minimise ``c @ v`` s.t. ``lo <= A v <= hi``, 0 <= v <= 1.

    ``v = [x (dim) ; absent indicators ; products]``; ``integrality`` marks ``x`` binary. ``budget_rows``
    are the indices of the resource rows in ``A``, ``budget_scale`` their row scaling.
    """

    c: np.ndarray
    const: float
    A: sparse.csr_array
    lo: np.ndarray
    hi: np.ndarray
    integrality: np.ndarray
    budget_rows: np.ndarray
    budget_scale: np.ndarray
    product_index: dict[tuple[int, int], int]


def _check_problem(
    space: OneHotSpace, objective: QuadraticForm, constraints: Mapping[str, tuple[QuadraticForm, float]]
) -> None:
    if objective.dim != space.dim:
        raise ValueError(f"objective has dim {objective.dim}, the space's encoding has dim {space.dim}")
    for name, item in constraints.items():
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], QuadraticForm)):
            raise ValueError(f"constraint {name!r} must be a (QuadraticForm, budget) pair; got {type(item).__name__}")
        form, budget = item
        if form.dim != space.dim:
            raise ValueError(f"resource {name!r} has dim {form.dim}, the space's encoding has dim {space.dim}")
        if not np.isfinite(budget):
            raise ValueError(f"budget of {name!r} must be finite; got {budget}")


def linearize(
    space: OneHotSpace,
    objective: QuadraticForm,
    constraints: Mapping[str, tuple[QuadraticForm, float]],
    linearization: Literal["rlt", "mccormick"] = "rlt",
) -> Linearized:
    """Build the linearised MILP of the integer quadratic program (module docstring)."""
    if linearization not in ("rlt", "mccormick"):
        raise ValueError(f"linearization must be 'rlt' or 'mccormick'; got {linearization!r}")
    _check_problem(space, objective, constraints)
    dim = space.dim
    obj = objective.canonical(space)
    cons = {name: (form.canonical(space), float(budget)) for name, (form, budget) in constraints.items()}

    # extended one-hot blocks: every optional layer gets an "absent" indicator
    opt = np.flatnonzero(space.optional)
    absent = {int(layer): dim + t for t, layer in enumerate(opt)}
    blocks = [np.r_[idx, absent[b]] if b in absent else idx for b, idx in enumerate(space.blocks)]
    n_base = dim + len(opt)
    block_of = np.empty(n_base, dtype=np.int64)
    pos_of = np.empty(n_base, dtype=np.int64)
    for b, idx in enumerate(blocks):
        block_of[idx], pos_of[idx] = b, np.arange(len(idx))

    rows, cols, vals, lo, hi = [], [], [], [], []
    n_rows = 0

    def add_rows(r: np.ndarray, c: np.ndarray, v: np.ndarray, low: np.ndarray, high: np.ndarray) -> None:
        nonlocal n_rows
        rows.append(r + n_rows)
        cols.append(c)
        vals.append(v)
        lo.append(low)
        hi.append(high)
        n_rows += len(low)

    # exact one-hot per block
    for idx in blocks:
        add_rows(np.zeros(len(idx), dtype=np.int64), idx, np.ones(len(idx)), np.ones(1), np.ones(1))
    # absent indicator of layer l (0-based) of stage s = sum of beta over depths d <= l
    for layer, var in absent.items():
        s, l = space.layers[layer]
        d = np.asarray(space.depths[s])
        betas = space.beta_offsets[s] + np.flatnonzero(d <= l)
        add_rows(
            np.zeros(1 + len(betas), dtype=np.int64),
            np.r_[var, betas],
            np.r_[1.0, -np.ones(len(betas))],
            *[np.zeros(1)] * 2,
        )

    # product variables
    all_pairs = [obj.pairs] + [f.pairs for f, _ in cons.values()]
    used = np.unique(np.concatenate(all_pairs), axis=0) if sum(map(len, all_pairs)) else np.zeros((0, 2), int)
    product_index: dict[tuple[int, int], int] = {}
    n_var = n_base
    if linearization == "rlt":
        for a, b in np.unique(block_of[used], axis=0) if len(used) else []:
            A_idx, B_idx = blocks[a], blocks[b]
            na, nb = len(A_idx), len(B_idx)
            grid = n_var + np.arange(na * nb).reshape(na, nb)  # z[u, v] for u in block a, v in block b
            for ui, u in enumerate(A_idx):
                product_index.update({(int(u), int(v)): int(grid[ui, vi]) for vi, v in enumerate(B_idx)})
            # sum_v z[u, v] = x_u  and  sum_u z[u, v] = x_v
            r = np.repeat(np.arange(na), nb + 1)
            c = np.concatenate([np.r_[grid[ui], u] for ui, u in enumerate(A_idx)])
            add_rows(r, c, np.tile(np.r_[np.ones(nb), -1.0], na), np.zeros(na), np.zeros(na))
            r = np.repeat(np.arange(nb), na + 1)
            c = np.concatenate([np.r_[grid[:, vi], v] for vi, v in enumerate(B_idx)])
            add_rows(r, c, np.tile(np.r_[np.ones(na), -1.0], nb), np.zeros(nb), np.zeros(nb))
            n_var += na * nb
    else:
        z = n_var + np.arange(len(used))
        product_index = {(int(i), int(j)): int(v) for (i, j), v in zip(used, z)}
        n_var += len(used)
        # which side each product needs: the objective is maximised, resource rows are upper bounds
        push_up = np.zeros(len(used), dtype=bool)  # something rewards a large z -> needs z <= x_i, z <= x_j
        push_down = np.zeros(len(used), dtype=bool)  # something rewards a small z -> needs z >= x_i + x_j - 1
        for form, sign in [(obj, 1.0)] + [(f, -1.0) for f, _ in cons.values()]:
            at = np.array([product_index[(int(i), int(j))] - n_base for i, j in form.pairs], dtype=np.int64)
            push_up[at[sign * form.weights > 0]] = True
            push_down[at[sign * form.weights < 0]] = True
        for side in (0, 1):  # z - x_side <= 0
            k = np.flatnonzero(push_up)
            add_rows(
                np.repeat(np.arange(len(k)), 2),
                np.stack([z[k], used[k, side]], 1).ravel(),
                np.tile([1.0, -1.0], len(k)),
                np.full(len(k), -np.inf),
                np.zeros(len(k)),
            )
        k = np.flatnonzero(push_down)  # z - x_i - x_j >= -1
        add_rows(
            np.repeat(np.arange(len(k)), 3),
            np.stack([z[k], used[k, 0], used[k, 1]], 1).ravel(),
            np.tile([1.0, -1.0, -1.0], len(k)),
            np.full(len(k), -1.0),
            np.full(len(k), np.inf),
        )

    def coefficients(form: QuadraticForm) -> np.ndarray:
        vec = np.zeros(n_var)
        vec[:dim] = form.linear
        np.add.at(vec, [product_index[(int(i), int(j))] for i, j in form.pairs], form.weights)
        return vec

    # resource rows, scaled to unit largest coefficient for the solver's tolerances
    budget_rows, budget_scale = [], []
    for form, budget in cons.values():
        vec = coefficients(form)
        scale = float(np.abs(vec).max()) or 1.0
        nz = np.flatnonzero(vec)
        budget_rows.append(n_rows)
        budget_scale.append(scale)
        add_rows(
            np.zeros(len(nz), dtype=np.int64),
            nz,
            vec[nz] / scale,
            np.full(1, -np.inf),
            np.full(1, (budget - form.const) / scale),
        )

    A = sparse.csr_array((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_rows, n_var))
    integrality = np.zeros(n_var)
    integrality[:dim] = 1
    return Linearized(
        c=-coefficients(obj),
        const=obj.const,
        A=A,
        lo=np.concatenate(lo),
        hi=np.concatenate(hi),
        integrality=integrality,
        budget_rows=np.asarray(budget_rows, dtype=np.int64),
        budget_scale=np.asarray(budget_scale),
        product_index=product_index,
    )


def _evaluate(
    objective: QuadraticForm, constraints: Mapping[str, tuple[QuadraticForm, float]], x: np.ndarray
) -> tuple[float, dict[str, float]]:
    """Objective and resources at one encoding ``x (dim,)``, in float64."""
    return float(objective(x[None])[0]), {n: float(f(x[None])[0]) for n, (f, _) in constraints.items()}


def _smallest(space: OneHotSpace, form: QuadraticForm, time_limit: float) -> str:
    """The smallest value a resource can take in the space, as text (for the "infeasible" message)."""
    neg = QuadraticForm(-form.const, -form.linear, form.pairs, -form.weights)
    sol = solve(space, neg, {}, backend="highs", time_limit=time_limit)
    if sol.status == "optimal":
        return f"{-sol.objective:.6g}"
    return "unknown" if sol.bound is None else f">= {-sol.bound:.6g}"  # only a proved bound, not optimality


def _infeasible_message(
    space: OneHotSpace, constraints: Mapping[str, tuple[QuadraticForm, float]], time_limit: float
) -> str:
    parts = [
        f"{name} <= {budget:.6g} (smallest possible {name}: {_smallest(space, form, time_limit)})"
        for name, (form, budget) in constraints.items()
    ]
    return "no architecture satisfies " + " and ".join(parts) + "; raise the budget(s)"


def _solve_brute(
    space: OneHotSpace, objective: QuadraticForm, constraints: Mapping[str, tuple[QuadraticForm, float]]
) -> tuple[np.ndarray | None, str]:
    X = space.enumerate(limit=ENUMERATE_LIMIT)
    feasible = np.ones(len(X), dtype=bool)
    for form, budget in constraints.values():
        feasible &= form(X) <= budget
    if not feasible.any():
        return None, "no architecture of the enumerated space meets the budgets"
    values = np.where(feasible, objective(X), -np.inf)
    return X[int(values.argmax())], f"enumerated {len(X)} architectures, {int(feasible.sum())} feasible"


def solve(
    space: OneHotSpace,
    objective: QuadraticForm,
    constraints: Mapping[str, tuple[QuadraticForm, float]] | None = None,
    *,
    backend: Literal["highs", "brute"] = "highs",
    linearization: Literal["rlt", "mccormick"] = "rlt",
    time_limit: float = 60.0,
    rel_gap: float = 1e-6,
) -> Solution:
    """Maximise ``objective`` over the space subject to ``resource(x) <= budget`` for every constraint.

    Args:
        constraints: name -> ``(resource form, budget)``; every budget holds exactly (float64) at the pick.
        backend: ``"highs"`` (MILP) or ``"brute"`` (enumeration; small spaces only).
        linearization: ``"rlt"`` or ``"mccormick"`` (HiGHS only; module docstring).
        time_limit: seconds for HiGHS; past it an incumbent is returned as ``"feasible"``.
        rel_gap: HiGHS' relative optimality tolerance; ``"optimal"`` means proved within it.

    Returns:
        A ``Solution``. An impossible budget gives ``status="infeasible"`` and a message naming the smallest
        achievable value of each resource, not an exception.

    Example:
        >>> from damokit.nas.iqnas_encoding import macro_space
        >>> space = macro_space()
        >>> acc = QuadraticForm(0.0, np.tile([0.0, 1.0, 2.0], 8))
        >>> cost = QuadraticForm(0.0, np.tile([0.0, 1.0, 3.0], 8))
        >>> sol = solve(space, acc, {"cost": (cost, 8.0)})
        >>> sol.status, sol.objective, sol.resources["cost"]
        ('optimal', 8.0, 8.0)
    """
    constraints = dict(constraints or {})
    _check_problem(space, objective, constraints)
    if backend not in ("highs", "brute"):
        raise ValueError(f"backend must be 'highs' or 'brute'; got {backend!r}")
    if not time_limit > 0:
        raise ValueError(f"time_limit must be > 0 seconds; got {time_limit}")
    if not 0 <= rel_gap < 1:
        raise ValueError(f"rel_gap must lie in [0, 1) (HiGHS relative optimality tolerance); got {rel_gap}")
    budgets = {n: float(b) for n, (_, b) in constraints.items()}
    start = time.perf_counter()
    if backend == "brute":
        x, message = _solve_brute(space, objective, constraints)
        status: Status = "optimal" if x is not None else "infeasible"
        solver_obj = bound = None if x is None else float(objective(x[None])[0])
        n_var = n_con = 0
    else:
        lin = linearize(space, objective, constraints, linearization)
        hi = lin.hi.copy()
        tightened = False
        for _ in range(4):  # re-solve with a tightened row if tolerances let a budget violation through
            res = milp(
                lin.c,
                integrality=lin.integrality,
                bounds=Bounds(0.0, 1.0),
                constraints=LinearConstraint(lin.A, lin.lo, hi),
                options={"time_limit": float(time_limit), "mip_rel_gap": float(rel_gap), "disp": False},
            )
            x = None if res.x is None else np.round(res.x[: space.dim])
            if x is None:
                break
            _, used = _evaluate(objective, constraints, x)
            over = [
                (row, scale, used[n] - budgets[n])
                for (n, _), row, scale in zip(constraints.items(), lin.budget_rows, lin.budget_scale)
                if used[n] > budgets[n]
            ]
            if not over:
                break
            tightened = True
            for row, scale, excess in over:
                hi[row] -= excess / scale + 1e-9 * max(1.0, abs(hi[row]))
        else:
            x = None
        n_var, n_con = lin.A.shape[1], lin.A.shape[0]
        message = str(res.message)
        if x is not None:
            status = "optimal" if res.status == 0 else "feasible"
            solver_obj = float(lin.const - res.fun)
            bound = float(lin.const - res.mip_dual_bound) if res.mip_dual_bound is not None else None
            if tightened:  # optimality and bound hold for the tightened rows only, not for the asked budgets
                status, bound = "feasible", None
                message += "; a budget row was tightened to absorb solver tolerance, so optimality is not claimed"
        else:
            status = "infeasible" if res.status == 2 else "no_solution"
            solver_obj = bound = None
    elapsed = time.perf_counter() - start
    if x is None:
        if status == "infeasible" and constraints:
            message = _infeasible_message(space, constraints, time_limit)
        return Solution(
            status, None, None, None, None, None, None, None, {}, budgets, elapsed, backend, message, n_var, n_con
        )
    space.check(x)
    value, used = _evaluate(objective, constraints, x)
    op_ids, depth = space.decode(x[None])
    gap = None if bound is None else max(0.0, bound - value)
    return Solution(
        status,
        x,
        op_ids[0],
        depth[0],
        value,
        solver_obj,
        bound,
        gap,
        used,
        budgets,
        elapsed,
        backend,
        message,
        n_var,
        n_con,
    )
