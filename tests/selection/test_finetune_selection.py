"""UOT class selection and the joint fine-tuner: spec finetune_selection.md §5 tests S1-S5."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from damokit.engine import TrainConfig
from damokit.selection.finetune_selection import (
    JointFineTuner,
    SubsetByClass,
    class_means,
    class_scores,
    select_classes,
    unbalanced_sinkhorn,
    uot_class_importance,
)


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# S1: fixed point, near-balanced limit, optional POT agreement
def test_s1_sinkhorn_fixed_point():
    M = _rand(30, 7, seed=1) * 3
    a, b = torch.ones(30), torch.ones(7)
    res = unbalanced_sinkhorn(a, b, M, reg=1.0, reg_src=1.0, reg_tgt=100.0, tol=1e-12, max_iter=5000)
    assert res.converged
    K = torch.exp(-M)
    u, v = res.log_u.exp(), res.log_v.exp()
    torch.testing.assert_close(u, (a.double() / (K @ v)) ** (1.0 / 2.0), rtol=1e-6, atol=0)  # tau_s/(tau_s+eps)
    torch.testing.assert_close(v, (b.double() / (K.T @ u)) ** (100.0 / 101.0), rtol=1e-6, atol=0)
    torch.testing.assert_close(res.plan, u[:, None] * K * v[None, :])


def test_s1_near_balanced_limit_matches_marginals():
    M = _rand(30, 7, seed=2)
    a, b = torch.full((30,), 1 / 30), torch.full((7,), 1 / 7)
    res = unbalanced_sinkhorn(a, b, M, reg=0.1, reg_src=100.0, reg_tgt=100.0, tol=1e-9, max_iter=20000)
    rel_a = (res.plan.sum(1) / a.double() - 1).abs().max()
    rel_b = (res.plan.sum(0) / b.double() - 1).abs().max()
    assert rel_a < 0.01 and rel_b < 0.01  # spec prototype: 0.3%


def test_s1_agrees_with_pot_when_installed():
    ot = pytest.importorskip("ot")
    M = _rand(12, 5, seed=3) * 5
    a, b = torch.ones(12, dtype=torch.float64), torch.ones(5, dtype=torch.float64)
    ours = unbalanced_sinkhorn(a, b, M, tol=1e-10, max_iter=5000).plan
    ref = ot.unbalanced.sinkhorn_knopp_unbalanced(
        a.numpy(), b.numpy(), M.numpy(), reg=1.0, reg_m=(1.0, 100.0), numItermax=5000, stopThr=1e-10
    )
    torch.testing.assert_close(ours, torch.as_tensor(ref), rtol=1e-6, atol=1e-9)


def test_sinkhorn_log_domain_never_overflows():
    M = torch.tensor([[0.0, 2000.0], [2000.0, 0.0], [1000.0, 1000.0]])  # exp(-M) underflows in float64
    res = unbalanced_sinkhorn(torch.ones(3), torch.ones(2), M, reg=0.5)
    assert torch.isfinite(res.plan).all() and torch.isfinite(res.log_u).all()
    assert res.plan.sum(0).min() > 0.9  # target classes still served by their zero-cost sources


def test_sinkhorn_reports_non_convergence():
    res = unbalanced_sinkhorn(torch.ones(5), torch.ones(4), _rand(5, 4) * 10, max_iter=2, tol=1e-15)
    assert res.n_iter == 2 and not res.converged and res.err > 0


# S2: marginals, invariances
def test_s2_default_marginals_and_invariances():
    src, tgt = _rand(40, 16, seed=4) - 0.5, _rand(6, 16, seed=5) - 0.5
    imp, res = uot_class_importance(src, tgt)
    cols = res.plan.sum(0)
    assert ((cols >= 0.9) & (cols <= 1.2)).all(), cols
    assert imp.std() > 0  # row sums vary
    scaled = src * _rand(40, 1, seed=6).add(0.1) * 10  # positive rescaling of each class mean
    torch.testing.assert_close(uot_class_importance(scaled, tgt)[0], imp)
    perm = torch.randperm(40)
    torch.testing.assert_close(uot_class_importance(src[perm], tgt)[0], imp[perm])


# S3: coverage construction where UOT and nearest-neighbour disagree (spec §5 S3)
def _coverage_problem():
    e = torch.eye(16, dtype=torch.float64)
    tgt = torch.stack([e[0], e[1]])
    src = [e[0] + 0.05 * e[2 + i] for i in range(10)]  # cos 0.9988 to target 0
    src += [e[1] + 0.9 * e[12 + j] for j in range(3)]  # cos 0.743 to target 1
    src += [-e[0] - e[1] + 0.3 * e[2 + (i % 14)] for i in range(20)]  # far from both
    return torch.stack(src), tgt


def test_s3_uot_covers_every_target_class():
    src, tgt = _coverage_problem()
    imp, _ = uot_class_importance(src, tgt)
    # spec §5 S3 values: ~0.329 each for sources 10-12, ~0.105 each for 0-9, far <= 3e-4
    torch.testing.assert_close(imp[10:13], torch.full((3,), 0.329, dtype=torch.float64), atol=2e-3, rtol=0)
    torch.testing.assert_close(imp[:10], torch.full((10,), 0.105, dtype=torch.float64), atol=2e-3, rtol=0)
    assert imp[13:].max() <= 3e-4
    assert set(select_classes(src, tgt, 3).tolist()) == {10, 11, 12}
    assert {10, 11, 12} <= set(select_classes(src, tgt, 6).tolist())
    assert not {10, 11, 12} & set(select_classes(src, tgt, 6, method="nn_max_cos").tolist())


# S4: plumbing
def test_s4_subset_by_class_and_random_selection():
    x, y = torch.randn(12, 3), torch.tensor([0, 1, 2, 3] * 3)
    ds = TensorDataset(x, y)
    sub = SubsetByClass(ds, [1, 3])
    assert len(sub) == 6
    xs, ys = sub.tensors()
    assert set(ys.tolist()) == {1, 3} and torch.equal(xs, x[torch.isin(y, torch.tensor([1, 3]))])
    item_x, item_y = sub[0]
    assert item_y.item() in (1, 3) and torch.equal(item_x, x[1])
    src, tgt = _rand(10, 4), _rand(3, 4, seed=1)
    r1 = select_classes(src, tgt, 4, method="random", seed=7)
    assert torch.equal(r1, select_classes(src, tgt, 4, method="random", seed=7))
    assert not torch.equal(r1, select_classes(src, tgt, 4, method="random", seed=8))
    assert torch.equal(select_classes(src, tgt, 10, method="mean_cos").sort().values, torch.arange(10))
    assert class_scores(src, tgt, "nn_max_cos").argmax() == select_classes(src, tgt, 1, method="nn_max_cos")[0]


def test_class_means_reference():
    feats = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    means, counts = class_means(feats, torch.tensor([0, 0, 2]), 3)
    torch.testing.assert_close(means, torch.tensor([[2.0, 3.0], [0.0, 0.0], [5.0, 6.0]], dtype=torch.float64))
    assert counts.tolist() == [2, 0, 1]


def test_errors():
    with pytest.raises(ValueError, match="must be \\(N, D\\)"):
        class_means(torch.zeros(3), torch.zeros(3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="labels must lie in"):
        class_means(torch.zeros(2, 2), torch.tensor([0, 5]), 2)
    with pytest.raises(ValueError, match="M must be"):
        unbalanced_sinkhorn(torch.ones(3), torch.ones(2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="strictly positive"):
        unbalanced_sinkhorn(torch.zeros(2), torch.ones(2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="must be > 0"):
        unbalanced_sinkhorn(torch.ones(2), torch.ones(2), torch.zeros(2, 2), reg=0.0)
    with pytest.raises(ValueError, match="max_iter must be >= 1"):
        unbalanced_sinkhorn(torch.ones(2), torch.ones(2), torch.zeros(2, 2), max_iter=0)
    with pytest.raises(ValueError, match="p_m must be > 0"):
        uot_class_importance(torch.ones(2, 2), torch.ones(1, 2), p_m=0.0)
    with pytest.raises(ValueError, match="must share D"):
        select_classes(torch.ones(2, 2), torch.ones(1, 3), 1)
    with pytest.raises(ValueError, match="method must be one of"):
        select_classes(torch.ones(2, 2), torch.ones(1, 2), 1, method="knn")
    with pytest.raises(ValueError, match=r"k must be in \[1, 2\]"):
        select_classes(torch.ones(2, 2), torch.ones(1, 2), 3)
    with pytest.raises(ValueError, match="labels are required"):
        SubsetByClass([(1, 0)], [0])
    with pytest.raises(ValueError, match="labels has 1 entries"):
        SubsetByClass([(1, 0), (2, 1)], [0], labels=torch.tensor([0]))
    with pytest.raises(ValueError, match="need lam >= 0"):
        JointFineTuner(nn.Linear(2, 2), 2, 2, 2, lam=-1.0)
    with pytest.raises(ValueError, match="source_labels must be"):
        JointFineTuner(nn.Linear(2, 2), 2, 2, 2, source_labels="soft")
    tuner = JointFineTuner(nn.Linear(2, 2), 2, 2, 2, mu=2.0)
    cfg = TrainConfig(epochs=1, batch_size=4, progress=False)
    with pytest.raises(ValueError, match="fewer than one source batch"):
        tuner.fit(
            (torch.randn(8, 2), torch.zeros(8, dtype=torch.long)), (torch.randn(5, 2), torch.zeros(5).long()), cfg
        )


# S5: joint fine-tuner
def _toy(seed=0, n=24):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def _backbone():
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU())


def test_s5_lam_zero_equals_plain_finetuning_step_for_step():
    xt, yt = _toy(0)
    xs, ys = _toy(1, 40)
    cfg = TrainConfig(epochs=3, batch_size=8, lr=0.05, optimizer="sgd", progress=False, seed=0)
    torch.manual_seed(0)
    joint = JointFineTuner(_backbone(), 8, n_src=5, n_tgt=3, lam=0.0)
    torch.manual_seed(0)
    plain = JointFineTuner(_backbone(), 8, n_src=5, n_tgt=3, lam=1.0)
    plain_res = plain.fit((xt, yt), None, cfg)  # no source data: plain fine-tuning
    joint_res = joint.fit((xt, yt), (xs, ys), cfg)
    assert [r["train_loss"] for r in joint_res.history] == [r["train_loss"] for r in plain_res.history]
    for p, q in zip(joint.model.parameters(), plain.model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


class _RecordingHead(nn.Linear):
    """A linear head that records the batch sizes it scores."""

    def __init__(self, *args):
        super().__init__(*args)
        self.seen: list[int] = []

    def forward(self, x):
        self.seen.append(len(x))
        return super().forward(x)


def test_s5_source_labels_only_meet_source_head_and_stream_restarts():
    xt, yt = _toy(0, 24)
    xs, ys = _toy(1, 10)  # 10 source samples, batches of 4: the stream restarts every 2 batches
    tuner = JointFineTuner(_backbone(), 8, n_src=5, n_tgt=3, lam=1.0, mu=0.5)
    tuner.model.fc_down = _RecordingHead(8, 3)
    tuner.model.fc_up = _RecordingHead(8, 5)
    res = tuner.fit((xt, yt), (xs, ys), TrainConfig(epochs=1, batch_size=8, progress=False))
    assert res.steps == 3 and res.epochs_run == 1  # one epoch = one pass over the 24 target samples
    assert tuner.model.fc_down.seen == [8, 8, 8]  # target batches only
    assert tuner.model.fc_up.seen == [4, 4, 4]  # source batches only
    assert tuner.stream.restarts == 1


def test_s5_pseudo_labels_use_target_head_and_joint_helps_toy_task():
    xt, yt = _toy(0, 16)
    tuner = JointFineTuner(_backbone(), 8, n_src=5, n_tgt=3, source_labels="pseudo", mu=1.0)
    assert tuner.model.fc_up is None
    res = tuner.fit((xt, yt), _toy(1, 32), TrainConfig(epochs=2, batch_size=8, progress=False))
    assert res.steps == 4 and all(torch.isfinite(torch.tensor(r["train_loss"])) for r in res.history)
    assert 0.0 <= tuner.evaluate(xt, yt) <= 1.0


def test_joint_finetuning_learns_a_separable_target():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat(20)
    x = torch.randn(60, 6, generator=g) * 0.3 + 2 * F.one_hot(y, 6).double().float()
    xs, ys = torch.randn(40, 6, generator=g), torch.randint(0, 5, (40,), generator=g)
    tuner = JointFineTuner(_backbone(), 8, 5, 3, lam=0.3)
    tuner.fit((x, y), (xs, ys), TrainConfig(epochs=15, batch_size=12, lr=0.05, optimizer="sgd", progress=False))
    assert tuner.evaluate(x, y) > 0.9  # chance 1/3
