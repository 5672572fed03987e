"""FRP: the motion-attention maps (data side) and the block that injects them into the spatial network.

Official code: ``lib/datasets/base.py`` (maps) and ``lib/model/DSN.py`` (block); spec §2 and §3.1.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["motion_attention_maps", "FRPBlock"]


def motion_attention_maps(frames: torch.Tensor, window: int = 10) -> torch.Tensor:
    """Approximate rank-pooled "dynamic images" over the last ``window`` frames, gated by a static mask.

    For each t >= window - 1: ``d_t = relu(sum_j (2j - w - 1) f_{t-w+j})`` (j = 1..w, grey frames), min-max
    normalised; ``s_t`` = (d_t > mean d_t), eroded 2x2 and dilated 3x3; the map is ``(d_t + s_t) * s_t``.
    The first ``window - 1`` maps are zeros, as in the official loader.

    Shapes:
        frames: (B, C, T, H, W) -> (B, T, H, W)
    """
    B, C, T, H, W = frames.shape
    if not 2 <= window <= T:
        raise ValueError(f"window must be in [2, T={T}], got {window}")
    grey = frames.mean(dim=1)  # (B, T, H, W)
    weights = 2 * torch.arange(1, window + 1, dtype=grey.dtype, device=grey.device) - window - 1  # (w,)
    windows = grey.unfold(1, window, 1)  # (B, T-w+1, H, W, w)
    dyn = torch.einsum("bthwj,j->bthw", windows, weights).relu()
    lo = dyn.amin(dim=(2, 3), keepdim=True)
    hi = dyn.amax(dim=(2, 3), keepdim=True)
    dyn = (dyn - lo) / (hi - lo).clamp_min(1e-6)
    static = (dyn > dyn.mean(dim=(2, 3), keepdim=True)).to(dyn.dtype)
    flat = static.flatten(0, 1)[:, None]  # (B*(T-w+1), 1, H, W)
    eroded = -F.max_pool2d(F.pad(-flat, (0, 1, 0, 1), value=-1.0), 2, stride=1)  # 2x2 erosion
    dilated = F.max_pool2d(eroded, 3, stride=1, padding=1)  # 3x3 dilation
    static = dilated.view_as(dyn)
    maps = (dyn + static) * static
    return torch.cat([maps.new_zeros(B, window - 1, H, W), maps], dim=1)


class FRPBlock(nn.Module):
    """``F <- F + (a F + b F (G + 1))`` with G the motion map max-pooled to F's size; (a, b) start at (1, 0).

    Shapes:
        features: (B*T, C, h, w), maps: (B*T, H, W) -> (B*T, C, h, w)
    """

    def __init__(self):
        super().__init__()
        self.mix = nn.Parameter(torch.tensor([1.0, 0.0]))  # the official 1x1 Conv1d over the pair (F, att)

    def forward(self, features: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        # the official code max-pools 2x2 until the sizes match; adaptive pooling equals it for 224 x 224
        # inputs and also fits sizes that are not powers of two
        g = F.adaptive_max_pool2d(maps[:, None], features.shape[-2:])
        att = features * (g + 1.0)
        return features + self.mix[0] * features + self.mix[1] * att
