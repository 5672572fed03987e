"""IQNAS encoding: one-hot layout, encode/decode/enumerate, quadratic forms."""

import numpy as np
import pytest

from damokit.nas.bench_macro import load_bench_macro
from damokit.nas.iqnas_encoding import (
    OneHotSpace,
    QuadraticForm,
    macro_encode,
    macro_rows,
    macro_space,
    mobilenet_space,
)

PLANTED = OneHotSpace(depths=((1, 2, 3),) * 3, ops=("a", "b", "c", "d"))


def test_sizes_match_the_spec():
    # spec §2: 240 alpha + 15 beta binaries, 22 608 configurations per stage, 22 608^5 in all
    space = mobilenet_space()
    assert (space.dim, space.num_beta, space.num_layers) == (255, 15, 20)
    assert space.size == 22_608**5
    # spec §10 (B): 36 op + 9 depth binaries, 592 704 architectures
    assert (PLANTED.dim, PLANTED.size) == (45, 84**3)
    assert (macro_space().dim, macro_space().size) == (24, 3**8)


def test_macro_encoding_is_the_benchmark_order():
    bench = load_bench_macro()
    X = macro_encode(bench.choices)
    # enumerate() runs stage 0 slowest, op 0 first: the benchmark's sorted choice strings
    np.testing.assert_array_equal(macro_space().enumerate(), X)
    op_ids, depth = macro_space().decode(X[[0, 123, 6560]])
    np.testing.assert_array_equal(macro_rows(op_ids), [0, 123, 6560])
    assert op_ids[0, 0, 2] == -1  # stage 1 has 2 layers: the third slot is absent


def test_encode_decode_round_trip_and_gating():
    space = mobilenet_space()
    op_ids, depth = space.sample(200, np.random.default_rng(0))
    X = space.encode(op_ids, depth)
    space.check(X)
    op2, depth2 = space.decode(X)
    np.testing.assert_array_equal(op2, op_ids)
    np.testing.assert_array_equal(depth2, depth)
    # present layers = sum of depths; every stage has exactly one depth entry
    assert (X[:, :240].sum(1) == depth.sum(1)).all() and (X[:, 240:].sum(1) == 5).all()


def test_enumerate_covers_distinct_valid_encodings():
    space = OneHotSpace(depths=((1, 2), (2,)), ops=("a", "b", "c"))
    X = space.enumerate()
    assert len(X) == space.size == (3 + 9) * 9
    assert len(np.unique(X, axis=0)) == len(X)
    space.check(X)


def test_check_rejects_invalid_rows():
    space = OneHotSpace(depths=((1, 2),), ops=("a", "b"))
    x = space.encode(np.array([[[0, -1]]]), np.array([[1]]))
    bad = x.copy()
    bad[0, 2] = 1.0  # an op on the absent second layer
    with pytest.raises(ValueError, match="row 0 is not a valid encoding"):
        space.check(bad)
    with pytest.raises(ValueError, match="must be binary"):
        space.check(x * 0.5)
    with pytest.raises(ValueError, match=r"shape \(n, 6\)"):
        space.check(np.zeros((1, 5)))


def test_argument_errors():
    with pytest.raises(ValueError, match="at least one allowed depth"):
        OneHotSpace(depths=((),), ops=("a", "b"))
    with pytest.raises(ValueError, match="sorted, distinct"):
        OneHotSpace(depths=((3, 2),), ops=("a", "b"))
    with pytest.raises(ValueError, match="at least two choices"):
        OneHotSpace(depths=((1,),), ops=("a",))
    space = OneHotSpace(depths=((1, 2),), ops=("a", "b"))
    with pytest.raises(ValueError, match="op_ids must have shape"):
        space.encode(np.zeros((1, 2, 2)), np.ones((1, 2)))
    with pytest.raises(ValueError, match="depth 3 is not one of the allowed depths"):
        space.encode(np.zeros((1, 1, 2)), np.array([[3]]))
    with pytest.raises(ValueError, match=r"op ids of present layers must lie in \[0, 1\]"):
        space.encode(np.array([[[2, 0]]]), np.array([[1]]))
    with pytest.raises(ValueError, match="more than limit=5"):
        space.enumerate(limit=5)
    with pytest.raises(ValueError, match="n must be >= 0"):
        space.sample(-1, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"choices must have shape \(n, 8\)"):
        macro_encode(np.zeros((2, 7)))


def test_quadratic_form_matches_the_explicit_sum():
    rng = np.random.default_rng(1)
    X = PLANTED.encode(*PLANTED.sample(50, rng))
    pairs = np.array([[0, 5], [3, 40], [10, 11], [7, 44]])
    form = QuadraticForm(1.5, rng.normal(size=45), pairs, rng.normal(size=4))
    expected = [
        form.const + x @ form.linear + sum(w * x[i] * x[j] for (i, j), w in zip(pairs, form.weights)) for x in X
    ]
    np.testing.assert_allclose(form(X, chunk=7), expected, rtol=1e-12)
    # canonical: drops the in-block pair (10, 11) (always 0), keeps values on valid encodings
    canon = form.canonical(PLANTED)
    assert [tuple(p) for p in canon.pairs] == [(0, 5), (3, 40), (7, 44)]
    np.testing.assert_allclose(canon(X), form(X), rtol=1e-12)
    dup = QuadraticForm(0.0, np.zeros(45), np.array([[0, 5], [0, 5]]), np.array([1.0, 2.0])).canonical(PLANTED)
    assert dup.weights.tolist() == [3.0]


def test_quadratic_form_errors():
    with pytest.raises(ValueError, match="same length"):
        QuadraticForm(0.0, np.zeros(4), np.array([[0, 1]]), np.zeros(2))
    with pytest.raises(ValueError, match=r"indices i < j in \[0, 3\]"):
        QuadraticForm(0.0, np.zeros(4), np.array([[2, 1]]), np.ones(1))
    with pytest.raises(ValueError, match="must be finite"):
        QuadraticForm(np.nan, np.zeros(4))
    with pytest.raises(ValueError, match="X must have 4 columns"):
        QuadraticForm(0.0, np.zeros(4))(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="form has dim 4, space has dim 45"):
        QuadraticForm(0.0, np.zeros(4)).canonical(PLANTED)
