"""Unsupervised ReID by cluster contrast (official ``cluster-contrast-reid`` scripts, spec §7).

Each epoch: features ``normalize(BN(CLS))`` of all training images -> k-reciprocal Jaccard distance
(k1 = 30, k2 = 6) -> DBSCAN (scikit-learn, precomputed metric) -> outliers dropped -> a memory of
L2-normalised cluster centroids; then ``iters`` P x K batches with loss ``CE(f @ memory^T / 0.05, y)``
and the "hard" memory update (per cluster in the batch, its sample least similar to the centroid moves
it: ``c <- m c + (1 - m) f``, m = 0.2, re-normalised).

Deviations:
    * The Jaccard distance uses sparse matrix products (scipy) for the reciprocal-neighbour expansion and
      a per-column loop for the min-sum (each column holds only a few dozen non-zeros); the official code
      loops over rows. Exact k-NN by a dense distance matrix instead of faiss.
    * The memory is updated right after the loss is computed in ``forward`` (official: in the backward of
      a custom autograd function); the gradient uses the memory from before the update in both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from damokit.engine import TrainConfig, fit
from damokit.reid.model import ReIDModel
from damokit.reid.train import PKBatches, _first, extract_features, train_augment

__all__ = ["jaccard_distance", "cluster_pseudo_labels", "ClusterContrast", "USLRecipe", "train_usl"]


def _reciprocal(rank: np.ndarray, k: int) -> sp.csr_matrix:
    """Boolean (N, N): j in the k-NN of i and i in the k-NN of j (k-NN lists include the point itself)."""
    N = rank.shape[0]
    rows = np.repeat(np.arange(N), k + 1)
    knn = sp.csr_matrix((np.ones(rows.size, dtype=bool), (rows, rank[:, : k + 1].ravel())), shape=(N, N))
    return knn.multiply(knn.T).tocsr()


def jaccard_distance(features: torch.Tensor, k1: int = 30, k2: int = 6) -> np.ndarray:
    """k-reciprocal-encoding Jaccard distance (Zhong et al. 2017, cluster-contrast ``compute_jaccard_distance``).

    Shapes: ``features (N, D)`` (L2-normalised) -> ``(N, N)`` float32 in [0, 1].
    """
    N = features.shape[0]
    if N < 2:
        raise ValueError(f"need at least 2 features for the Jaccard distance, got {N}")
    k1, k2 = min(k1, N - 1), max(1, min(k2, N))
    feats = features.float()
    dist = (2 - 2 * feats @ feats.T).clamp_min(0).numpy()  # (N, N) squared Euclidean of unit vectors
    rank = np.argsort(dist, axis=1, kind="stable")[:, : k1 + 1]  # (N, k1+1), self first
    R = _reciprocal(rank, k1)  # k-reciprocal sets
    Rh = _reciprocal(rank, int(np.around(k1 / 2)))  # half-size sets of the candidates
    # expansion: add Rh(c) for a candidate c in R(i) when |Rh(c) & R(i)| > 2/3 |Rh(c)|
    overlap = (R.astype(np.float32) @ Rh.T.astype(np.float32)).tocsr()  # (N, N): |R(i) & Rh(c)|
    size_h = np.asarray(Rh.sum(1)).ravel()
    cond = R.multiply(overlap).tocoo()
    ok = cond.data > (2 / 3) * size_h[cond.col]
    accept = sp.csr_matrix((np.ones(ok.sum(), dtype=np.float32), (cond.row[ok], cond.col[ok])), shape=(N, N))
    expanded = ((R.astype(np.float32) + accept @ Rh.astype(np.float32)) > 0).tocoo()
    # V(i, j) = softmax over the expanded set of -dist(i, j)
    weight = np.exp(-dist[expanded.row, expanded.col])
    V = sp.csr_matrix((weight, (expanded.row, expanded.col)), shape=(N, N))
    V = sp.diags(1 / np.asarray(V.sum(1)).ravel()) @ V
    if k2 > 1:  # query expansion: average V over the k2 nearest neighbours
        rows = np.repeat(np.arange(N), k2)
        avg = sp.csr_matrix((np.full(rows.size, 1 / k2), (rows, rank[:, :k2].ravel())), shape=(N, N))
        V = avg @ V
    V = V.tocsc()
    inter = np.zeros((N, N), dtype=np.float32)  # sum_k min(V[i,k], V[j,k])
    for k in range(N):  # one small dense block per column (its few non-zero rows)
        lo, hi = V.indptr[k], V.indptr[k + 1]
        if hi > lo:
            rows_k, vals = V.indices[lo:hi], V.data[lo:hi]
            inter[np.ix_(rows_k, rows_k)] += np.minimum.outer(vals, vals)
    return np.clip(1 - inter / (2 - inter), 0, 1)  # official: negatives from rounding set to 0


def cluster_pseudo_labels(distance: np.ndarray, eps: float = 0.6, min_samples: int = 4) -> np.ndarray:
    """DBSCAN on a precomputed distance; label -1 marks outliers."""
    from sklearn.cluster import DBSCAN

    return DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed", n_jobs=1).fit_predict(distance)


class ClusterContrast(nn.Module):
    """A ``ReIDModel`` with a cluster memory; ``forward(images, labels)`` returns the contrastive loss.

    Shapes: ``images (B, 3, H, W)``, ``labels (B,)`` -> scalar; ``memory (C, D)``.
    """

    def __init__(self, model: ReIDModel, temp: float = 0.05, momentum: float = 0.2):
        super().__init__()
        self.model = model
        self.temp, self.momentum = temp, momentum
        self.register_buffer("memory", torch.zeros(0, model.base.embed_dim), persistent=False)

    def set_memory(self, centroids: torch.Tensor) -> None:
        self.memory = F.normalize(centroids, dim=1).to(self.memory.device)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        f = self.model.bn_features(images)  # (B, D)
        loss = F.cross_entropy(f @ self.memory.clone().T / self.temp, labels)
        if self.training:
            self._hard_update(f.detach(), labels)
        return loss

    @torch.no_grad()
    def _hard_update(self, f: torch.Tensor, labels: torch.Tensor) -> None:
        sim = (f * self.memory[labels]).sum(1)  # (B,) similarity to own centroid
        for c in torch.unique(labels).tolist():  # clusters in the batch (P of them)
            idx = torch.nonzero(labels == c).flatten()
            hardest = idx[sim[idx].argmin()]
            new = self.momentum * self.memory[c] + (1 - self.momentum) * f[hardest]
            self.memory[c] = F.normalize(new, dim=0)


@dataclass(frozen=True)
class USLRecipe:
    """Cluster-contrast settings (defaults: official Market-1501 USL script)."""

    epochs: int = 50
    iters: int = 200
    """Batches per epoch."""
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    step_size: int = 20
    """LR x0.1 every this many epochs."""
    P: int = 32
    K: int = 8
    eps: float = 0.6
    """DBSCAN radius (0.6 Market-1501, 0.7 MSMT17)."""
    min_samples: int = 4
    k1: int = 30
    k2: int = 6
    seed: int = 0


def _usl_step(m: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return m(train_augment(x), y)


def train_usl(
    model: ReIDModel, images: torch.Tensor, recipe: USLRecipe = USLRecipe(), *, progress: bool = False
) -> list[dict]:
    """Cluster-contrast training of ``model`` on unlabelled ``images`` (N, 3, H, W); returns per-epoch logs.

    Each epoch runs ``damokit.engine.fit`` over fresh pseudo-labels with one shared SGD optimizer.
    """
    cc = ClusterContrast(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=recipe.lr, momentum=0.9, weight_decay=recipe.weight_decay)
    logs = []
    for epoch in range(recipe.epochs):
        feats = extract_features(model.bn_features, images)
        labels = cluster_pseudo_labels(jaccard_distance(feats, recipe.k1, recipe.k2), recipe.eps, recipe.min_samples)
        keep = torch.from_numpy(labels >= 0)
        n_clusters = int(labels.max()) + 1 if keep.any() else 0
        log = {"epoch": epoch + 1, "clusters": n_clusters, "outliers": int((~keep).sum())}
        if n_clusters < 2:
            logs.append({**log, "loss": None})
            break  # too few clusters to form batches; the features would not change, so neither would this
        y = torch.from_numpy(labels[labels >= 0]).long()
        centroids = torch.zeros(n_clusters, feats.shape[1]).index_add_(0, y, feats[keep])
        cc.set_memory(centroids / torch.bincount(y, minlength=n_clusters).unsqueeze(1))
        for group in optimizer.param_groups:
            group["lr"] = recipe.lr * 0.1 ** (epoch // recipe.step_size)
        data = PKBatches(images[keep], y, min(recipe.P, n_clusters), recipe.K, 1, recipe.seed + epoch, recipe.iters)
        config = TrainConfig(epochs=1, batch_size=1, shuffle=False, seed=recipe.seed + epoch, progress=progress)
        result = fit(cc, data, loss_fn=_usl_step, config=config, optimizer=optimizer, collate_fn=_first)
        logs.append({**log, "loss": result.history[-1]["train_loss"]})
    return logs
