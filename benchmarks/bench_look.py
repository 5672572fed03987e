"""LOOK neighbour search at scale: chunked bank top-k vs the brute-force (B x N) similarity matrix.

Rows (timed in this process, same inputs): for a bank of N unit vectors (d = 128) and a batch of B = 256
queries with leave-one-out masking, the chunked search (65,536 columns per product, per-chunk top-k merged)
against one full product + top-k; peak similarity-matrix memory of each; and one LOOK loss forward + backward
over the bank. Quick: N = 100k; full: N = 100k and 1M (the issue's "1M x 128 fits" check).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from damokit.benchmarking import BenchResult, time_callable
from damokit.pretrain.look import bank_topk, look_loss
from damokit.registry import register_benchmark

B, D, K, CHUNK = 256, 128, 50, 65536


def _brute(q, bank, qids, ids):
    sims = (q @ bank.T).masked_fill(qids[:, None] == ids[None, :], float("-inf"))  # (B, N) at once
    return sims.topk(K, dim=1)


@register_benchmark("look", paper="2110.06014")
def run(quick: bool) -> BenchResult:
    """Chunked bank top-k vs brute force, and one LOOK loss step, at 100k (and 1M) entries."""
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(0)
    rows = []
    for n in (100_000,) if quick else (100_000, 1_000_000):
        bank = F.normalize(torch.randn(n, D, generator=g), dim=1)
        labels, ids = torch.randint(0, 1000, (n,), generator=g), torch.arange(n)
        qids = torch.randint(0, n, (B,), generator=g)
        q = F.normalize(bank[qids] + 0.1 * torch.randn(B, D, generator=g), dim=1)
        chunked = bank_topk(q, bank, K, query_ids=qids, bank_ids=ids, chunk_size=CHUNK)
        ref = _brute(q, bank, qids, ids)
        same = bool(torch.equal(chunked[1], ref.indices))
        t_chunk = time_callable(lambda: bank_topk(q, bank, K, query_ids=qids, bank_ids=ids, chunk_size=CHUNK))  # noqa: B023
        t_brute = time_callable(lambda: _brute(q, bank, qids, ids))  # noqa: B023
        rows.append(
            {
                "what": f"top-{K} of {B} queries in a {n:,} x {D} bank",
                "baseline_s": t_brute,
                "candidate_s": t_chunk,
                "ratio": t_brute / t_chunk,
                "sim_matrix_MB": f"{B * n * 4 / 2**20:.0f} -> {B * min(n, CHUNK) * 4 / 2**20:.0f}",
                "note": f"same indices: {same}",
            }
        )
        z = q.clone().requires_grad_()

        def step():
            out = look_loss(z, labels[qids], bank, labels, k=K, tau=0.1, query_ids=qids, bank_ids=ids)  # noqa: B023
            out.loss.backward()

        rows.append(
            {
                "what": f"LOOK loss forward + backward, {n:,}-entry bank",
                "baseline_s": None,
                "candidate_s": time_callable(step),
                "ratio": None,
                "sim_matrix_MB": f"{B * min(n, CHUNK) * 4 / 2**20:.0f}",
                "note": "gradient through the query only",
            }
        )
    return BenchResult(
        name="look",
        title="LOOK bank neighbour search: chunked top-k vs brute force",
        rows=rows,
        conditions={
            "B": B,
            "d": D,
            "k": K,
            "chunk": CHUNK,
            "dtype": "float32",
        },  # fmt: skip
        notes="ratio = brute-force seconds / chunked seconds (medians, same process, same inputs)",
    )
