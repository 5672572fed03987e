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
    """Sums of per-query CMC and AP over chunks.

    No full sort of the gallery: only the ranks of the matches matter (CMC needs the first, AP all of them),
    and a match's rank among the kept items is ``1 + (matches before it) + (other identities before it)``.
    Per chunk, the matches of each query are sorted (a ``(c, R_max)`` block), every other-identity item is
    placed between them by binary search, and a histogram of those positions gives the counts. Order is
    (distance, gallery index), i.e. the stable sort of the official code. ``O(c G log R_max)`` instead of
    ``O(c G log G)``, with ``(c, G)`` blocks only.
    """

    def __init__(self, max_rank: int, tie_budget: int = 1 << 21):
        self.max_rank = max_rank
        self.tie_budget = tie_budget  # (item, match) pairs compared at once when distances tie exactly
        self.cmc = torch.zeros(max_rank, dtype=torch.float64)
        self.ap = 0.0
        self.valid = 0

    def add(self, dist: torch.Tensor, q_pids, g_pids, q_cams, g_cams) -> None:
        c, G = dist.shape  # (c, G) distances of a chunk of c queries
        dev = dist.device
        same = g_pids[None, :] == q_pids[:, None]  # (c, G) same identity
        match = same & (g_cams[None, :] != q_cams[:, None])  # same identity, other camera: the kept ones
        # (same identity and same camera: removed; other identities: always kept)
        n_match = match.sum(1)  # R per query
        R = int(n_match.max())
        if R == 0:
            return
        # each query's matches as a padded row (distance, gallery index), pads (inf, G) sort last
        row, col = match.nonzero(as_tuple=True)  # row-major: gallery order within a query
        slot = torch.arange(len(row), device=dev) - (torch.cumsum(n_match, 0) - n_match)[row]
        md = torch.full((c, R + 1), torch.inf, dtype=dist.dtype, device=dev)  # >= 1 pad column
        mi = torch.full((c, R + 1), G, dtype=torch.long, device=dev)
        md[row, slot], mi[row, slot] = dist[row, col], col
        md, perm = torch.sort(md, dim=1, stable=True)  # ties keep gallery order
        mi = mi.gather(1, perm)
        # before[i, j] = matches of query i ranked before item j: those strictly closer ...
        before = torch.searchsorted(md, dist)  # (c, G) in [0, R]
        # ... plus equally distant ones of lower gallery index (rare: found by probing the next match)
        tied = (md.gather(1, before) == dist) & ~same
        if tied.any():
            ti, tj = tied.nonzero(as_tuple=True)
            step = max(1, self.tie_budget // (R + 1))
            for s in range(0, len(ti), step):  # bounded (items x matches) blocks
                i, j = ti[s : s + step], tj[s : s + step]
                before[i, j] += ((md[i] == dist[i, j, None]) & (mi[i] < j[:, None])).sum(1)
        # histogram per query of where the other identities fall; same-identity items go to a spare bin
        before.masked_fill_(same, R + 1)
        before += torch.arange(c, device=dev)[:, None] * (R + 2)
        counts = torch.bincount(before.view(-1), minlength=c * (R + 2)).view(c, R + 2)
        r = torch.arange(R, device=dev)
        rank = counts[:, :R].cumsum(1) + r + 1  # (c, R) 1-based rank of the r-th match among kept items
        valid = n_match > 0
        rank, n_valid = rank[valid], n_match[valid]
        # AP = mean over the R matches of (r + 1) / rank; padded slots (r >= R_q) are masked out
        prec = torch.where(r < n_valid[:, None], (r + 1) / rank.double(), 0.0)
        ks = torch.arange(1, self.max_rank + 1, device=dev)
        self.cmc += (rank[:, :1] <= ks).sum(0).double().cpu()  # CMC from the first hit's rank
        self.ap += float((prec.sum(1) / n_valid).sum())
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
    if not distmat.is_floating_point():
        distmat = distmat.double()
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
