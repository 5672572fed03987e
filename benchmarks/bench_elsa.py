"""ELSA op formulations against each other, and an ELSA block against a Swin window-attention block.

``damokit bench elsa``: forward + backward time (median, ``time_callable``) and the activation memory kept
for backward (bytes of the distinct tensors autograd saves, measured with ``saved_tensors_hooks``; this is
what grows with batch size in training, and it is deterministic, unlike CPU peak RSS).

1. The op (ELSA-Swin-T stage-1 and stage-2 shapes: C=96, 56×56, G=3 and C=192, 28×28, G=6; k=7, λ=0, γ=1):
   shift-and-add (damokit default) vs unfold (the official CPU fallback). Ratio = unfold / shift.
2. Blocks at equal width: ``ELSABlock`` (k=7, group width 4, λ=0, γ=1, MLP ratio 4) vs ``SwinBlock``
   (window 7, shifted) on the same maps. Ratio = ELSA / Swin.
"""

from __future__ import annotations

from functools import partial

import torch

from damokit.benchmarking import BenchResult, saved_bytes, time_callable
from damokit.nn.swin import SwinBlock
from damokit.registry import register_benchmark
from damokit.vision.elsa import ELSABlock, elsa_filter

SHAPES = ((96, 56, 3), (192, 28, 6))  # (C, H = W, heads): ELSA-Swin-T stages 1 and 2 at 224×224
KERNEL = 7


def _op_inputs(batch: int, C: int, size: int, heads: int):
    N = batch * heads
    v = torch.randn(N, C // heads, size, size, requires_grad=True)
    attn = torch.randn(N, KERNEL**2, size, size).softmax(1).requires_grad_()
    add = (0.02 * torch.randn(N, C // heads, KERNEL, KERNEL)).requires_grad_()
    return v, attn, add


def _fwd_bwd(fn):
    def step():
        fn().sum().backward()

    return step


def _measure(fn, min_time: float) -> tuple[float, int]:
    """(median seconds of forward + backward, bytes saved for backward) of ``fn``."""
    return time_callable(_fwd_bwd(fn), min_time), saved_bytes(fn)


def _row(what: str, shape: str, base: str, cand: str, stats: dict[str, tuple[float, int]]) -> dict:
    (t_base, m_base), (t_cand, m_cand) = stats[base], stats[cand]
    return {
        "what": what,
        "shape": shape,
        "baseline": base,
        "candidate": cand,
        "base_ms": 1e3 * t_base,
        "cand_ms": 1e3 * t_cand,
        "time_ratio": t_base / t_cand,
        "base_MB": m_base / 2**20,
        "cand_MB": m_cand / 2**20,
        "mem_ratio": m_base / m_cand,
    }


@register_benchmark("elsa")
def run(quick: bool) -> BenchResult:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    batch = 1 if quick else 4
    min_time = 0.2 if quick else 1.0
    rows = []
    for C, size, heads in SHAPES:
        v, attn, add = _op_inputs(batch, C, size, heads)
        stats = {
            method: _measure(partial(elsa_filter, v, attn, None, add, kernel_size=KERNEL, method=method), min_time)
            for method in ("shift", "unfold")
        }
        rows.append(_row("op fwd+bwd", f"B={batch} C={C} {size}x{size} G={heads} k={KERNEL}", "unfold", "shift", stats))
    for C, size, heads in SHAPES:
        x = torch.randn(batch, size, size, C, requires_grad=True)
        blocks = {
            "swin": SwinBlock(C, heads, window_size=KERNEL, shift_size=KERNEL // 2),
            "elsa": ELSABlock(C, heads, kernel_size=KERNEL, group_width=4, lam=0, gamma=1, mlp_ratio=4, qkv_bias=True),
        }
        stats = {name: _measure(partial(blk, x), min_time) for name, blk in blocks.items()}
        shape = f"B={batch} C={C} {size}x{size} G={heads} k=w={KERNEL}"
        rows.append(_row("block fwd+bwd", shape, "swin", "elsa", stats))
    return BenchResult(
        name="elsa",
        title="ELSA op: shift-and-add vs unfold; ELSA block vs Swin window-attention block",
        rows=rows,
        conditions={
            "dtype": "float32",
            "quick": quick,
        },
        notes="time_ratio, mem_ratio = baseline / candidate (> 1: the candidate is faster / keeps less). "
        "Memory = bytes autograd saves for backward. The official CUDA kernel is not available on CPU.",
    )
