"""Miniature reproduction of IQNAS / BINAS (arXiv 2110.12399) on a 2-core CPU (spec §10).

(A) NAS-Bench-Macro (6,561 CIFAR-10-trained nets; a look-up replaces the paper's supernet measurement):
    FLOPs/params exactly linear in the encoding; held-out Kendall tau of the linear and quadratic
    predictors vs the number of measured nets, and of the 17-look-up contribution estimator; the integer
    program's pick at four FLOPs budgets against the feasible oracle and the feasible mean, each solve
    checked against brute force and for strict feasibility.
(B) planted interactions: a quadratic ground truth on a reduced paper-style space (3 stages x depth
    {1,2,3} x 4 ops, 592,704 nets, enumerable) where the pairwise terms matter; then the solver on the
    paper-size encoding (5 stages x depth {2,3,4} x 12 ops) with a time limit, reporting status and gap.
(L) resources on the MobileNetV3-like space: exact FLOPs against the whole-network counter, and CPU
    latency: a per-block lookup table, calibrated on whole networks (the official linear correction),
    then a latency-budgeted solve whose pick is measured. The machine is shared, so the forward's CPU
    time on one thread is measured (wall time includes waiting descheduled; see ``measure_latency``).
(C) the spec's optional tiny-supernet run is not implemented (see the final report of issue 6).

The paper's own tables could not be read (spec §0): the only paper figures are the BINAS README's
ImageNet results (one "not comparable" row). Reference values marked "measured for damokit" come from
the spec and are targets, not paper claims. Quick mode takes about a minute on an idle 2-core CPU; full
mode (5 seeds for the predictor curves, 60-s solver limit at paper scale, more latency samples) takes
about 5-10 minutes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from damokit.nas.bench_macro import load_bench_macro
from damokit.nas.iqnas import macro_predictor, macro_resources
from damokit.nas.iqnas_encoding import (
    OneHotSpace,
    QuadraticForm,
    macro_encode,
    macro_rows,
    macro_space,
    mobilenet_space,
)
from damokit.nas.iqnas_predictors import (
    contribution_estimator,
    contribution_table,
    fit_linear,
    fit_quadratic,
    pair_index,
    rank_correlation,
)
from damokit.nas.iqnas_program import solve
from damokit.nas.iqnas_resources import (
    calibrate,
    fit_resource,
    measure_latency,
    measure_lut,
    mobilenet_resources,
    mobilenet_structure,
)
from damokit.registry import register_reproduction
from damokit.reproduce.result import ClaimRow, ReproResult, Verdict, conditions, verdict_from

__all__ = ["run", "planted_instance"]

_N_TRAIN = (50, 100, 200, 500)
_QUANTILES = (10, 25, 50, 75)
_TEST = 1000  # disjoint held-out architectures for tau (spec §10 A)
# spec §10 (measured for damokit, seed 0; targets, not paper claims)
_REF_TAU = {"linear": (0.664, 0.804, 0.854, 0.862), "quadratic": (0.688, 0.793, 0.834, 0.875)}
_REF_CONTRIB_TAU = 0.817
_REF_PICK = (90.65, 91.90, 92.04, 92.25)  # quadratic N=500
_REF_ORACLE = (90.75, 91.94, 92.31, 92.83)
_REF_PLANTED = {"tau_linear": 0.543, "tau_quadratic": 0.978, "pick": 18.29, "optimum": 18.29}
# BINAS README (spec §8): ImageNet top-1 at Intel Xeon CPU latency (ms), batch 1
_BINAS = {"A": (37, 75.9), "B": (41, 76.5), "C": (45, 77.0), "D": (50, 77.6), "E": (56, 77.8), "F": (59, 78.0)}


# ----------------------------------------------------------------------------------- (A) NAS-Bench-Macro
def _part_a(seeds: tuple[int, ...]) -> dict:
    bench = load_bench_macro()
    space = macro_space()
    X = macro_encode(bench.choices)
    acc = bench.mean_acc
    res = macro_resources(bench)
    lin_err = max(float(np.abs(res[k](X) - getattr(bench, k)).max()) for k in ("flops", "params"))

    taus = {k: np.zeros((len(seeds), len(_N_TRAIN))) for k in ("linear", "quadratic")}
    rmse500 = {}
    for si, seed in enumerate(seeds):
        perm = np.random.default_rng(seed).permutation(len(bench))
        test = perm[-_TEST:]
        for ni, n in enumerate(_N_TRAIN):
            for kind in ("linear", "quadratic"):
                form, _ = macro_predictor(kind, perm[:n], bench)
                taus[kind][si, ni] = rank_correlation(form(X[test]), acc[test])
                if n == 500 and si == 0:
                    rmse500[kind] = float(np.sqrt(np.mean((form(X[test]) - acc[test]) ** 2)))
    contrib, n_contrib = macro_predictor("contribution", np.zeros(0), bench)

    # interpretability (spec §6): effect of replacing identity by a block, per layer, quadratic N=500
    perm0 = np.random.default_rng(seeds[0]).permutation(len(bench))
    q500, _ = macro_predictor("quadratic", perm0[:500], bench)
    table = contribution_table(space, q500, reference_op=0, X_mean=X[perm0[:500]].mean(0))
    effect = table[table.choice != "id"].groupby(["stage", "layer"]).accuracy.mean()  # points, per layer
    tau_contrib = rank_correlation(contrib(X), acc)

    # budgeted picks (seed of the first run)
    perm = np.random.default_rng(seeds[0]).permutation(len(bench))
    predictors = {
        "quadratic N=500": macro_predictor("quadratic", perm[:500], bench)[0],
        "quadratic N=100": macro_predictor("quadratic", perm[:100], bench)[0],
        "linear N=500": macro_predictor("linear", perm[:500], bench)[0],
        "contribution (17)": contrib,
    }
    budgets = [float(np.quantile(bench.flops, q / 100)) for q in _QUANTILES]
    picks = {name: [] for name in predictors}
    checks = {"solves": 0, "optimal": 0, "feasible_exact": 0, "equals_brute": 0, "times": []}
    oracle, rand_mean = [], []
    for b in budgets:
        feasible = bench.flops <= b
        oracle.append(float(acc[feasible].max()))
        rand_mean.append(float(acc[feasible].mean()))
        for name, form in predictors.items():
            sol = solve(space, form, {"flops": (res["flops"], b)})
            ref = solve(space, form, {"flops": (res["flops"], b)}, backend="brute")
            row = int(macro_rows(sol.op_ids[None])[0])
            picks[name].append(float(acc[row]))
            checks["solves"] += 1
            checks["optimal"] += sol.status == "optimal"
            checks["feasible_exact"] += bool(bench.flops[row] <= b and sol.resources["flops"] <= b)
            checks["equals_brute"] += abs(sol.objective - ref.objective) <= 1e-6
            checks["times"].append(sol.time_s)
    return {
        "lin_err": lin_err,
        "taus": taus,
        "rmse500": rmse500,
        "tau_contrib": tau_contrib,
        "n_contrib": n_contrib,
        "budgets": budgets,
        "picks": picks,
        "oracle": oracle,
        "rand_mean": rand_mean,
        "checks": checks,
        "effect": effect,
        "flops": bench.flops,
        "acc": acc,
    }


# ---------------------------------------------------------------------------------- (B) planted instance
def planted_instance(seed: int = 0) -> tuple[OneHotSpace, QuadraticForm, QuadraticForm]:
    """Spec §10 (B): truth ``w'x + sum_P W_ij x_i x_j`` with P = the 144 op pairs of layers of one stage.

    ``w ~ N(0, 1)``, ``W ~ N(0, 1.5^2)``; latency: an additive table (ops cost 1-4 units by op index plus
    noise, depth entries free). Returns ``(space, truth, latency)``.
    """
    space = OneHotSpace(depths=((1, 2, 3),) * 3, ops=("op0", "op1", "op2", "op3"))
    rng = np.random.default_rng(seed)
    P = pair_index(space, "within_stage")
    n_ops = space.num_layers * space.num_ops
    P = P[(P[:, 0] < n_ops) & (P[:, 1] < n_ops)]  # op-op pairs only (active layers of one stage)
    assert len(P) == 144
    truth = QuadraticForm(0.0, rng.normal(size=space.dim), P, rng.normal(scale=1.5, size=len(P)))
    table = np.zeros(space.dim)
    table[:n_ops] = np.tile(np.arange(1.0, 5.0), space.num_layers) + rng.uniform(0, 0.5, n_ops)
    return space, truth, QuadraticForm(0.0, table)


def _part_b(seed: int, scale_limit: float) -> dict:
    space, truth, latency = planted_instance(seed)
    rng = np.random.default_rng(seed + 1)
    X_pool = space.encode(*space.sample(44_000, rng))  # 40 000 for the budget and random baseline, then 2 x 2 000
    budget = float(np.quantile(latency(X_pool[:40_000]), 0.3))
    X_tr, X_te = X_pool[40_000:42_000], X_pool[42_000:]
    y_tr = truth(X_tr) + rng.normal(scale=0.5, size=len(X_tr))  # label noise sigma = 0.5
    lin = fit_linear(space, X_tr, y_tr, ridge=1.0)
    quad = fit_quadratic(space, X_tr, y_tr, ridge=1.0)
    out = {
        "tau_linear": rank_correlation(lin(X_te), truth(X_te)),
        "tau_quadratic": rank_correlation(quad(X_te), truth(X_te)),
        "budget": budget,
    }
    # the constructed estimator on a space with depth: pure vs official bookkeeping (spec §4.1)
    for variant in ("pure", "official"):
        est, n_eval = contribution_estimator(space, lambda o, d: truth(space.encode(o, d)), base_op=0, variant=variant)
        out[f"tau_contrib_{variant}"] = rank_correlation(est(X_te), truth(X_te))
    out["n_contrib"] = n_eval
    cons = {"latency": (latency, budget)}
    sol = solve(space, quad, cons)
    start = time.perf_counter()
    brute = solve(space, quad, cons, backend="brute")
    out["brute_s"] = time.perf_counter() - start
    sol_lin = solve(space, lin, cons)
    true_opt = solve(space, truth, cons, backend="brute")
    feas_pool = X_pool[:40_000][latency(X_pool[:40_000]) <= budget][:10_000]
    out.update(
        status=sol.status,
        solve_s=sol.time_s,
        equals_brute=abs(sol.objective - brute.objective) <= 1e-6,
        feasible=sol.resources["latency"] <= budget,
        pick=float(truth(sol.x[None])[0]),
        pick_linear=float(truth(sol_lin.x[None])[0]),
        optimum=true_opt.objective,
        random_best=float(truth(feas_pool).max()),
        random_mean=float(truth(feas_pool).mean()),
        n_random=len(feas_pool),
        pred_te=quad(X_te),
        true_te=truth(X_te),
    )
    # scale-up: paper-size encoding, random quadratic of the same kinds (spec §5.1 solver facts)
    big = mobilenet_space()
    g = np.random.default_rng(seed + 2)
    lat_big = QuadraticForm(0.0, np.r_[g.uniform(0.5, 2.0, big.num_layers * big.num_ops), np.zeros(big.num_beta)])
    b_big = float(np.median(lat_big(big.encode(*big.sample(2000, g)))))
    out["scale"] = {}
    kinds = (
        ("linear in z (bilinear alpha x beta)", None),
        ("adjacent-layer quadratic", "adjacent"),
        ("within-stage quadratic", "within_stage"),
    )
    for kind, pairs in kinds:
        P = np.zeros((0, 2), dtype=np.int64) if pairs is None else pair_index(big, pairs)
        obj = QuadraticForm(0.0, g.normal(size=big.dim), P, g.normal(scale=1.5, size=len(P)))
        s = solve(big, obj, {"latency": (lat_big, b_big)}, time_limit=scale_limit)
        out["scale"][kind] = (s.status, s.time_s, s.gap, len(P), s.num_variables)
    return out


# -------------------------------------------------------------------------------- (L) latency resources
def _part_latency(n_nets: int, resolution: int, seed: int) -> dict:
    space = mobilenet_space()
    rng = np.random.default_rng(seed)
    op_ids, depth = space.sample(n_nets, rng)
    X = space.encode(op_ids, depth)
    nets = [mobilenet_structure(o, d) for o, d in zip(op_ids, depth)]
    flops = mobilenet_resources(space, resolution=224)["mflops"]
    flops_err = float(np.abs(flops(X) - [n.flops(224, extras=False) / 1e6 for n in nets]).max())
    start = time.perf_counter()
    lut = measure_lut(space, resolution=resolution, rounds=3)
    measured = measure_latency(nets, resolution=resolution, rounds=3)
    half = n_nets // 2
    calibrated, slope, intercept = calibrate(lut, X[:half], measured[:half])
    pred = calibrated(X[half:])
    # the alternative without a table: a linear form regressed on the measured whole networks only
    regressed, _ = fit_resource(space, X[:half], measured[:half], ridge=1e-3)
    mape_regressed = float(np.mean(np.abs(regressed(X[half:]) - measured[half:]) / measured[half:]))
    # a latency-budgeted solve: maximise FLOPs (a capacity proxy; no accuracy data for this space)
    budget = float(np.median(measured))
    sol = solve(space, flops, {"latency": (calibrated, budget)})
    # time the pick together with the sampled nets again, so that it meets the same load; the budget is
    # compared after rescaling by how much the sampled nets' median moved between the two measurements
    again = measure_latency([mobilenet_structure(sol.op_ids, sol.depth), *nets], resolution=resolution, rounds=3)
    pick = again[0] * budget / float(np.median(again[1:]))
    return {
        "flops_err": flops_err,
        "tau_lut": rank_correlation(lut(X), measured),
        "mape": float(np.mean(np.abs(pred - measured[half:]) / measured[half:])),
        "mape_regressed": mape_regressed,
        "slope": slope,
        "intercept": intercept,
        "budget_ms": budget * 1e3,
        "pick_ms": pick * 1e3,
        "pick_status": sol.status,
        "seconds": time.perf_counter() - start,
        "n": n_nets,
        "resolution": resolution,
    }


# -------------------------------------------------------------------------------------------- plotting
def _plot(out_dir: Path, a: dict, b: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for kind, color in (("linear", "tab:blue"), ("quadratic", "tab:red")):
        ax.plot(_N_TRAIN, a["taus"][kind].mean(0), "o-", color=color, label=f"{kind} (ours)")
        ax.plot(_N_TRAIN, _REF_TAU[kind], "x--", color=color, alpha=0.5, label=f"{kind} (spec reference)")
    ax.axhline(a["tau_contrib"], color="gray", ls=":", label=f"contribution estimator ({a['n_contrib']} look-ups)")
    ax.set(xscale="log", xlabel="measured architectures N", ylabel="held-out Kendall tau", title="(A) predictors")
    ax.set_xticks(_N_TRAIN, [str(n) for n in _N_TRAIN])
    ax.minorticks_off()
    ax.legend(fontsize=7)
    ax = axes[1]
    ax.scatter(a["flops"] / 1e6, a["acc"], s=2, color="lightgray", label="all 6,561 nets")
    order = np.argsort(a["flops"])
    frontier = np.maximum.accumulate(a["acc"][order])
    ax.step(a["flops"][order] / 1e6, frontier, where="post", color="k", lw=1, label="oracle frontier")
    mb = np.asarray(a["budgets"]) / 1e6
    for k, ((name, vals), marker) in enumerate(zip(a["picks"].items(), "o^sD")):
        ax.plot(mb + 0.8 * (k - 1.5), vals, marker, ls="none", label=f"IQP pick: {name}")  # offset: ties overlap
    ax.plot(mb, a["rand_mean"], "k_", ms=14, ls="none", label="feasible mean")
    ax.set(xlabel="FLOPs budget (M)", ylabel="CIFAR-10 accuracy (%)", ylim=(84, 94), title="(A) budgeted picks")
    ax.legend(fontsize=7, loc="lower right")
    ax = axes[2]
    ax.scatter(b["true_te"], b["pred_te"], s=3, alpha=0.5)
    lim = [min(b["true_te"].min(), b["pred_te"].min()), max(b["true_te"].max(), b["pred_te"].max())]
    ax.plot(lim, lim, "k--", lw=1)
    ax.set(xlabel="true value", ylabel="quadratic prediction", title=f"(B) planted, tau={b['tau_quadratic']:.3f}")
    fig.tight_layout()
    path = out_dir / "iqnas_predictors_and_picks.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt(values) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


# ------------------------------------------------------------------------------------------- the run
@register_reproduction("iqnas", paper="2110.12399")
def run(quick: bool, out_dir: Path) -> ReproResult:
    """IQNAS miniature: predictors and budgeted integer programs on NAS-Bench-Macro and a planted space."""
    from threadpoolctl import threadpool_limits

    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = (0,) if quick else (0, 1, 2, 3, 4)
    # The matrices here are small (<= 2 000 x 1 000): one BLAS thread avoids the spin-wait contention
    # that made a 1500 x 276 SVD take 13 s instead of 0.18 s on the shared 2-core machine.
    with threadpool_limits(limits=1, user_api="blas"):
        a = _part_a(seeds)
        b = _part_b(0, scale_limit=5.0 if quick else 60.0)
        lat = _part_latency(16 if quick else 60, 64 if quick else 128, 0)

    rows = []
    rows.append(
        ClaimRow(
            "FLOPs and params are exactly linear in the one-hot encoding (NAS-Bench-Macro)",
            "max |table sum - recorded| over 6,561 nets",
            "exact (spec §3)",
            "spec §3, §10 A1",
            a["lin_err"],
            verdict_from(a["lin_err"] < 1e-6),
        )
    )
    tq, tl = a["taus"]["quadratic"][0], a["taus"]["linear"][0]  # seed 0, as the spec's reference
    for kind, t in (("quadratic", tq), ("linear", tl)):
        mean = a["taus"][kind].mean(0)
        spread = f"mean over seeds {list(seeds)}: {_fmt(mean)}; " if len(seeds) > 1 else ""
        rows.append(
            ClaimRow(
                f"{kind} predictor ranks held-out nets (N = 50/100/200/500 measured)",
                f"Kendall tau on {_TEST} held-out nets (seed 0)",
                _fmt(_REF_TAU[kind]),
                "spec §10 A2",
                _fmt(t),
                verdict_from(abs(t[-1] - _REF_TAU[kind][-1]) < 0.03),
                note=f"{spread}RMSE at N=500 {a['rmse500'][kind]:.2f} points; reference measured for damokit",
            )
        )
    rows.append(
        ClaimRow(
            "quadratic predictor at least as good as linear at N = 500 (paper: quadratic > linear)",
            f"tau(quadratic) - tau(linear), N=500, mean of {len(seeds)} seed(s)",
            "> 0 (abstract)",
            "abstract; spec §10 caveat",
            round(float(a["taus"]["quadratic"].mean(0)[-1] - a["taus"]["linear"].mean(0)[-1]), 3),
            verdict_from(a["taus"]["quadratic"].mean(0)[-1] >= a["taus"]["linear"].mean(0)[-1] - 0.01),
            note="this space is nearly additive (spec); (B) is where pairs matter",
        )
    )
    eff = a["effect"]
    firsts = [float(eff[s].iloc[0]) for s in eff.index.levels[0]]
    rests = [float(eff[s].iloc[1:].mean()) for s in eff.index.levels[0]]
    rows.append(
        ClaimRow(
            "interpretable coefficients: adding width/depth helps most at the start of each resolution stage",
            "mean effect of a block vs identity: first layer / later layers, per stage (points)",
            "holds on ImageNet (abstract)",
            "abstract; spec §6",
            " ; ".join(f"s{i + 1}: {f:.2f}/{r:.2f}" for i, (f, r) in enumerate(zip(firsts, rests))),
            verdict_from(all(f > r for f, r in zip(firsts, rests))),
            note="quadratic predictor, N=500, mean-field effects (contribution_table)",
        )
    )
    rows.append(
        ClaimRow(
            "interpretable coefficients: adding width/depth helps more at deeper stages",
            "mean effect of a block vs identity per stage 1/2/3 (points)",
            "holds on ImageNet (abstract)",
            "abstract; spec §6",
            _fmt([float(eff[s].mean()) for s in eff.index.levels[0]]),
            verdict_from(bool(np.all(np.diff([eff[s].mean() for s in eff.index.levels[0]]) > 0))),
            note="NAS-Bench-Macro (CIFAR-10, 32 px) differs from the paper's ImageNet space",
        )
    )
    rows.append(
        ClaimRow(
            "accuracy-contribution estimator (no regression) ranks all nets",
            f"Kendall tau, {a['n_contrib']} look-ups around '11111111'",
            _REF_CONTRIB_TAU,
            "spec §10 A2",
            round(a["tau_contrib"], 3),
            verdict_from(abs(a["tau_contrib"] - _REF_CONTRIB_TAU) < 0.01),
            note="reference measured for damokit",
        )
    )
    q500 = a["picks"]["quadratic N=500"]
    budgets_m = " / ".join(f"{v / 1e6:.1f}" for v in a["budgets"])
    rows.append(
        ClaimRow(
            f"IQP pick (quadratic, N=500) within 1 point of the feasible oracle at FLOPs {budgets_m} M",
            "pick accuracy (%) [oracle]",
            f"{_fmt(_REF_PICK)} [{_fmt(_REF_ORACLE)}]",
            "spec §10 A3",
            f"{_fmt(q500)} [{_fmt(a['oracle'])}]",
            verdict_from(all(o - p <= 1.0 for p, o in zip(q500, a["oracle"]))),
            note="reference measured for damokit",
        )
    )
    others = "; ".join(f"{k}: {_fmt(v)}" for k, v in a["picks"].items() if k != "quadratic N=500")
    rows.append(
        ClaimRow(
            "IQP pick at least 2 points above the feasible mean at every budget",
            "pick - feasible mean (points)",
            ">= 2 (spec §10 A)",
            "spec §10 A",
            _fmt(np.subtract(q500, a["rand_mean"])),
            verdict_from(all(p - r >= 2.0 for p, r in zip(q500, a["rand_mean"]))),
            note=f"feasible mean {_fmt(a['rand_mean'])}; other predictors {others}",
        )
    )
    c = a["checks"]
    rows.append(
        ClaimRow(
            "every solve proved optimal, strictly feasible and equal to brute force",
            "optimal / strictly feasible / = brute force (of solves)",
            "all",
            "spec §5.1, §9 tests",
            f"{c['optimal']} / {c['feasible_exact']} / {c['equals_brute']} (of {c['solves']})",
            verdict_from(c["optimal"] == c["feasible_exact"] == c["equals_brute"] == c["solves"]),
            note=f"HiGHS (RLT) median {np.median(c['times']):.2f} s, max {max(c['times']):.2f} s per solve",
        )
    )
    rows.append(
        ClaimRow(
            "planted interactions: quadratic predictor captures what linear cannot",
            "held-out tau quadratic vs linear",
            f"{_REF_PLANTED['tau_quadratic']} vs {_REF_PLANTED['tau_linear']}",
            "spec §10 B",
            f"{b['tau_quadratic']:.3f} vs {b['tau_linear']:.3f}",
            verdict_from(b["tau_quadratic"] >= 0.9 and b["tau_quadratic"] >= b["tau_linear"] + 0.2),
            note="592,704-net space, 2,000 noisy training labels; reference measured for damokit",
        )
    )
    rows.append(
        ClaimRow(
            "planted: the IQP pick of the quadratic predictor is the true constrained optimum",
            "true value of pick [true optimum]",
            f"{_REF_PLANTED['pick']} [{_REF_PLANTED['optimum']}]",
            "spec §10 B",
            f"{b['pick']:.2f} [{b['optimum']:.2f}]",
            verdict_from(b["optimum"] - b["pick"] <= 1e-6 and b["equals_brute"] and b["feasible"]),
            note=(
                f"linear predictor's pick {b['pick_linear']:.2f}; best/mean of {b['n_random']} random feasible "
                f"{b['random_best']:.2f}/{b['random_mean']:.2f}; HiGHS {b['status']} {b['solve_s']:.2f} s vs "
                f"enumeration {b['brute_s']:.1f} s; spec's numbers come from another random instance"
            ),
        )
    )
    rows.append(
        ClaimRow(
            "contribution estimator on a space with depth: pure vs official bookkeeping",
            f"held-out tau vs planted truth ({b['n_contrib']} evaluations each)",
            "spec: keep whichever ranks better",
            "spec §4.1",
            f"pure {b['tau_contrib_pure']:.3f} vs official {b['tau_contrib_official']:.3f}",
            verdict_from(b["tau_contrib_pure"] >= b["tau_contrib_official"]),
            note="claim: the pure variant (damokit default) ranks at least as well; base = op0 at the smallest depths",
        )
    )
    for kind, (status, secs, gap, n_pairs, n_var) in b["scale"].items():
        gap_txt = "n/a" if gap is None else f"{gap:.3g}"
        rows.append(
            ClaimRow(
                f"paper-size space (255 binaries), {kind}: time to a proved optimum, else status and gap",
                "status, seconds, gap",
                "linear: optimal ~1 s; dense quadratic: gap open at 60 s (CP-SAT)",
                "spec §5.1 (measured for damokit)",
                f"{status}, {secs:.1f} s, gap {gap_txt}",
                Verdict.NOT_COMPARABLE,
                note=f"{n_pairs} pairs, {n_var} MILP variables, random coefficients; HiGHS (RLT), not CP-SAT or "
                f"the paper's CPLEX; limit {5 if quick else 60} s",
            )
        )
    rows.append(
        ClaimRow(
            "MobileNetV3-like space: FLOPs table sum equals the whole-network counter",
            "max |error| (MFLOPs) over sampled nets",
            "exact (spec §3)",
            "spec §3",
            lat["flops_err"],
            verdict_from(lat["flops_err"] < 1e-6),
        )
    )
    rows.append(
        ClaimRow(
            "CPU latency: calibrated lookup table predicts whole networks; the budgeted pick meets its budget",
            "held-out MAPE; tau(LUT sum, measured); pick/budget (ms)",
            "pick <= 1.1 x budget (spec §10 C)",
            "spec §3, §10 C",
            f"{lat['mape']:.1%}; {lat['tau_lut']:.2f}; {lat['pick_ms']:.2f}/{lat['budget_ms']:.2f}",
            verdict_from(lat["pick_ms"] <= 1.1 * lat["budget_ms"]),
            note=(
                f"{lat['n']} nets at {lat['resolution']} px, batch 1, 1 thread, thread CPU time (fastest of 3 "
                f"rounds) on a shared loaded CPU; calibration slope {lat['slope']:.2f}; linear regression on the same "
                f"{lat['n'] // 2} nets instead of the table: MAPE {lat['mape_regressed']:.1%}; objective = FLOPs "
                "(no accuracy data for this space)"
            ),
        )
    )
    binas = ", ".join(f"{k} {ms} ms/{top1} %" for k, (ms, top1) in _BINAS.items())
    rows.append(
        ClaimRow(
            "BINAS ImageNet models under CPU latency budgets",
            "top-1 at latency (Intel Xeon, batch 1)",
            binas,
            "BINAS README (spec §8)",
            None,
            Verdict.NOT_COMPARABLE,
            note="needs ImageNet supernet training; (C) tiny supernet not implemented",
        )
    )
    plots = [_plot(out_dir, a, b)]
    return ReproResult(
        paper="iqnas",
        title="IQNAS: Interpretable Integer Quadratic Programming Neural Architecture Search",
        rows=rows,
        conditions=conditions(
            seed=0,
            seeds=list(seeds),
            solver="scipy.optimize.milp (HiGHS), RLT linearisation",
            blas_threads=1,
            latency=f"{lat['n']} nets, {lat['resolution']} px, {lat['seconds']:.1f} s",
            load_average_1min=round(os.getloadavg()[0], 1),
        ),
        plots=plots,
        notes=(
            "Predictor accuracies on NAS-Bench-Macro are look-ups of trained-from-scratch CIFAR-10 nets, not "
            "supernet measurements. The paper's v1 tables were not readable; rows marked 'spec' compare with "
            "values measured for damokit when the spec was written."
        ),
    )
