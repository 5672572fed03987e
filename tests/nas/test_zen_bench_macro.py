"""NAS-Bench-Macro loader: shape, content and the lookup of the bundled benchmark."""

import numpy as np
import pytest

from damokit.nas.bench_macro import check_macro_arch, load_bench_macro


def test_loads_the_whole_space():
    bench = load_bench_macro()
    assert len(bench) == 3**8 == bench.choices.shape[0]
    assert bench.test_acc.shape == (3**8, 3)
    # mean_acc is the mean of the three runs (the file stores both)
    np.testing.assert_allclose(bench.test_acc.mean(axis=1), bench.mean_acc, atol=1e-6)
    # first record of the JSON file (read by hand): "02012100" -> params 890666, flops 47327744
    row = bench.index("02012100")
    assert bench.params[row] == 890666 and bench.flops[row] == 47327744
    assert "".join(map(str, bench.choices[row])) == "02012100"
    # the all-identity net "00000000" is the worst (45.4 %); the best is about 93 %
    assert bench.mean_acc.argmin() == 0 and 40.0 < bench.mean_acc.min() < bench.mean_acc.max() < 95.0
    with pytest.raises(ValueError, match="read-only"):
        bench.mean_acc[0] = 0.0


@pytest.mark.parametrize("arch", ["0201210", "02012103", "abcdefgh", 12345678])
def test_bad_arch_is_rejected(arch):
    with pytest.raises(ValueError, match="must be a string of 8 choice ids"):
        check_macro_arch(arch)
