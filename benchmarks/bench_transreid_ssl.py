"""ReID evaluation (mAP + CMC): the official per-query loop vs damokit's chunked, vectorised ``evaluate_features``.

Baseline: a transcription of the official ``eval_func`` (numpy, one query at a time, over a full
``(Q, G)`` distance matrix that must exist in memory). Candidate: ``damokit.reid.metrics.evaluate_features``,
which computes distances, sorts and scores a block of queries at a time, so its memory is one
``(chunk, G)`` block. Both give the same mAP (checked). Random 256-d unit features, 500 identities,
6 cameras. Full mode adds Market-1501's size (3,368 x 15,913) and MSMT17's (11,659 x 82,161,
candidate only: the baseline's full float32 matrix alone would be 3.8 GB).
"""

from __future__ import annotations

import platform
import time

import numpy as np
import torch

from damokit.benchmarking import BenchResult
from damokit.registry import register_benchmark
from damokit.reid.metrics import auto_chunk, evaluate_features, pairwise_sq_dist

__all__ = ["run"]


def _official_loop(distmat: np.ndarray, q_pids, g_pids, q_cams, g_cams, max_rank: int = 50) -> float:
    """The official eval_func, one query at a time (numpy)."""
    indices = np.argsort(distmat, axis=1, kind="stable")
    matches = (g_pids[indices] == q_pids[:, None]).astype(np.int32)
    aps = []
    for i in range(len(q_pids)):
        order = indices[i]
        keep = ~((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i]))
        m = matches[i][keep]
        if not m.any():
            continue
        cmc = m.cumsum()
        cmc[cmc > 1] = 1
        prec = m.cumsum() / (np.arange(len(m)) + 1.0)
        aps.append((prec * m).sum() / m.sum())
    return float(np.mean(aps))


def _data(n_q: int, n_g: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    qf = torch.nn.functional.normalize(torch.randn(n_q, 256, generator=g), dim=1)
    gf = torch.nn.functional.normalize(torch.randn(n_g, 256, generator=g), dim=1)
    return (
        qf,
        gf,
        torch.randint(0, 500, (n_q,), generator=g),
        torch.randint(0, 500, (n_g,), generator=g),
        torch.randint(0, 6, (n_q,), generator=g),
        torch.randint(0, 6, (n_g,), generator=g),
    )


@register_benchmark("transreid_ssl")
def run(quick: bool) -> BenchResult:
    """Chunked vectorised ReID evaluation vs the official per-query loop: time, memory, same mAP."""
    torch.set_num_threads(2)
    sizes = [(500, 5000)] if quick else [(500, 5000), (3368, 15913), (11659, 82161)]
    rows = []
    for n_q, n_g in sizes:
        qf, gf, qp, gp, qc, gc = _data(n_q, n_g)
        t0 = time.perf_counter()
        ours = evaluate_features(qf, gf, qp, gp, qc, gc)
        t_ours = time.perf_counter() - t0
        chunk = auto_chunk(n_g)
        row = {
            "queries": n_q,
            "gallery": n_g,
            "chunk": chunk,
            "ours_s": t_ours,
            "ours_peak_block_MB": min(chunk, n_q) * n_g * 32 / 2**20,  # ~32 bytes per pair in flight
            "official_peak_MB": n_q * n_g * 16 / 2**20,  # float32 distmat + int64 argsort + int32 matches
        }
        if n_q * n_g <= 6e7:
            t0 = time.perf_counter()
            dist = pairwise_sq_dist(qf, gf).numpy()
            ref = _official_loop(dist, qp.numpy(), gp.numpy(), qc.numpy(), gc.numpy())
            row["official_loop_s"] = time.perf_counter() - t0
            row["speedup"] = row["official_loop_s"] / t_ours
            row["same_mAP"] = abs(ref - ours.mAP) < 1e-6
        rows.append(row)
    conditions = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "dtype": "float32 features",
        "max_rank": 50,
    }
    return BenchResult(
        "transreid_ssl",
        "ReID evaluation: chunked vectorised vs official loop",
        rows,
        conditions,
        notes="one timed run per size (the loop is slow); times include the distance computation",
    )
