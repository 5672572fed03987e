"""Stage 1-2 of TransFGU: foreground crops from CLS attention, their [CLS] bank, k-means concepts (spec §3).

Official code: ``cocostuff_crop.py``, ``models/utils/bbox_anchors.py``. k-means uses scikit-learn (the
official code uses faiss: L2, 100 iterations, seed 1; the centroids are member means in both).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from damokit.nn.vit import VisionTransformer

__all__ = ["sliding_windows", "foreground_mask", "crop_cls_bank", "discover_concepts"]


def sliding_windows(h: int, w: int, scales: tuple[float, ...]) -> torch.Tensor:
    """Square windows ``(y0, x0, side)`` on an h x w patch grid: side ``s * min(h, w)`` for each scale,
    stride half the side, plus windows flush with the right and bottom borders. Shapes: -> (n, 3)."""
    boxes = set()
    for s in scales:
        side = max(1, round(s * min(h, w)))
        stride = max(1, side // 2)
        ys = sorted(set(range(0, h - side + 1, stride)) | {h - side})
        xs = sorted(set(range(0, w - side + 1, stride)) | {w - side})
        boxes.update((y, x, side) for y in ys for x in xs)
    return torch.tensor(sorted(boxes), dtype=torch.long)


def foreground_mask(attention: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``mean_heads A[:, :, 0, 1:] > its mean``, reshaped to the patch grid.

    Shapes:
        attention: (N, heads, 1 + h*w, 1 + h*w) -> (N, h, w) bool
    """
    cls_to_patch = attention[:, :, 0, 1:].mean(dim=1)  # (N, h*w)
    return (cls_to_patch > cls_to_patch.mean(dim=1, keepdim=True)).view(-1, *grid)


@torch.no_grad()
def crop_cls_bank(
    vit: VisionTransformer,
    images: torch.Tensor,
    *,
    scales: tuple[float, ...],
    crop_size: int,
    fg_min: float = 0.5,
    bg_min: float | None = 0.8,
    batch_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """[CLS] features of foreground crops (fg fraction > ``fg_min``) and, if ``bg_min`` is set, of background
    crops (bg fraction > ``bg_min``), each crop resized to ``crop_size``.

    Shapes:
        images: (N, 3, H, W) normalised -> fg (n_fg, D), bg (n_bg, D)
    """
    vit.eval()
    fg_feats, bg_feats = [], []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        out = vit.forward_with_last_attention(batch)
        grid = (batch.shape[2] // vit.patch_size, batch.shape[3] // vit.patch_size)
        fg = foreground_mask(out.attention, grid).float()  # (n, h, w)
        windows = sliding_windows(*grid, scales)  # (m, 3)
        # fraction of foreground patches inside every window, for every image: integral image lookup
        integral = F.pad(fg.cumsum(1).cumsum(2), (1, 0, 1, 0))  # (n, h+1, w+1)
        y0, x0, side = windows.T
        area = integral[:, y0 + side, x0 + side] - integral[:, y0, x0 + side] - integral[:, y0 + side, x0]
        frac = (area + integral[:, y0, x0]) / (side**2).float()  # (n, m)
        p = vit.patch_size
        for keep, feats in ((frac > fg_min, fg_feats), ((1 - frac) > bg_min if bg_min else None, bg_feats)):
            if keep is None:
                continue
            img_idx, win_idx = keep.nonzero(as_tuple=True)
            if len(img_idx) == 0:
                continue
            boxes = windows[win_idx] * p  # pixel boxes (y0, x0, side)
            crops = _crop_resize(batch[img_idx], boxes, crop_size)
            for chunk in crops.split(batch_size):
                feats.append(vit.forward_features(chunk)[:, 0])
    empty = images.new_zeros(0, vit.embed_dim)
    return (torch.cat(fg_feats) if fg_feats else empty), (torch.cat(bg_feats) if bg_feats else empty)


def _crop_resize(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear crop of square pixel boxes ``(y0, x0, side)`` resized to ``size`` (one affine grid per crop)."""
    H, W = images.shape[-2:]
    y0, x0, side = boxes.T.float()
    # affine grids map the output's [-1, 1] to the box in the input's normalised coordinates
    theta = torch.zeros(len(boxes), 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = side / W
    theta[:, 1, 1] = side / H
    theta[:, 0, 2] = (2 * x0 + side) / W - 1
    theta[:, 1, 2] = (2 * y0 + side) / H - 1
    grid = F.affine_grid(theta, (len(boxes), images.shape[1], size, size), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", align_corners=False)


def discover_concepts(features: torch.Tensor, k: int, *, seed: int = 1, iters: int = 100) -> torch.Tensor:
    """k-means prototypes ``(k, D)`` of the [CLS] bank (official: faiss, L2, 100 iterations, seed 1)."""
    from sklearn.cluster import KMeans

    if len(features) < k:
        raise ValueError(
            f"only {len(features)} crops for {k} concepts: lower fg_min, add images or use more window scales"
        )
    km = KMeans(n_clusters=k, n_init=1, max_iter=iters, random_state=seed).fit(features.double().cpu().numpy())
    return torch.from_numpy(km.cluster_centers_.astype(np.float32))
