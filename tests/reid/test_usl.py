"""Cluster contrast: the Jaccard distance against a loop transcription of the official code, memory updates."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from damokit.reid.model import transreid_ssl_tiny
from damokit.reid.usl import ClusterContrast, USLRecipe, cluster_pseudo_labels, jaccard_distance, train_usl


def _k_reciprocal(rank, i, k):
    forward = rank[i, : k + 1]
    backward = rank[forward, : k + 1]
    return forward[np.where(backward == i)[0]]


def _official_jaccard(feat: np.ndarray, k1: int, k2: int) -> np.ndarray:
    """Loop transcription of cluster-contrast ``compute_jaccard_distance`` (exact k-NN, dense)."""
    N = feat.shape[0]
    dist = np.maximum(2 - 2 * feat @ feat.T, 0)
    rank = np.argsort(dist, axis=1, kind="stable")
    V = np.zeros((N, N), dtype=np.float64)
    for i in range(N):
        kr = _k_reciprocal(rank, i, k1)
        exp = kr
        for c in kr:
            ckr = _k_reciprocal(rank, c, int(np.around(k1 / 2)))
            if len(np.intersect1d(ckr, kr)) > 2 / 3 * len(ckr):
                exp = np.append(exp, ckr)
        exp = np.unique(exp)
        w = np.exp(-dist[i, exp])
        V[i, exp] = w / w.sum()
    if k2 > 1:
        V = np.stack([V[rank[i, :k2]].mean(0) for i in range(N)])
    jac = np.zeros((N, N))
    for i in range(N):
        tmin = np.minimum(V[i][None, :], V).sum(1)
        jac[i] = 1 - tmin / (2 - tmin)
    return jac


def test_jaccard_matches_official_loops():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(5, 8, generator=g)
    feat = F.normalize(centers.repeat_interleave(8, 0) + 0.3 * torch.randn(40, 8, generator=g), dim=1)
    ours = jaccard_distance(feat, k1=6, k2=3)
    ref = _official_jaccard(feat.double().numpy(), 6, 3)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    labels = cluster_pseudo_labels(ours, eps=0.6, min_samples=4)
    assert labels.max() >= 1  # several clusters found on clustered data
    with pytest.raises(ValueError, match="at least 2 features"):
        jaccard_distance(feat[:1])


def test_hard_memory_update_moves_least_similar_sample():
    cc = ClusterContrast(transreid_ssl_tiny(), momentum=0.2)
    cc.set_memory(torch.eye(96)[:2])
    f = F.normalize(torch.tensor([[1.0, 0.2], [1.0, -1.0], [0.1, 1.0]]), dim=1)
    f = F.pad(f, (0, 94))
    cc._hard_update(f, torch.tensor([0, 0, 1]))
    expected0 = F.normalize(0.2 * torch.eye(96)[0] + 0.8 * f[1], dim=0)  # sample 1 is farther from centroid 0
    torch.testing.assert_close(cc.memory[0], expected0)
    torch.testing.assert_close(cc.memory[1], F.normalize(0.2 * torch.eye(96)[1] + 0.8 * f[2], dim=0))


@pytest.mark.slow
def test_train_usl_runs_on_clustered_images():
    from damokit.data.reid_synth import synthetic_reid

    data = synthetic_reid(n_train_ids=6, n_test_ids=1, seed=0)["train"]
    recipe = USLRecipe(epochs=1, iters=2, P=4, K=4, eps=0.7, k1=10, k2=3)
    logs = train_usl(transreid_ssl_tiny(), data.images, recipe)
    assert logs[0]["clusters"] >= 1 and len(logs) == 1
