"""IQNAS integer program: HiGHS on the RLT and McCormick linearisations vs brute-force enumeration.

Rows (all timed in this process, same predictor and budgets for every solver):
* NAS-Bench-Macro (24 binaries, 252 pairwise terms, FLOPs row): quadratic predictor fitted on 500 nets,
  four FLOPs budgets; brute force over the 6,561 nets is the baseline;
* the planted space of spec §10 (B) (45 binaries, 592,704 nets) with the fitted quadratic predictor
  (927 pairwise terms) under a latency budget;
* the paper-size space (255 binaries; too large to enumerate) with a within-stage quadratic: time to a
  proved optimum or the gap at the time limit (no baseline).
Each row checks that the solvers agree on the optimum; a mismatch is printed in the note.
"""

from __future__ import annotations

import time

import numpy as np
import scipy
import torch

from damokit.benchmarking import BenchResult
from damokit.nas.bench_macro import load_bench_macro
from damokit.nas.iqnas import macro_predictor, macro_resources
from damokit.nas.iqnas_encoding import QuadraticForm, macro_space, mobilenet_space
from damokit.nas.iqnas_predictors import fit_quadratic, pair_index
from damokit.nas.iqnas_program import solve
from damokit.registry import register_benchmark
from damokit.reproduce.iqnas import planted_instance


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _compare(label, space, obj, cons, rows, brute=True):
    ref, t_brute = _timed(lambda: solve(space, obj, cons, backend="brute")) if brute else (None, None)
    for lin in ("rlt", "mccormick"):
        sol, t = _timed(lambda lin=lin: solve(space, obj, cons, linearization=lin, time_limit=120.0))
        agree = ref is None or (sol.found and abs(sol.objective - ref.objective) <= 1e-6)
        rows.append(
            {
                "what": f"{label}: HiGHS {lin}",
                "baseline_s": t_brute,
                "candidate_s": t,
                "ratio": None if t_brute is None else t_brute / t,
                "status": sol.status,
                "note": f"{sol.num_variables} vars, {sol.num_constraints} rows"
                + ("" if agree else "; DISAGREES WITH BRUTE FORCE"),
            }
        )


@register_benchmark("iqnas", paper="2110.12399")
def run(quick: bool) -> BenchResult:
    """Integer-program solve time vs brute-force enumeration (ratio = brute / HiGHS)."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(2)
    rows: list[dict] = []
    with threadpool_limits(limits=1, user_api="blas"):
        bench = load_bench_macro()
        perm = np.random.default_rng(0).permutation(len(bench))
        quad, _ = macro_predictor("quadratic", perm[:500], bench)
        flops = macro_resources(bench)["flops"]
        for q in (25, 75) if quick else (10, 25, 50, 75):
            b = float(np.quantile(bench.flops, q / 100))
            _compare(f"NAS-Bench-Macro, FLOPs <= {b / 1e6:.1f} M", macro_space(), quad, {"flops": (flops, b)}, rows)

        space, truth, latency = planted_instance(0)
        rng = np.random.default_rng(1)
        X = space.encode(*space.sample(4_000, rng))
        pred = fit_quadratic(space, X[:2000], truth(X[:2000]) + rng.normal(scale=0.5, size=2000), ridge=1.0)
        budget = float(np.quantile(latency(X[2000:]), 0.3))
        _compare("planted 592,704 nets, latency 30 % quantile", space, pred, {"latency": (latency, budget)}, rows)

        if not quick:
            big = mobilenet_space()
            g = np.random.default_rng(2)
            lat = QuadraticForm(0.0, np.r_[g.uniform(0.5, 2.0, 240), np.zeros(15)])
            P = pair_index(big, "within_stage")
            obj = QuadraticForm(0.0, g.normal(size=big.dim), P, g.normal(scale=1.5, size=len(P)))
            b = float(np.median(lat(big.encode(*big.sample(2000, g)))))
            _compare("paper-size, within-stage quadratic", big, obj, {"latency": (lat, b)}, rows, brute=False)
    return BenchResult(
        name="iqnas",
        title="IQNAS integer program: HiGHS (RLT / McCormick linearisation) vs brute-force enumeration",
        rows=rows,
        conditions={
            "scipy": scipy.__version__,
            "blas_threads": 1,
        },
        notes="ratio = brute-force seconds / HiGHS seconds; status 'optimal' = proved by HiGHS (rel gap 1e-6).",
    )
