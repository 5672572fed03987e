"""IQNAS resources: exact linearity of FLOPs/params, latency measurement and calibration, errors."""

import numpy as np
import pytest

from damokit.nas.bench_macro import load_bench_macro
from damokit.nas.iqnas_encoding import QuadraticForm, macro_encode, macro_space, mobilenet_space
from damokit.nas.iqnas_resources import (
    calibrate,
    fit_resource,
    measure_latency,
    mobilenet_resources,
    mobilenet_structure,
)


def test_nas_bench_macro_flops_and_params_are_exactly_linear():
    # spec §10 (A) 1: least-squares fit error 1.7e-13 MFLOPs (measured for damokit); assert < 1e-6
    bench = load_bench_macro()
    X = macro_encode(bench.choices)
    train = np.random.default_rng(0).permutation(len(X))[:100]
    for values in (bench.flops / 1e6, bench.params / 1e6):
        form, err = fit_resource(macro_space(), X[train], values[train])
        assert err < 1e-6
        assert np.abs(form(X) - values).max() < 1e-6  # and on all 6 561, not only the fitted 100


def test_mobilenet_flops_and_params_equal_whole_network_counts():
    space = mobilenet_space()
    res = mobilenet_resources(space, resolution=224)
    op_ids, depth = space.sample(12, np.random.default_rng(1))
    X = space.encode(op_ids, depth)
    nets = [mobilenet_structure(o, d) for o, d in zip(op_ids, depth)]
    np.testing.assert_allclose(res["mflops"](X), [n.flops(224, extras=False) / 1e6 for n in nets], rtol=1e-12)
    np.testing.assert_allclose(res["mparams"](X), [n.params() / 1e6 for n in nets], rtol=1e-12)
    # the counter agrees with the built module (structure.py's own guarantee, checked on one net here)
    built = nets[0].build()
    assert sum(p.numel() for p in built.parameters()) == nets[0].params()
    # table sums are MobileNetV3-sized: 150-700 MFLOPs, 2-7 M params at 224 px (1000 classes)
    assert 150 < res["mflops"](X).min() and res["mflops"](X).max() < 700
    assert 2 < res["mparams"](X).min() and res["mparams"](X).max() < 7


def test_measure_latency_and_calibrate():
    space = mobilenet_space()
    op_ids, depth = space.sample(2, np.random.default_rng(2))
    lat = measure_latency(
        [mobilenet_structure(o, d, num_classes=10) for o, d in zip(op_ids, depth)], resolution=32, rounds=2
    )
    assert lat.shape == (2,) and np.isfinite(lat).all() and (lat > 0).all()
    wall = measure_latency([mobilenet_structure(op_ids[0], depth[0], num_classes=10)], resolution=32, clock="wall")
    assert wall.shape == (1,) and wall[0] > 0
    # calibrate recovers an exact affine relation
    form = QuadraticForm(1.0, np.arange(space.dim, dtype=float) / space.dim)
    X = space.encode(*space.sample(20, np.random.default_rng(3)))
    corrected, slope, intercept = calibrate(form, X, 3.0 * form(X) - 2.0)
    assert (slope, intercept) == pytest.approx((3.0, -2.0))
    np.testing.assert_allclose(corrected(X), 3.0 * form(X) - 2.0, atol=1e-9)


def test_errors():
    space = macro_space()
    X = space.encode(*space.sample(5, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="X has 5 rows but values has 4"):
        fit_resource(space, X, np.zeros(4))
    with pytest.raises(ValueError, match="ridge must be >= 0"):
        fit_resource(space, X, np.zeros(5), ridge=-1.0)
    with pytest.raises(ValueError, match="needs the MobileNetV3-like space"):
        mobilenet_resources(space)
    with pytest.raises(ValueError, match="need batch >= 1 and resolution >= 8"):
        measure_latency([], resolution=4)
    with pytest.raises(ValueError, match="need rounds >= 1"):
        measure_latency([], rounds=0)
    with pytest.raises(ValueError, match="clock must be 'cpu' or 'wall'"):
        measure_latency([], clock="gpu")
    with pytest.raises(ValueError, match="clock='cpu' reads this thread's CPU time, so it needs threads=1"):
        measure_latency([], threads=2)
    with pytest.raises(ValueError, match="need >= 2 measured networks"):
        calibrate(QuadraticForm(0.0, np.zeros(24)), X, np.zeros(3))
