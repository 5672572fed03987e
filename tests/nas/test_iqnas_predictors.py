"""IQNAS predictors: planted-quadratic recovery, the contribution estimator's formula, tables, errors."""

import numpy as np
import pytest

from damokit.nas.bench_macro import load_bench_macro
from damokit.nas.iqnas_encoding import OneHotSpace, QuadraticForm, macro_encode, macro_rows, macro_space
from damokit.nas.iqnas_predictors import (
    contribution_estimator,
    contribution_table,
    fit_linear,
    fit_quadratic,
    pair_index,
    rank_correlation,
)

DEPTH_SPACE = OneHotSpace(depths=((1, 2, 3), (2, 3)), ops=("a", "b", "c"))


def _planted(space: OneHotSpace, rng: np.random.Generator) -> QuadraticForm:
    P = pair_index(space, "all")
    return QuadraticForm(3.0, rng.normal(size=space.dim), P, rng.normal(size=len(P)))


def test_pair_sets():
    space = macro_space()
    # 8 layers x 3 ops, pairs of different layers: C(8, 2) * 9 = 252 (spec §10 A)
    assert len(pair_index(space, "all")) == 252
    # within stage (2/3/3 layers): (1 + 3 + 3) layer pairs * 9
    assert len(pair_index(space, "within_stage")) == 63
    # adjacent layers in network order: 7 * 9
    assert len(pair_index(space, "adjacent")) == 63
    # BINAS bilinear: every op entry (6 layers x 3) with every depth entry (3 + 2)
    assert len(pair_index(DEPTH_SPACE, "bilinear")) == 18 * 5 and len(pair_index(space, "bilinear")) == 0
    d = pair_index(DEPTH_SPACE, "adjacent")
    labels = DEPTH_SPACE.labels
    assert ("s1.l1:a", "s1.depth=1") in {(labels[i], labels[j]) for i, j in d}


@pytest.mark.parametrize("method", ["ridge", "svd"])
def test_quadratic_fit_recovers_a_planted_quadratic(method):
    rng = np.random.default_rng(0)
    space = macro_space()
    truth = _planted(space, rng)
    X_all = space.enumerate()
    train = rng.permutation(len(X_all))[:300]  # > 129, the rank of the features under the one-hot gauge
    form = fit_quadratic(space, X_all[train], truth(X_all[train]), ridge=1e-8, method=method)
    # noise-free and identifiable up to the one-hot gauge: values agree on all 6 561 architectures
    np.testing.assert_allclose(form(X_all), truth(X_all), atol=1e-5)
    # the linear ablation cannot represent it
    lin = fit_linear(space, X_all[train], truth(X_all[train]))
    assert rank_correlation(lin(X_all), truth(X_all)) < 0.8 < rank_correlation(form(X_all), truth(X_all))


def test_quadratic_fit_on_a_depth_space_and_dual_form():
    rng = np.random.default_rng(1)
    truth = _planted(DEPTH_SPACE, rng)
    X = DEPTH_SPACE.enumerate()
    idx = rng.permutation(len(X))
    # fewer samples than features: the dual (kernel) ridge path; still ranks held-out nets well
    n_feat = DEPTH_SPACE.dim + len(pair_index(DEPTH_SPACE))
    form = fit_quadratic(DEPTH_SPACE, X[idx[:150]], truth(X[idx[:150]]), ridge=1e-3)
    assert 150 < n_feat
    assert rank_correlation(form(X[idx[150:]]), truth(X[idx[150:]])) > 0.8


def test_contribution_estimator_is_exact_on_an_additive_truth():
    rng = np.random.default_rng(2)
    truth = QuadraticForm(50.0, rng.normal(size=DEPTH_SPACE.dim))
    calls = []

    def evaluate(op_ids, depth):
        calls.append(len(op_ids))
        return truth(DEPTH_SPACE.encode(op_ids, depth))

    est, n = contribution_estimator(DEPTH_SPACE, evaluate, base_op=1)
    X = DEPTH_SPACE.enumerate()
    np.testing.assert_allclose(est(X), truth(X), atol=1e-9)
    # 1 base + (2 + 1) other depths + 6 layers x 2 other ops, in one batch
    assert calls == [n] and n == 1 + 3 + 6 * 2


def test_official_variant_counts_depth_gains_again():
    rng = np.random.default_rng(3)
    truth = QuadraticForm(50.0, rng.normal(size=DEPTH_SPACE.dim))

    def evaluate(op_ids, depth):
        return truth(DEPTH_SPACE.encode(op_ids, depth))

    pure, _ = contribution_estimator(DEPTH_SPACE, evaluate, variant="pure")
    official, _ = contribution_estimator(DEPTH_SPACE, evaluate, variant="official")
    # official op coefficient of an optional layer = pure one + the depth gain of the smallest depth holding it
    # (spec §4.1 bookkeeping note); stage 1 layer 2 lives at depth 2, whose gain is beta[s1, d=2] - beta[s1, d=1]
    gain = pure.linear[DEPTH_SPACE.beta_offsets[0] + 1]
    layer = DEPTH_SPACE.layers.index((0, 1))
    np.testing.assert_allclose(
        official.linear[layer * 3 : layer * 3 + 3], pure.linear[layer * 3 : layer * 3 + 3] + gain
    )


def test_contribution_estimator_on_nas_bench_macro():
    # spec §10 (A): 17 look-ups around reference "11111111", tau = 0.817 over all 6 561 (measured for damokit)
    bench = load_bench_macro()
    est, n = contribution_estimator(macro_space(), lambda o, d: bench.mean_acc[macro_rows(o)], base_op=1)
    assert n == 17
    tau = rank_correlation(est(macro_encode(bench.choices)), bench.mean_acc)
    assert abs(tau - 0.817) < 0.005


def test_contribution_table_reads_coefficients():
    rng = np.random.default_rng(4)
    acc = QuadraticForm(0.0, rng.normal(size=DEPTH_SPACE.dim))
    cost = QuadraticForm(1.0, np.abs(rng.normal(size=DEPTH_SPACE.dim)))
    table = contribution_table(DEPTH_SPACE, acc, {"cost": cost}, reference_op=2)
    assert len(table) == DEPTH_SPACE.dim
    row = table[(table.stage == 2) & (table.layer == 1) & (table.choice == "a")].iloc[0]
    layer = DEPTH_SPACE.layers.index((1, 0))
    assert row.accuracy == pytest.approx(acc.linear[layer * 3] - acc.linear[layer * 3 + 2])
    assert row.accuracy_per_cost == pytest.approx(row.accuracy / row.cost)
    depth_rows = table[table.kind == "depth"]
    assert depth_rows.accuracy.iloc[0] == 0.0 and len(depth_rows) == 5
    # a pairwise term moves the mean-field effect by W * mean of the partner
    W = QuadraticForm(0.0, np.zeros(DEPTH_SPACE.dim), np.array([[1, 4]]), np.array([2.0]))
    t2 = contribution_table(DEPTH_SPACE, W, X_mean=np.full(DEPTH_SPACE.dim, 0.5))
    assert t2.accuracy.iloc[0] == 0.0 and t2.accuracy.iloc[1] == t2.accuracy.iloc[4] == pytest.approx(1.0)


def test_errors():
    space = macro_space()
    X = space.encode(*space.sample(10, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="pairs must be 'all', 'within_stage', 'adjacent' or 'bilinear'"):
        pair_index(space, "dense")
    with pytest.raises(ValueError, match="X has 10 rows but y has 9"):
        fit_linear(space, X, np.zeros(9))
    with pytest.raises(ValueError, match="at least 2 measured"):
        fit_linear(space, X[:1], np.zeros(1))
    with pytest.raises(ValueError, match="targets y must be finite"):
        fit_linear(space, X, np.full(10, np.nan))
    with pytest.raises(ValueError, match="ridge must be > 0"):
        fit_quadratic(space, X, np.zeros(10), ridge=0.0)
    with pytest.raises(ValueError, match="method must be 'ridge' or 'svd'"):
        fit_quadratic(space, X, np.zeros(10), method="lasso")
    with pytest.raises(ValueError, match=r"base_op must lie in \[0, 2\]"):
        contribution_estimator(space, lambda o, d: np.zeros(len(o)), base_op=3)
    with pytest.raises(ValueError, match="variant must be 'pure' or 'official'"):
        contribution_estimator(space, lambda o, d: np.zeros(len(o)), variant="x")
    with pytest.raises(ValueError, match=r"evaluate must return shape \(17,\)"):
        contribution_estimator(space, lambda o, d: np.zeros(3))
    with pytest.raises(ValueError, match=r"X_mean must have shape \(24,\)"):
        contribution_table(space, QuadraticForm(0.0, np.zeros(24)), X_mean=np.zeros(3))
