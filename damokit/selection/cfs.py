"""CFS — Catastrophic Forgetting Score for selecting a ReID pre-training subset (TransReID-SSL, arXiv 2111.12084).

``CFS(x)`` is the cosine similarity between the features of a pre-training image under a source proxy
``theta_s`` (briefly DINO-pre-trained on the whole pool) and a target proxy ``theta_t`` (``theta_s``
fine-tuned on labelled ReID data), both taken before the BNNeck with the test-time preprocessing (spec §5,
from the authors' issue-#3 script). Images are sorted by CFS and the head of the list is kept.

The sort direction is not in any readable source: ``keep="high"`` (least changed by fine-tuning, i.e.
closest to the ReID data) is the default, ``keep="low"`` the alternative. The TransReID-SSL miniature
measures it (``damokit reproduce transreid_ssl``): in the quick run (seed 0, commit d980b06) the top 50%
by CFS held 66% relevant person renders vs 34% for the bottom 50%, so ``"high"`` stays the default.
With near-untrained proxies (the 2-step ``smoke`` preset) the order was reversed (34% / 66%): the
direction needs proxies trained long enough to be meaningful.

Deviations: the official list is a pickled ``CFS_list.pkl``; damokit never writes pickles, so
``write_cfs_list`` writes the same ordered list of names as JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

__all__ = ["cfs_scores", "select_by_cfs", "write_cfs_list"]


@torch.no_grad()
def cfs_scores(
    model_src: Callable[[torch.Tensor], torch.Tensor],
    model_tgt: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    *,
    batch_size: int = 256,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Cosine similarity (float64) of the two models' features for every image, batched in eval mode.

    Args:
        model_src, model_tgt: map preprocessed images ``(B, 3, H, W)`` to pre-BN features ``(B, D)``
            (for a ``ReIDModel`` pass ``model.base``).
        images: the pool ``(N, 3, H, W)``.
        preprocess: applied per batch before both models (default: uint8 -> [0, 1] -> mean/std 0.5).

    Shapes: ``(N, 3, H, W) -> (N,)``.
    """
    from damokit.reid.train import normalize_images

    preprocess = preprocess or normalize_images
    if len(images) == 0:
        raise ValueError("the pool is empty; pass at least one image")
    modules = [m for m in (model_src, model_tgt) if isinstance(m, torch.nn.Module)]
    states = [m.training for m in modules]
    for m in modules:
        m.eval()
    out = []
    for s in range(0, len(images), batch_size):
        x = preprocess(images[s : s + batch_size])
        a, b = model_src(x).double(), model_tgt(x).double()
        if a.shape != b.shape:
            raise ValueError(f"the two models give features of different shapes {tuple(a.shape)} and {tuple(b.shape)}")
        out.append(torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-12))
    for m, state in zip(modules, states):
        m.train(state)
    return torch.cat(out)


def select_by_cfs(
    scores: torch.Tensor, keep_ratio: float | None = 0.5, keep_num: int | None = None, keep: str = "high"
) -> torch.Tensor:
    """Indices of the kept images, best first (ties in index order): ``keep_num`` or ``keep_ratio * N``.

    Raises:
        ValueError: an unknown ``keep``, a ratio outside (0, 1], a count outside [1, N].
    """
    if keep not in ("high", "low"):
        raise ValueError(f"keep must be 'high' or 'low', got {keep!r}")
    n = scores.numel()
    if keep_num is None:
        if keep_ratio is None or not 0 < keep_ratio <= 1:
            raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
        keep_num = max(1, int(round(keep_ratio * n)))
    if not 1 <= keep_num <= n:
        raise ValueError(f"keep_num must be in [1, {n}] (the pool size), got {keep_num}")
    order = torch.sort(scores.flatten(), descending=(keep == "high"), stable=True).indices
    return order[:keep_num]


def write_cfs_list(names: Sequence[str], scores: torch.Tensor, path: str | os.PathLike, keep: str = "high") -> Path:
    """Write all ``names`` ordered by CFS (most relevant first) as a JSON list, like ``CFS_list.pkl``."""
    if len(names) != scores.numel():
        raise ValueError(f"{len(names)} names but {scores.numel()} scores; pass one score per image")
    order = select_by_cfs(scores, keep_num=len(names), keep=keep).tolist()
    path = Path(path)
    path.write_text(json.dumps([names[i] for i in order]))
    return path
