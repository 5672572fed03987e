"""ZenDet evolutionary search: official mutation rules, budgets, determinism, log files, errors."""

import json
import random

import pytest

from damokit.nas.structure import Block, Structure
from damokit.nas.zen import entropy_score
from damokit.nas.zendet import INITIAL_DETECTION_STRUCTURE, MAEDET_STRUCTURES, Budget, K1KXK1Space, search

R = "SuperResK1KXK1"
# the scaled-down space of spec §8(b): 64x64 input, FLOPs <= 60 M, <= 40 conv layers
SMALL_BUDGET = Budget(flops=60e6, layers=40, stages=5, resolution=64)
SMALL_INIT = Structure(
    (
        Block("ConvKXBNRELU", 3, 16, 2, 3),
        Block(R, 16, 32, 2, 3, 16, 1),
        Block(R, 32, 64, 2, 3, 16, 1),
        Block(R, 64, 96, 2, 3, 24, 1),
        Block(R, 96, 128, 2, 3, 32, 1),
    )
)


def test_mutations_respect_the_official_rules():
    space, rng, budget = K1KXK1Space(), random.Random(0), Budget()
    s = INITIAL_DETECTION_STRUCTURE
    max_depth = budget.layers // 3 // (len(s.blocks) - 2)  # 91 // 3 // 4 = 7
    for _ in range(2000):
        s = space.mutate(s, rng, budget)
        assert s.blocks[0].cout <= 32  # stem cap of the official file
        for i, b in enumerate(s.blocks[1:], start=1):
            assert b.cin == s.blocks[i - 1].cout  # channels re-chained
            assert b.cout % 8 == 0 and 8 <= b.cout <= 2048 and b.btn % 8 == 0
            assert b.btn >= b.cout / 10 - 4  # repaired to round8(out / 10) when below out / 10
            assert b.k in (3, 5) and 1 <= b.L <= (3 if i == 1 else max_depth)
        assert s.layers() <= 91 and s.num_downsamples() <= 5


def test_minor_mutation_freezes_depth_and_kernels():
    space, rng = K1KXK1Space(), random.Random(1)
    s = MAEDET_STRUCTURES["maedet_s"]
    for _ in range(300):
        child = space.mutate(s, rng, Budget(layers=None), minor=True)
        assert [(b.k, b.L) for b in child.blocks] == [(b.k, b.L) for b in s.blocks]


def test_search_is_deterministic_feasible_and_monotone(tmp_path):
    run = dict(init=SMALL_INIT, budget=SMALL_BUDGET, population=16, iterations=600, log_every=100, progress=False)
    a, b = search(seed=3, **run), search(seed=3, **run)
    assert a.best == b.best and a.history[-1]["best"] == b.history[-1]["best"]
    assert a.best_info["flops"] <= 60e6 and a.best_info["layers"] <= 40 and a.best_info["stages"] <= 5
    best = [h["best"] for h in a.history]
    assert best == sorted(best) and best[-1] > entropy_score(SMALL_INIT, stage_weights=(0, 0, 1, 1, 6))
    assert a.best_score == pytest.approx(entropy_score(a.best, stage_weights=(0, 0, 1, 1, 6)))
    assert search(seed=4, **run).best != a.best  # the seed matters
    log = json.loads(a.save(tmp_path).read_text())
    assert log["best"]["score"] == a.best_score and len(log["history"]) == 6
    assert Structure.from_text((tmp_path / "best_structure.txt").read_text()) == a.best
    assert Structure.from_text((tmp_path / "best_structure.json").read_text()) == a.best


def test_search_with_custom_mutation_and_score():
    # a 1-D toy: widths of a single conv; the score prefers wide convs, the budget caps the FLOPs
    def mutate(s, rng):
        c = max(8, s.blocks[0].cout + rng.choice((-8, 8)))
        return Structure((Block("ConvKXBNRELU", 3, c, 1, 3),))

    init = Structure((Block("ConvKXBNRELU", 3, 8, 1, 3),))
    budget = Budget(flops=3 * 9 * 64 * 8 * 8, layers=None, resolution=8, flops_extras=False)
    res = search(
        init,
        budget=budget,
        score=lambda s: s.blocks[0].cout,
        mutate=mutate,
        population=4,
        iterations=200,
        progress=False,
    )
    assert res.best.blocks[0].cout == 64


def test_errors():
    with pytest.raises(ValueError, match=r"initial structure does not meet the budget \(flops="):
        search(MAEDET_STRUCTURES["maedet_l"], budget=Budget(), progress=False)
    with pytest.raises(ValueError, match="population must be a positive int"):
        search(SMALL_INIT, budget=SMALL_BUDGET, population=0)
    with pytest.raises(ValueError, match="mutations_per_child must be >= 1"):
        search(SMALL_INIT, budget=SMALL_BUDGET, mutations_per_child=0)
    with pytest.raises(ValueError, match="score must be 'entropy_closed'"):
        search(SMALL_INIT, budget=SMALL_BUDGET, score="nwot")
    with pytest.raises(ValueError, match="budget flops must be > 0 or None"):
        Budget(flops=-1)
    with pytest.raises(ValueError, match="budget resolution must be a positive int"):
        Budget(resolution=0)
    with pytest.raises(ValueError, match="mutates only ConvKXBNRELU and SuperResK1KXK1"):
        K1KXK1Space().mutate_block([Block("MBConv", 3, 8, 1, 3, 8)] * 2, 0, random.Random(0), None, False)


def test_cli_zendet(tmp_path, capsys):
    from damokit.cli import main

    init = tmp_path / "init.json"
    init.write_text(SMALL_INIT.to_json())
    argv = ["nas", "zendet", "--init", str(init), "--budget-flops", "60e6", "--layers", "40", "--resolution", "64"]
    argv += ["--population", "8", "--iterations", "200", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(argv) == 0
    assert "best score" in capsys.readouterr().out
    assert Structure.from_text((tmp_path / "run" / "best_structure.json").read_text()).layers() <= 40
    assert main([*argv, "--weights", "1,x"]) == 2
    assert "--weights must be comma-separated numbers" in capsys.readouterr().err
    assert main(["nas", "zendet", "--init", str(tmp_path / "missing.json")]) == 2
    assert "no structure file" in capsys.readouterr().err


@pytest.mark.slow  # scores all 6,561 nets (about 3 s idle)
def test_macro_space_search_finds_the_brute_force_optimum():
    # spec §8(b)1: all 6,561 nets are enumerable, so the search result is checked exactly
    import numpy as np

    from damokit.nas.bench_macro import load_bench_macro, macro_structure
    from damokit.reproduce.zendet import run_macro_search

    bench = load_bench_macro()
    scores = {a: entropy_score(macro_structure(a)) for a in bench.archs}
    cap = float(np.percentile(bench.flops, 25))
    arch, score = run_macro_search(scores, cap, population=32, iterations=2000, seed=0)
    brute = max(s for a, s in scores.items() if bench.flops[bench.index(a)] <= cap)
    assert bench.flops[bench.index(arch)] <= cap and score >= brute * (1 - 0.005)


def test_resnet_like_matches_flops():
    from damokit.reproduce.zendet import resnet_like

    s = resnet_like(55e6, 64)
    assert abs(s.flops(64) / 55e6 - 1) < 0.05 and [b.L for b in s.blocks[1:]] == [3, 4, 6, 3]
