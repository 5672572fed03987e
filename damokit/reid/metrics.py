"""Person re-identification evaluation: CMC and mAP under the Market-1501 protocol, in query chunks.

Follows ``eval_func`` of the official ``transreid_pytorch/utils/metrics.py`` (spec §8): per query, the
gallery is sorted by distance (stably, so ties keep gallery order), items of the same identity *and*
camera are removed, and a query without any remaining match is skipped (neither numerator nor
denominator). All queries of a chunk are processed at once; only a ``(chunk, gallery)`` block exists at a
time, so galleries of 100k images are evaluated without the full distance matrix in memory
(``evaluate_features``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

__all__ = ["ReIDScores", "evaluate", "evaluate_features", "pairwise_sq_dist", "auto_chunk"]

ArrayLike = torch.Tensor | np.ndarray


class ReIDScores(NamedTuple):
    cmc: torch.Tensor  # (max_rank,) float64, CMC[k-1] = fraction of valid queries hit within rank k
    mAP: float
    num_valid: int  # queries with at least one match after filtering


def _t(x: ArrayLike) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def auto_chunk(num_gallery: int, budget: int = 1 << 21) -> int:
    """Queries per chunk so that one chunk holds about ``budget`` (query, gallery) pairs (~30 B each)."""
    return max(1, budget // max(num_gallery, 1))


def pairwise_sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances in float64. Shapes: ``(n, D), (m, D) -> (n, m)``.

    ``|a|^2 + |b|^2 - 2 a.b`` cancels catastrophically in float32 for nearly equal unit vectors (the
    features of an untrained model), which would turn distinct distances into ties.
    """
    a, b = a.double(), b.double()
    d = a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1) - 2 * a @ b.T
    return d.clamp_min(0)


class _Accumulator:
    """Sums of per-query CMC and AP over chunks."""

    def __init__(self, max_rank: int):
        self.max_rank = max_rank
        self.cmc = torch.zeros(max_rank, dtype=torch.float64)
        self.ap = 0.0
        self.valid = 0

    def add(self, dist: torch.Tensor, q_pids, g_pids, q_cams, g_cams) -> None:
        # dist (c, G); stable ascending sort so equal distances keep the gallery order
        order = torch.sort(dist, dim=1, stable=True).indices  # (c, G)
        same_pid = g_pids[order] == q_pids[:, None]  # (c, G), sparse: only this identity's items
        # work on the (few) same-identity items only, as flat lists in row-major order
        row, pos = same_pid.nonzero(as_tuple=True)  # (M,), (M,): query index, 0-based sorted position
        removed = g_cams[order[row, pos]] == q_cams[row]  # same identity and same camera: dropped
        match = ~removed
        # exclusive running counts within each query row, from flat cumulative sums
        starts = torch.zeros(len(q_pids) + 1, dtype=torch.long)
        starts[1:] = torch.cumsum(torch.bincount(row, minlength=len(q_pids)), 0)
        cum_removed = torch.cumsum(removed.long(), 0)
        cum_match = torch.cumsum(match.long(), 0)
        base_removed = torch.cat([torch.zeros(1, dtype=torch.long), cum_removed])[starts[row]]
        base_match = torch.cat([torch.zeros(1, dtype=torch.long), cum_match])[starts[row]]
        rank = pos + 1 - (cum_removed - base_removed)  # 1-based rank among kept items (valid for matches)
        hits = cum_match - base_match  # matches up to and including this one
        row, rank, hits = row[match], rank[match], hits[match]
        n_match = torch.bincount(row, minlength=len(q_pids))  # R per query
        valid = n_match > 0
        if not valid.any():
            return
        # first hit rank -> CMC; AP = mean over hits of (hits so far) / rank
        first = torch.full((len(q_pids),), torch.iinfo(torch.long).max).scatter_reduce(0, row, rank, "amin")
        ks = torch.arange(1, self.max_rank + 1)
        self.cmc += (first[valid][:, None] <= ks[None, :]).sum(0).double()
        ap_sum = torch.zeros(len(q_pids), dtype=torch.float64).index_add_(0, row, hits.double() / rank.double())
        self.ap += float((ap_sum[valid] / n_match[valid].double()).sum())
        self.valid += int(valid.sum())

    def result(self) -> ReIDScores:
        if self.valid == 0:
            raise ValueError(
                "no query has a match in the gallery after removing same-identity same-camera items; "
                "check the identity and camera labels of query and gallery"
            )
        return ReIDScores(self.cmc / self.valid, self.ap / self.valid, self.valid)


def _check(q_pids, g_pids, q_cams, g_cams, n_q: int, n_g: int, max_rank: int) -> None:
    if n_q == 0:
        raise ValueError("the query set is empty; pass at least one query")
    if n_g == 0:
        raise ValueError("the gallery is empty; pass at least one gallery item")
    if len(q_pids) != n_q or len(q_cams) != n_q:
        raise ValueError(f"q_pids/q_camids need {n_q} entries (one per query), got {len(q_pids)}/{len(q_cams)}")
    if len(g_pids) != n_g or len(g_cams) != n_g:
        raise ValueError(f"g_pids/g_camids need {n_g} entries (one per gallery item), got {len(g_pids)}/{len(g_cams)}")
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")


def evaluate(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    max_rank: int = 50,
    chunk_size: int | None = None,
) -> ReIDScores:
    """CMC (``max_rank`` long) and mAP of a ``(num_query, num_gallery)`` distance matrix.

    Raises:
        ValueError: empty query set or gallery, label lengths that do not fit, no valid query.

    Example:
        >>> d = torch.tensor([[0.1, 0.2], [0.3, 0.1]])
        >>> s = evaluate(d, [1, 2], [1, 2], [0, 0], [1, 1], max_rank=2)
        >>> float(s.mAP), s.cmc.tolist()
        (1.0, [1.0, 1.0])
    """
    distmat = _t(distmat)
    q_pids, g_pids, q_camids, g_camids = (_t(v).long() for v in (q_pids, g_pids, q_camids, g_camids))
    if distmat.ndim != 2:
        raise ValueError(f"distmat must be (num_query, num_gallery), got shape {tuple(distmat.shape)}")
    n_q, n_g = distmat.shape
    _check(q_pids, g_pids, q_camids, g_camids, n_q, n_g, max_rank)
    acc = _Accumulator(min(max_rank, n_g))
    chunk = chunk_size or auto_chunk(n_g)
    for s in range(0, n_q, chunk):
        acc.add(distmat[s : s + chunk], q_pids[s : s + chunk], g_pids, q_camids[s : s + chunk], g_camids)
    return _pad(acc.result(), max_rank)


def _pad(scores: ReIDScores, max_rank: int) -> ReIDScores:
    """CMC beyond the gallery size stays at its last value (every valid query has a hit by then)."""
    cmc = scores.cmc
    if cmc.numel() < max_rank:
        cmc = torch.cat([cmc, cmc[-1:].expand(max_rank - cmc.numel())])
    return ReIDScores(cmc, scores.mAP, scores.num_valid)


def evaluate_features(
    q_feats: torch.Tensor,
    g_feats: torch.Tensor,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    max_rank: int = 50,
    chunk_size: int | None = None,
) -> ReIDScores:
    """Like ``evaluate`` with squared Euclidean distances computed one query chunk at a time.

    Shapes: ``q_feats (Q, D)``, ``g_feats (G, D)``.
    """
    if q_feats.ndim != 2 or g_feats.ndim != 2 or q_feats.shape[1] != g_feats.shape[1]:
        raise ValueError(f"features must be (Q, D) and (G, D), got {tuple(q_feats.shape)} and {tuple(g_feats.shape)}")
    q_pids, g_pids, q_camids, g_camids = (_t(v).long() for v in (q_pids, g_pids, q_camids, g_camids))
    n_q, n_g = q_feats.shape[0], g_feats.shape[0]
    _check(q_pids, g_pids, q_camids, g_camids, n_q, n_g, max_rank)
    acc = _Accumulator(min(max_rank, n_g))
    chunk = chunk_size or auto_chunk(n_g)
    for s in range(0, n_q, chunk):
        dist = pairwise_sq_dist(q_feats[s : s + chunk], g_feats)  # (c, G)
        acc.add(dist, q_pids[s : s + chunk], g_pids, q_camids[s : s + chunk], g_camids)
    return _pad(acc.result(), max_rank)
