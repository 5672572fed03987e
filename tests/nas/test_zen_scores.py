"""MAE-DET entropy (closed form and forward pass) and Zen-score: golden values, references, errors."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from damokit.nas.bench_macro import macro_structure
from damokit.nas.structure import Block, Structure
from damokit.nas.zen import DETECTION_STAGE_WEIGHTS, entropy_score, stage_entropies, zen_score
from damokit.nas.zendet import MAEDET_STRUCTURES

R = "SuperResK1KXK1"


# spec §2.4: official v2 (compute_madnas.py) values of the released backbones, w = (0, 0, 1, 1, 6)
@pytest.mark.parametrize(
    "name, score, weighted",
    [
        ("maedet_s", 1731.9070, (0, 0, 54.9613, 150.1961, 1526.7497)),
        ("maedet_m", 2114.7829, (0, 0, 112.2017, 213.0485, 1789.5327)),
        ("maedet_l", 2599.3961, (0, 0, 134.4775, 258.6509, 2206.2678)),
    ],
)
def test_golden_scores_of_released_backbones(name, score, weighted):
    s = MAEDET_STRUCTURES[name]
    assert round(entropy_score(s, stage_weights=DETECTION_STAGE_WEIGHTS), 4) == score
    w = np.array(DETECTION_STAGE_WEIGHTS)
    np.testing.assert_array_equal(np.round(w * stage_entropies(s), 4), weighted)


def _random_structure(rng: np.random.Generator) -> Structure:
    stem = int(rng.choice([16, 32]))
    blocks, cin = [Block("ConvKXBNRELU", 3, stem, 2, 3)], stem
    for _ in range(4):
        cout, btn = int(rng.choice([32, 48, 64])), int(rng.choice([16, 24, 32]))
        blocks.append(Block(R, cin, cout, 2, int(rng.choice([3, 5])), btn, int(rng.integers(1, 3))))
        cin = cout
    return Structure(tuple(blocks))


@pytest.mark.parametrize("seed", [0, 1])
def test_forward_agrees_with_closed_form_at_224(seed):
    # spec §7: closed form = forward form within 1 % at resolution >= 224 (zero padding lowers sigma a bit)
    s = _random_structure(np.random.default_rng(seed))
    closed = entropy_score(s, stage_weights=DETECTION_STAGE_WEIGHTS)
    fwd = entropy_score(s, stage_weights=DETECTION_STAGE_WEIGHTS, mode="forward", resolution=224, batch=1, repeat=1)
    # measured gaps -0.2 % .. -0.7 % (zero padding at 7x7 and the Jensen gap of log std both lower it)
    assert -0.01 * closed < fwd - closed < 0.0
    fwd_stages = stage_entropies(s, mode="forward", resolution=224, batch=1, repeat=1)
    np.testing.assert_allclose(fwd_stages, stage_entropies(s), atol=0.5)  # measured gaps <= 0.4 nats


def test_forward_score_does_not_depend_on_batch_size():
    s = _random_structure(np.random.default_rng(3))
    a = entropy_score(s, mode="forward", resolution=96, batch=2, repeat=1, seed=0)
    b = entropy_score(s, mode="forward", resolution=96, batch=6, repeat=1, seed=1)
    assert abs(a - b) < 0.005 * abs(a)


def test_module_conv_stack_matches_closed_form():
    # a plain conv stack: E = sum_l log sqrt(fan_in_l) + log C_last (hand formula of spec §2.3)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 5, 1, 2), nn.Conv2d(32, 8, 1))
    expected = 0.5 * (math.log(27) + math.log(16 * 25) + math.log(32)) + math.log(8)
    got = entropy_score(net, mode="forward", resolution=128, batch=2, repeat=2)
    assert abs(got - expected) < 0.01 * expected


def test_more_repeats_never_lower_the_entropy():
    s = _random_structure(np.random.default_rng(4))
    base = stage_entropies(s)
    for j in range(1, len(s.blocks)):
        blocks = list(s.blocks)
        blocks[j] = Block(R, blocks[j].cin, blocks[j].cout, 2, blocks[j].k, blocks[j].btn, blocks[j].L + 1)
        assert np.all(stage_entropies(s.replace_blocks(blocks)) >= base - 1e-12)


def test_final_stage_weights_equal_default():
    s = MAEDET_STRUCTURES["maedet_s"]
    assert entropy_score(s, stage_weights=(0, 0, 0, 0, 1)) == entropy_score(s) == stage_entropies(s)[-1]


def test_zen_score_matches_hand_reference_on_one_conv():
    # one conv + BN (train mode) + ReLU; Zen = log mean_B ||f(x) - f(x + g e)||_1 + log sqrt(mean_c var_c)
    s = Structure((Block("ConvKXBNRELU", 3, 4, 1, 3),))
    gen = torch.Generator().manual_seed(7)  # zen_score draws: weights, then x, then the noise
    w = torch.randn(4, 3, 3, 3, generator=gen)
    x = torch.randn(5, 3, 8, 8, generator=gen)
    x2 = x + 0.01 * torch.randn(x.shape, generator=gen)

    def f(inp):
        y = F.conv2d(inp, w, padding=1)
        return F.relu(F.batch_norm(y, None, None, training=True)), y.transpose(0, 1).flatten(1).var(dim=1)

    (o1, v1), (o2, v2) = f(x), f(x2)
    expr = math.log((o1 - o2).abs().sum(dim=(1, 2, 3)).mean().item())
    got = zen_score(s, batch=5, resolution=8, seed=7)
    assert got == pytest.approx(expr + 0.5 * math.log(v1.mean().item()), rel=1e-4)
    # official variant: running_var after two passes from 1 with momentum 0.1 (spec §2.5)
    running = 0.81 + 0.09 * v1 + 0.1 * v2
    got = zen_score(s, batch=5, resolution=8, seed=7, bn_stat="running")
    assert got == pytest.approx(expr + 0.5 * math.log(running.mean().item()), rel=1e-4)


def test_zen_score_is_seeded_and_leaves_module_untouched():
    s = macro_structure("10200120", num_classes=None)
    s = s.replace_blocks(s.blocks[:4])  # stem + 3 layers: enough BN/residual structure, cheap
    net = s.build()
    before = [p.clone() for p in net.parameters()]
    a = zen_score(net, batch=4, seed=3)
    assert a == zen_score(net, batch=4, seed=3) and math.isfinite(a)
    assert all(torch.equal(p, q) for p, q in zip(before, net.parameters()))


def test_errors():
    s = MAEDET_STRUCTURES["maedet_s"]
    with pytest.raises(ValueError, match="stage_weights has 3 entries but the structure has 5 stages"):
        entropy_score(s, stage_weights=(0, 1, 1))
    with pytest.raises(ValueError, match="mode must be 'closed' or 'forward'"):
        entropy_score(s, mode="exact")
    with pytest.raises(ValueError, match="closed form assumes init_std=1.0"):
        entropy_score(s, init_std=0.5)
    with pytest.raises(ValueError, match="batch must be a positive int"):
        entropy_score(s, mode="forward", batch=0)
    with pytest.raises(ValueError, match="init_std must be > 0"):
        entropy_score(s, mode="forward", init_std=0.0)
    with pytest.raises(ValueError, match="use mode='forward' and stage_weights=None"):
        entropy_score(nn.Conv2d(3, 3, 3))
    with pytest.raises(ValueError, match="no nn.Conv2d outside 'shortcut'"):
        entropy_score(nn.Linear(3, 3), mode="forward")
    with pytest.raises(TypeError, match="net must be a Structure or an nn.Module"):
        entropy_score("maedet_s")
    with pytest.raises(ValueError, match="bn_stat must be 'batch'"):
        zen_score(s, bn_stat="ema")
    with pytest.raises(ValueError, match="gamma must be > 0"):
        zen_score(s, gamma=0.0)
    with pytest.raises(ValueError, match="Zen-score needs a conv network"):
        zen_score(nn.Linear(3, 3))
    with pytest.raises(ValueError, match=r"feature map must be \(B, C, H, W\)"):
        zen_score(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), batch=2, resolution=8)
