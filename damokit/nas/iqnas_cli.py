"""``damokit nas iqnas``: budgeted search on NAS-Bench-Macro and the per-choice contribution table.

Plugged into the ``damokit nas`` group by ``damokit/cli/nas.py`` (its ``_PLUGINS`` hook). Thin: parse,
call ``damokit.nas.iqnas.search_macro``, print.
"""

from __future__ import annotations

import argparse

__all__ = ["add_iqnas_parser"]

_BENCHES = ("nas-bench-macro",)


def add_iqnas_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "iqnas",
        help="IQNAS: fit an interpretable accuracy predictor, solve the budgeted integer program",
        description="'search' (default) prints the pick, the solver status/bound/gap and the benchmark's oracle; "
        "'explain' prints the per-choice contribution table of the fitted predictor.",
    )
    p.add_argument("action", nargs="?", default="search", choices=["search", "explain"])
    p.add_argument("--bench", default="nas-bench-macro", choices=_BENCHES, help="tabular benchmark to search")
    p.add_argument("--budget-flops", type=float, default=None, help="max FLOPs (benchmark units, e.g. 45e6)")
    p.add_argument("--budget-params", type=float, default=None, help="max parameters (e.g. 1.5e6)")
    p.add_argument("--predictor", default="quadratic", choices=["quadratic", "linear", "contribution"])
    p.add_argument("--n", type=int, default=500, help="measured architectures to fit the predictor on")
    p.add_argument("--ridge", type=float, default=None, help="L2 penalty (default: quadratic 10, linear 1)")
    p.add_argument("--linearization", default="rlt", choices=["rlt", "mccormick"])
    p.add_argument("--time-limit", type=float, default=60.0, help="solver time limit in seconds")
    p.add_argument("--seed", type=int, default=0, help="seed of the measured sample")
    p.set_defaults(func=_iqnas)


def _iqnas(args: argparse.Namespace) -> int:
    from damokit.nas.iqnas import search_macro

    res = search_macro(
        budget_flops=args.budget_flops,
        budget_params=args.budget_params,
        predictor=args.predictor,
        n=args.n,
        seed=args.seed,
        ridge=args.ridge,
        linearization=args.linearization,
        time_limit=args.time_limit,
    )
    sol = res.solution
    print(
        f"predictor {res.predictor}: {res.measured} measured architectures, held-out Kendall tau {res.tau_heldout:.3f}"
    )
    if args.action == "explain":
        print(res.table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        return 0
    budgets = ", ".join(f"{k} <= {v:.6g}" for k, v in sol.budgets.items()) or "none"
    print(f"budgets: {budgets}")
    print(
        f"solver: {sol.backend} {sol.status} in {sol.time_s:.2f} s ({sol.num_variables} variables, "
        f"{sol.num_constraints} rows)"
    )
    if not sol.found:
        print(f"no pick: {sol.message}")
        return 1
    bound = "n/a" if sol.bound is None else f"{sol.bound:.4f}"
    gap = "n/a" if sol.gap is None else f"{sol.gap:.2e}"
    print(f"pick {res.arch}: predicted {sol.objective:.3f} %, bound {bound}, gap {gap}")
    print(f"  recorded accuracy {res.accuracy:.2f} %, FLOPs {res.flops:.6g}, params {res.params:.6g}")
    print(
        f"oracle {res.oracle_arch}: {res.oracle_accuracy:.2f} %; mean of feasible nets {res.random_feasible_mean:.2f} %"
    )
    return 0
