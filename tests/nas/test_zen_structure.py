"""Backbone structures: official counters (golden), built modules, serialization, bookkeeping, errors."""

import numpy as np
import pytest
import torch

from damokit.nas.bench_macro import load_bench_macro, macro_structure
from damokit.nas.structure import Block, Structure

R = "SuperResK1KXK1"
# configs/detection/models/maedet_s.txt of alibaba/lightweight-neural-architecture-search (HEAD 8ccaf88)
MAEDET_S_TXT = """{ 'best_structures':[ [
    {'class': 'ConvKXBNRELU', 'in': 3, 'out': 32, 's': 2, 'k': 3},
    {'class': 'SuperResK1KXK1', 'in': 32, 'out': 48, 's': 2, 'k': 5, 'L': 2, 'btn': 32},
    {'class': 'SuperResK1KXK1', 'in': 48, 'out': 272, 's': 2, 'k': 3, 'L': 4, 'btn': 120},
    {'class': 'SuperResK1KXK1', 'in': 272, 'out': 1024, 's': 2, 'k': 5, 'L': 10, 'btn': 80},
    {'class': 'SuperResK1KXK1', 'in': 1024, 'out': 2048, 's': 2, 'k': 3, 'L': 10, 'btn': 240}]],
'space_arch': 'CnnNet'}"""


def test_official_counters_on_maedet_s():
    # spec §2.4 (official TinyNAS counters): 21.23 M params, 10.99 G FLOPs at 480^2, 79 conv layers
    s = Structure.from_text(MAEDET_S_TXT)
    assert s.layers() == 79
    assert s.params() == 21_233_120
    assert round(s.flops(480) / 1e9, 2) == 10.99
    assert [st.channels for st in s.stages()] == [32, 48, 272, 1024, 2048]
    assert [st.reduction for st in s.stages()] == [2, 4, 8, 16, 32]


def test_macro_counters_equal_the_benchmark_fields():
    # every one of the 6,561 NAS-Bench-Macro nets: params and conv+linear MACs at 32x32 equal the file's
    bench = load_bench_macro()
    idx = np.random.default_rng(0).choice(len(bench), 300, replace=False)
    for i in idx:
        s = macro_structure(bench.archs[i])
        assert s.params() == bench.params[i]
        assert s.flops(32, extras=False) == bench.flops[i]


@pytest.mark.parametrize("arch", ["00000000", "12012100", "22222222"])
def test_built_module_matches_counters_and_shapes(arch):
    s = macro_structure(arch)
    net = s.build().eval()
    assert sum(p.numel() for p in net.parameters()) == s.params()
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    n_convs = sum(isinstance(m, torch.nn.Conv2d) for m in net.modules())
    assert n_convs == len(s.convs()) == s.layers()  # no projections in this space


def test_detection_backbone_returns_c2_to_c5():
    s = Structure(
        (Block("ConvKXBNRELU", 3, 8, 2), *[Block(R, c, 2 * c, 2, 3, btn=c // 2, L=2) for c in (8, 16, 32, 64)])
    )
    net = s.build().eval()
    feats = net(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [(1, 16, 16, 16), (1, 32, 8, 8), (1, 64, 4, 4), (1, 128, 2, 2)]
    assert sum(p.numel() for p in net.parameters()) == s.params()
    assert net.out_channels == [16, 32, 64, 128]


def test_mbconv_with_se_counts_match_the_module():
    # MobileNetV3-style blocks (for IQNAS): expansion skipped when btn == cin; SE convs carry biases
    s = Structure(
        (
            Block("ConvKXBNRELU", 3, 16, 2, 3),
            Block("MBConv", 16, 24, 2, 5, btn=96, L=3, se=True, act="hswish"),
            Block("MBConv", 24, 24, 1, 3, btn=24),
        )
    )
    net = s.build()
    assert sum(p.numel() for p in net.parameters()) == s.params() == 37088
    assert s.layers() == 1 + 3 * 3 + 2
    assert s.flops(32, extras=False) < s.flops(32)
    assert [tuple(f.shape) for f in net.forward_features(torch.randn(1, 3, 32, 32))] == [(1, 16, 16, 16), (1, 24, 8, 8)]


def test_serialization_round_trip():
    s = Structure.from_text(MAEDET_S_TXT)
    assert Structure.from_text(s.to_json()) == s
    assert Structure.from_text(str(s)) == s
    assert hash(Structure.from_dicts(s.to_dicts())) == hash(s)
    m = macro_structure("21201021")
    assert Structure.from_text(m.to_json()) == m


def test_stage_bookkeeping_counts_stem_stride():
    # a stride-2 stem closes stage 1; a stride-1 stem does not open a new stage
    s = Structure.from_text(MAEDET_S_TXT)
    assert s.stage_ends() == [0, 1, 2, 3, 4] and s.num_downsamples() == 5
    assert macro_structure("00000000").stage_ends() == [0, 2, 5, 9]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kind="Bottle", cin=3, cout=8), "unknown block kind 'Bottle'"),
        (dict(kind=R, cin=3, cout=0, btn=4), "cout must be a positive int"),
        (dict(kind=R, cin=-1, cout=8, btn=4), "cin must be a positive int"),
        (dict(kind=R, cin=3, cout=8, btn=0), "btn must be a positive int"),
        (dict(kind=R, cin=3, cout=8, btn=4, stride=3), "stride must be 1 or 2"),
        (dict(kind=R, cin=3, cout=8, btn=4, k=4), "positive odd int"),
        (dict(kind=R, cin=3, cout=8, btn=4, L=0), "L must be an int >= 1"),
        (dict(kind="ConvKXBNRELU", cin=3, cout=8, L=2), "does not repeat"),
        (dict(kind="MBConv", cin=3, cout=8, btn=6, act="gelu"), "act must be one of"),
    ],
)
def test_bad_blocks(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Block(**kwargs)


def test_bad_structures():
    with pytest.raises(ValueError, match="channels are not chained: block 1"):
        Structure((Block("ConvKXBNRELU", 3, 8), Block(R, 16, 32, btn=8)))
    with pytest.raises(ValueError, match="in_channels=3"):
        Structure((Block("ConvKXBNRELU", 1, 8),))
    with pytest.raises(ValueError, match="at least one block"):
        Structure(())
    with pytest.raises(ValueError, match="needs keys 'class', 'in', 'out'"):
        Structure.from_dicts([{"class": R, "in": 3}])
    with pytest.raises(ValueError, match="cannot parse structure text"):
        Structure.from_text("[{'class': ")
    with pytest.raises(ValueError, match="list of block dicts"):
        Structure.from_text("42")
