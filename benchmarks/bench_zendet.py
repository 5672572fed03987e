"""ZenDet search speed: the official 100,000-candidate search with the closed-form entropy.

Rows (all timed in this process):
* the whole search (population 256, 2 mutations per child, official R50-FLOPs budget), seconds and
  microseconds per candidate; the issue's target is under 2 minutes on an idle 2-core CPU;
* one score: closed form (v2) vs the forward pass (v1, one 480x480 image, one draw) on MAE-DET-S.
"""

from __future__ import annotations

import time

import torch

from damokit.benchmarking import BenchResult, time_callable
from damokit.nas.zen import DETECTION_STAGE_WEIGHTS, entropy_score
from damokit.nas.zendet import INITIAL_DETECTION_STRUCTURE, MAEDET_STRUCTURES, search
from damokit.registry import register_benchmark


@register_benchmark("zendet", paper="2111.13336")
def run(quick: bool) -> BenchResult:
    torch.set_num_threads(2)
    iterations = 20_000 if quick else 100_000
    start = time.perf_counter()
    result = search(INITIAL_DETECTION_STRUCTURE, iterations=iterations, seed=13, progress=not quick)
    total = time.perf_counter() - start
    rows = [
        {
            "what": f"search, {iterations} candidates (closed form)",
            "baseline_s": None,
            "candidate_s": total,
            "ratio": None,
            "per_candidate_us": 1e6 * total / iterations,
            "note": f"best score {result.best_score:.1f}, FLOPs {result.best_info['flops'] / 1e9:.2f} G",
        }
    ]
    s = MAEDET_STRUCTURES["maedet_s"]
    closed = time_callable(lambda: entropy_score(s, stage_weights=DETECTION_STAGE_WEIGHTS))
    forward = time_callable(
        lambda: entropy_score(s, stage_weights=DETECTION_STAGE_WEIGHTS, mode="forward", batch=1, repeat=1),
        min_run_time=0.1 if quick else 1.0,
    )
    rows.append(
        {
            "what": "score MAE-DET-S: forward (v1, 1x480^2, 1 draw) vs closed form",
            "baseline_s": forward,
            "candidate_s": closed,
            "ratio": forward / closed,
            "per_candidate_us": 1e6 * closed,
            "note": "v1 default is 4 draws of batch 32: 128x this forward cost",
        }
    )
    return BenchResult(
        name="zendet",
        title="MAE-DET evolutionary search with the closed-form entropy",
        rows=rows,
        conditions={
            "population": 256,
            "budget": "FLOPs<=18.8G@480, layers<=91, stages<=5",
            "seed": 13,
        },
        notes="Timings on a shared CPU are inflated by load; the ratios come from one process.",
    )
