"""Segment-based frame sampling (spec §2): pick ``k`` of ``n`` frames, one per equal segment.

Used twice: by the loader (clip frames) and by the temporal network (16/32/48 of 64 tokens).
"""

from __future__ import annotations

import torch

__all__ = ["segment_bounds", "segment_indices"]


def segment_bounds(n: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Start (inclusive) and end (exclusive) of the ``k`` segments of ``range(n)``; frames repeat when n < k.

    Segment i is ``[floor(n i / k), max(floor(n i / k) + 1, floor(n (i + 1) / k)))`` (official ``base.py``).
    """
    if n < 1 or k < 1:
        raise ValueError(f"need n >= 1 frames and k >= 1 segments, got n={n}, k={k}")
    i = torch.arange(k)
    start = torch.div(n * i, k, rounding_mode="floor")
    end = torch.maximum(start + 1, torch.div(n * (i + 1), k, rounding_mode="floor"))
    return start, end


def segment_indices(
    n: int, k: int, *, train: bool, batch: int | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``k`` frame indices of ``n``: uniform within each segment when ``train``, else the segment's middle.

    Returns ``(k,)``, or ``(batch, k)`` with independent draws per sample when ``batch`` is given.
    """
    start, end = segment_bounds(n, k)
    shape = (k,) if batch is None else (batch, k)
    if not train:
        return ((start + end - 1) // 2).expand(shape).clone()  # integer mean of the segment's range
    u = torch.rand(shape, generator=generator)
    return start + (u * (end - start)).long().clamp_max(end - start - 1)
