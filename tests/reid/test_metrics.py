"""R3: Market-1501 evaluation, the spec §8 hand-computed case, stable ties, chunked == unchunked."""

import numpy as np
import pytest
import torch

from damokit.reid.metrics import _Accumulator, evaluate, evaluate_features, pairwise_sq_dist

# spec §8: gallery (pid, cam) and the three queries
G_PIDS, G_CAMS = [1, 2, 1, 3, 1, 2], [0, 1, 1, 0, 2, 2]
Q_PIDS, Q_CAMS = [1, 2, 4], [0, 1, 0]
DIST = [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.9, 0.5, 0.4, 0.3, 0.8, 0.1], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]]


def _reference(distmat, q_pids, g_pids, q_cams, g_cams, max_rank):
    """Per-query loop transcribing the official eval_func (with a stable argsort)."""
    cmcs, aps = [], []
    for i in range(len(q_pids)):
        order = np.argsort(distmat[i], kind="stable")
        keep = ~((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i]))
        m = (g_pids[order] == q_pids[i])[keep].astype(float)
        if not m.any():
            continue
        cmc = np.minimum(m.cumsum(), 1)[:max_rank]
        cmcs.append(cmc)
        prec = m.cumsum() / (np.arange(len(m)) + 1)
        aps.append((prec * m).sum() / m.sum())
    return np.mean(cmcs, 0), np.mean(aps)


def test_hand_computed_case():
    s = evaluate(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=5)
    assert s.mAP == pytest.approx(0.75)  # q1 AP 0.5, q2 AP 1, q3 skipped
    assert s.cmc.tolist() == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0])
    assert s.num_valid == 2


def test_ties_follow_gallery_order():
    # two equidistant items: a stable sort ranks the earlier (non-match) first -> AP 1/2
    s = evaluate([[0.5, 0.5]], [1], [2, 1], [0], [1, 1], max_rank=2)
    assert s.mAP == pytest.approx(0.5) and s.cmc.tolist() == [0.0, 1.0]


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_chunked_equals_reference_on_random_data(chunk):
    g = torch.Generator().manual_seed(0)
    q, gal = torch.randn(40, 8, generator=g), torch.randn(90, 8, generator=g)
    qp, gp = torch.randint(0, 10, (40,), generator=g), torch.randint(0, 10, (90,), generator=g)
    qc, gc = torch.randint(0, 3, (40,), generator=g), torch.randint(0, 3, (90,), generator=g)
    dist = pairwise_sq_dist(q, gal)
    ref_cmc, ref_map = _reference(dist.numpy(), qp.numpy(), gp.numpy(), qc.numpy(), gc.numpy(), 20)
    s = evaluate(dist, qp, gp, qc, gc, max_rank=20, chunk_size=chunk)
    assert s.mAP == pytest.approx(ref_map, rel=1e-9)
    np.testing.assert_allclose(s.cmc.numpy(), ref_cmc)
    f = evaluate_features(q, gal, qp, gp, qc, gc, max_rank=20, chunk_size=chunk)
    assert f.mAP == pytest.approx(s.mAP, rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_ties_follow_the_stable_order(seed):
    # integer distances 0..4 over 3 identities: most items tie with some match; ranks must follow the
    # stable sort (distance, then gallery index) exactly as the reference loop
    g = torch.Generator().manual_seed(seed)
    dist = torch.randint(0, 5, (37, 91), generator=g)  # an integer matrix is accepted (read as float64)
    qp, gp = torch.randint(0, 3, (37,), generator=g), torch.randint(0, 3, (91,), generator=g)
    qc, gc = torch.randint(0, 2, (37,), generator=g), torch.randint(0, 2, (91,), generator=g)
    ref_cmc, ref_map = _reference(dist.numpy(), qp.numpy(), gp.numpy(), qc.numpy(), gc.numpy(), 20)
    s = evaluate(dist, qp, gp, qc, gc, max_rank=20, chunk_size=5)
    assert s.mAP == pytest.approx(ref_map, rel=1e-12)
    np.testing.assert_allclose(s.cmc.numpy(), ref_cmc)
    # the tie correction in blocks of a few (item, match) pairs gives the same sums
    small = _Accumulator(20, tie_budget=7)
    small.add(dist.double(), qp, gp, qc, gc)
    assert small.result().mAP == pytest.approx(ref_map, rel=1e-12)
    np.testing.assert_allclose(small.result().cmc.numpy(), ref_cmc)


def test_errors():
    with pytest.raises(ValueError, match="the query set is empty"):
        evaluate(np.zeros((0, 3)), [], [1, 2, 3], [], [0, 0, 0])
    with pytest.raises(ValueError, match="no query has a match"):
        evaluate([[0.1]], [1], [1], [0], [0])
    with pytest.raises(ValueError, match="g_pids/g_camids need 2 entries"):
        evaluate([[0.1, 0.2]], [1], [1], [0], [0])
    with pytest.raises(ValueError, match="distmat must be"):
        evaluate(np.zeros(3), [1], [1], [0], [0])
    with pytest.raises(ValueError, match=r"features must be \(Q, D\)"):
        evaluate_features(torch.zeros(2, 3), torch.zeros(2, 4), [1, 1], [1, 1], [0, 0], [1, 1])
