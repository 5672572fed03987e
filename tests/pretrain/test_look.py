"""LOOK loss (spec look.md §6): brute force, leave-one-out, limits, gradient isolation, bank, chunking, recipe."""

import math

import pytest
import torch
from torch.nn import functional as F

from damokit.engine import TrainConfig
from damokit.nn.convnets import MLPEncoder
from damokit.pretrain.look import (
    LOOKLoss,
    LOOKModel,
    LOOKRecipe,
    NeighborBank,
    bank_topk,
    look_loss,
    pretrain,
    within_class_spread,
)


def _unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=-1)


def _brute_force(z, y, bank, bank_y, k, tau, query_ids, bank_ids):
    """Double loop over queries and bank rows: -log of the weighted kNN posterior of the true class (spec §2)."""
    losses = []
    for i in range(len(z)):
        cands = [(float(z[i] @ bank[j]) / tau, int(bank_y[j])) for j in range(len(bank)) if bank_ids[j] != query_ids[i]]
        cands.sort(key=lambda t: -t[0])
        top = cands[:k]
        num = sum(math.exp(s) for s, c in top if c == int(y[i]))
        if num == 0:
            continue  # "skip" policy
        losses.append(-math.log(num / sum(math.exp(s) for s, _ in top)))
    return sum(losses) / len(losses), 1 - len(losses) / len(z)


@pytest.mark.parametrize("k", [1, 3, 14])  # 14 = N - 1: every other entry is a neighbour
def test_matches_brute_force(k):
    bank, bank_y = _unit(15, 6, seed=1), torch.arange(15) % 3
    ids = torch.tensor([2, 7, 11, 4])  # the queries are bank rows 2, 7, 11, 4 (perturbed), left out
    z = F.normalize(bank[ids] + 0.3 * _unit(4, 6, seed=2), dim=1)
    y = bank_y[ids]
    out = look_loss(z, y, bank, bank_y, k=k, tau=0.1, query_ids=ids, bank_ids=torch.arange(15))
    ref, frac = _brute_force(z, y, bank, bank_y, k, 0.1, ids.tolist(), list(range(15)))
    assert out.loss.item() == pytest.approx(ref, rel=1e-9)
    assert out.no_positive_fraction == pytest.approx(frac)


def test_leave_one_out_own_entry_has_no_effect():
    bank, bank_y = _unit(20, 5, seed=3), torch.arange(20) % 2
    z, y = bank[:4].clone(), bank_y[:4]  # the queries' own embeddings are in the bank (rows 0-3)
    with_own = look_loss(z, y, bank, bank_y, k=5, tau=0.1, query_ids=torch.arange(4), bank_ids=torch.arange(20))
    # the same queries against the bank without any of their own rows: drop row i for query i, one at a time
    singles = [
        look_loss(
            z[i : i + 1],
            y[i : i + 1],
            torch.cat([bank[:i], bank[i + 1 :]]),
            torch.cat([bank_y[:i], bank_y[i + 1 :]]),
            k=5,
            tau=0.1,
        ).loss
        for i in range(4)
    ]
    assert with_own.loss.item() == pytest.approx(torch.stack(singles).mean().item(), rel=1e-9)


def test_large_k_and_tau_give_class_frequency_among_others():
    bank, bank_y = _unit(12, 4, seed=4), torch.tensor([0] * 5 + [1] * 7)
    z, y, ids = bank[:1], bank_y[:1], torch.tensor([0])
    out = look_loss(z, y, bank, bank_y, k=11, tau=1e6, query_ids=ids, bank_ids=torch.arange(12))
    # p -> (5 - 1) same-class others / 11 others as tau -> infinity
    assert out.loss.item() == pytest.approx(-math.log(4 / 11), rel=1e-4)


def test_gradient_only_through_query_and_bank_update_after_forward_is_safe():
    bank = NeighborBank(30, 6, mode="full", mu=0.5)
    bank.fill(_unit(30, 6, seed=5).float(), torch.arange(30) % 3)
    z = F.normalize(torch.randn(5, 6), dim=1).requires_grad_()
    ids, y = torch.arange(5), torch.arange(5) % 3
    crit = LOOKLoss(k=4, tau=0.1)
    ref = torch.autograd.grad(crit(z, y, ids, bank).loss, z)[0]
    out = crit(z, y, ids, bank)
    before = bank.feats.clone()
    bank.update(torch.randn(5, 6), y, ids)  # in-place update between forward and backward (the regression)
    assert not torch.equal(before, bank.feats)
    out.loss.backward()  # must not raise "modified by an inplace operation"
    torch.testing.assert_close(z.grad, ref)  # changing the bank after the forward does not change the gradient
    assert not bank.feats.requires_grad


def test_no_positive_policies():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [-1.0, 0.0]])
    bank = F.normalize(bank, dim=1)
    bank_y = torch.tensor([1, 1, 0])
    z, y = F.normalize(torch.tensor([[1.0, 0.05]]), dim=1).requires_grad_(), torch.tensor([0])
    skip = look_loss(z, y, bank, bank_y, k=2, tau=0.1)  # both neighbours are class 1: no positive
    assert skip.no_positive_fraction == 1.0 and skip.loss.item() == 0.0
    added = look_loss(z, y, bank, bank_y, k=2, tau=0.1, on_no_positive="add_nearest_positive")
    s = (F.normalize(torch.tensor([[1.0, 0.05]]), dim=1) @ bank.T / 0.1)[0]
    expected = torch.logsumexp(s, 0) - s[2]  # the nearest positive (row 2) joins the two neighbours
    assert added.loss.item() == pytest.approx(expected.item(), rel=1e-6) and math.isfinite(added.loss.item())
    added.loss.backward()
    assert torch.isfinite(z.grad).all()


def test_chunked_topk_equals_unchunked():
    q, bank = _unit(7, 8, seed=6), _unit(100, 8, seed=7)
    ids, qids = torch.arange(100), torch.tensor([3, 50, 99, 0, 10, 20, 30])
    labels, qlab = torch.arange(100) % 4, qids % 4
    full = bank_topk(q, bank, 9, query_ids=qids, bank_ids=ids, query_labels=qlab, bank_labels=labels)
    chunked = bank_topk(q, bank, 9, query_ids=qids, bank_ids=ids, query_labels=qlab, bank_labels=labels, chunk_size=7)
    torch.testing.assert_close(full[0], chunked[0])  # values: equal up to matmul blocking round-off
    assert torch.equal(full[1], chunked[1]) and torch.equal(full[2], chunked[2])
    ref = (q @ bank.T).masked_fill(qids[:, None] == ids[None, :], float("-inf")).topk(9, dim=1)
    assert torch.equal(full[1], ref.indices)
    assert not (full[1] == qids[:, None]).any()  # own entries never returned


def test_queue_bank_fifo_and_empty_slots_ignored():
    bank = NeighborBank(4, 2, mode="queue")
    bank.update(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), torch.tensor([0, 1, 0]), torch.tensor([5, 6, 7]))
    assert bank.ids.tolist() == [5, 6, 7, -1]
    bank.update(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([1, 1]), torch.tensor([8, 9]))
    assert bank.ids.tolist() == [9, 6, 7, 8] and int(bank.ptr) == 1
    fresh = NeighborBank(4, 2, mode="queue")
    fresh.update(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]), torch.tensor([1, 2]))
    vals, idx, _ = bank_topk(
        torch.tensor([[1.0, 0.0]]), fresh.feats, 3, query_ids=torch.tensor([1]), bank_ids=fresh.ids
    )
    assert idx[0, 0].item() == 1 and torch.isinf(vals[0, 1:]).all()  # only one eligible row


def test_batch_mode_masks_diagonal():
    z, y = _unit(6, 3, seed=8), torch.tensor([0, 0, 1, 1, 2, 2])
    out = LOOKLoss(k=2, tau=0.5)(z, y)
    ref, _ = _brute_force(z, y, z, y, 2, 0.5, list(range(6)), list(range(6)))
    assert out.loss.item() == pytest.approx(ref, rel=1e-9)


def test_errors():
    z, y = _unit(2, 3), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="on_no_positive must be one of"):
        look_loss(z, y, z, y, k=1, tau=0.1, on_no_positive="drop")
    with pytest.raises(ValueError, match="tau must be > 0"):
        look_loss(z, y, z, y, k=1, tau=0.0)
    with pytest.raises(ValueError, match="must share d"):
        look_loss(z, y, z[:, :2], y, k=1, tau=0.1)
    with pytest.raises(ValueError, match=r"k must be in \[1, 2\]"):
        bank_topk(z, z, 3)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        bank_topk(z, z, 1, chunk_size=0)
    with pytest.raises(ValueError, match="k must be >= 1"):
        LOOKLoss(k=0)
    with pytest.raises(ValueError, match="tau must be > 0"):
        LOOKLoss(tau=-1.0)
    with pytest.raises(ValueError, match="on_no_positive must be one of"):
        LOOKLoss(on_no_positive="x")
    with pytest.raises(ValueError, match="ids .* are required"):
        LOOKLoss(k=1)(z, y, None, NeighborBank(4, 3))
    with pytest.raises(ValueError, match="mode must be"):
        NeighborBank(4, 3, mode="ring")
    with pytest.raises(ValueError, match="size must be >= 2"):
        NeighborBank(1, 3)
    with pytest.raises(ValueError, match=r"mu must be in \[0, 1\)"):
        NeighborBank(4, 3, mu=1.0)
    with pytest.raises(ValueError, match="fill needs a full bank"):
        NeighborBank(4, 3, mode="queue").fill(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="key_momentum must be in"):
        LOOKModel(MLPEncoder(), 64, key_momentum=1.5)
    x, yy = torch.rand(8, 1, 8, 8), torch.zeros(8, dtype=torch.long)
    with pytest.raises(ValueError, match="loss must be 'look' or 'ce'"):
        pretrain(MLPEncoder(), x, yy, loss="supcon", feat_dim=64)
    with pytest.raises(ValueError, match="recipe.bank must be"):
        pretrain(MLPEncoder(), x, yy, feat_dim=64, recipe=LOOKRecipe(bank="ring"))
    with pytest.raises(ValueError, match="x has 8 samples but y has 7"):
        pretrain(MLPEncoder(), x, yy[:7], feat_dim=64)


def _two_mode_data(n=96):
    """Class 0 = two clusters (+-e0), class 1 = one cluster (e1): a multi-modal upstream class."""
    g = torch.Generator().manual_seed(0)
    centre = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])
    mode = torch.arange(n) % 3
    x = centre[mode] + 0.3 * torch.randn(n, 2, generator=g)
    x = torch.cat([x, torch.zeros(n, 62)], 1).reshape(n, 1, 8, 8)
    return x, (mode == 2).long(), mode


@pytest.mark.parametrize("bank", ["full", "queue", "batch"])
def test_pretrain_recipe_runs_and_learns(bank, tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 1, 8, 8, generator=g)
    y = (x.flatten(1)[:, :4].sum(1) > 0).long()  # a linear rule the random encoder does not yet separate
    recipe = LOOKRecipe(k=5, bank=bank, queue_size=64, key_momentum=0.9 if bank == "queue" else None)
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05, optimizer="sgd", progress=False, seed=0)
    enc = MLPEncoder(dims=(16, 8))
    res = pretrain(enc, x, y, feat_dim=8, recipe=recipe, config=cfg, out_dir=tmp_path)
    assert len(res.no_positive_fraction) == 3 and all(0 <= f <= 1 for f in res.no_positive_fraction)
    assert (tmp_path / "last.safetensors").exists()
    hist = [row["train_loss"] for row in res.fit.history]
    assert all(math.isfinite(v) for v in hist)
    assert hist[-1] < hist[0]  # measured: full 0.76 -> 0.58, queue 0.61 -> 0.50, batch 0.72 -> 0.55
    if bank != "batch":
        assert "bank.feats" in dict(res.model.named_buffers())


@pytest.mark.slow
def test_look_keeps_modes_that_ce_merges():
    """Mechanism (spec §1): with a two-mode class, LOOK features keep a larger within-class spread than C.E."""
    x, y, mode = _two_mode_data(192)
    cfg = TrainConfig(epochs=15, batch_size=32, lr=0.05, optimizer="sgd", progress=False, seed=0)
    spreads = {}
    for loss in ("ce", "look"):
        torch.manual_seed(0)
        enc = MLPEncoder(dims=(32, 16))
        pretrain(enc, x, y, loss=loss, feat_dim=16, num_classes=2, recipe=LOOKRecipe(k=5), config=cfg)
        enc.eval()
        with torch.no_grad():
            spreads[loss] = within_class_spread(enc.forward_features(x), y)
    # measured at commit time: ce ~0.2, look ~0.6 (normalised features); the margin is wide
    assert spreads["look"] > spreads["ce"], spreads


def test_within_class_spread_reference():
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    # class 0 centroid (0.5, 0.5): both at distance sqrt(0.5); class 1 a single point at distance 0
    assert within_class_spread(feats, labels) == pytest.approx(2 * math.sqrt(0.5) / 3)


def test_resume_restores_bank_and_continues_exactly(tmp_path):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 1, 8, 8, generator=g)
    y = (x.flatten(1)[:, 0] > 0).long()
    recipe = LOOKRecipe(k=4)

    def run(cfg, out, resume=False):
        torch.manual_seed(0)
        enc = MLPEncoder(dims=(16, 8))
        res = pretrain(enc, x, y, feat_dim=8, recipe=recipe, config=cfg, out_dir=out, resume=resume)
        return res.model

    base = dict(epochs=2, batch_size=16, lr=0.05, optimizer="sgd", progress=False, checkpoint_every=1)
    whole = run(TrainConfig(**base), tmp_path / "a")
    run(TrainConfig(**base, max_steps=4), tmp_path / "b")  # stops after epoch 1 (4 of 8 steps)
    resumed = run(TrainConfig(**base), tmp_path / "b", resume=True)
    for (name, p), q in zip(whole.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name)  # weights and the bank buffers agree
