"""DSN: the decoupled spatial network, turning every frame into one token (spec §3.1).

``InceptionDSN`` is the official I3D-Inception-V1 layout with temporal kernel 1 everywhere, run as 2D convs
on the (B*T) frames. ``MiniDSN`` is the miniature's per-frame CNN (spec §8.2).

Deviations: "same" padding is symmetric (PyTorch) rather than TensorFlow's asymmetric split, which shifts
feature maps by at most one pixel. The branch-3 max-pool is 1x3x3 by default (strictly per frame); the
official code pools 3x3x3 across neighbouring frames (``pool_temporal_kernel=3`` reproduces it).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from damokit.video.motion_rgbd.frp import FRPBlock, motion_attention_maps

__all__ = ["InceptionDSN", "MiniDSN"]

# Mixed blocks: name -> (b0, b1 reduce, b1, b2 reduce, b2, b3 pool-proj), as in I3D-Inception-V1; "pool3"/"pool5"
# are the 3x3 and 2x2 stride-2 max-pools between them (spec §3.1 table)
_MIXED = {
    "3b": (64, 96, 128, 16, 32, 32),
    "3c": (128, 128, 192, 32, 96, 64),
    "4b": (192, 96, 208, 16, 48, 64),
    "4c": (160, 112, 224, 24, 64, 64),
    "5b": (256, 160, 320, 32, 128, 128),
    "5c": (384, 192, 384, 48, 128, 128),
}
_STAGES = ("3b", "3c", "pool3", "4b", "4c", "pool5", "5b", "5c")
_FRP_AFTER = ("3b", "4b", "5b")


def _unit(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """Conv + BN (eps 1e-3, momentum 0.01 as the official Unit3D) + ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01),
        nn.ReLU(),
    )


class _Mixed(nn.Module):
    """Spatial inception block on (B*T) frames; branch 3 may max-pool across 3 neighbouring frames."""

    def __init__(self, cin: int, widths: tuple[int, ...], frames: int, pool_temporal_kernel: int):
        super().__init__()
        c0, c1a, c1, c2a, c2, c3 = widths
        self.frames, self.pool_t = frames, pool_temporal_kernel
        self.b0 = _unit(cin, c0, 1)
        self.b1 = nn.Sequential(_unit(cin, c1a, 1), _unit(c1a, c1, 3))
        self.b2 = nn.Sequential(_unit(cin, c2a, 1), _unit(c2a, c2, 3))
        self.b3 = _unit(cin, c3, 1)
        self.out_channels = c0 + c1 + c2 + c3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool_t > 1:
            clip = rearrange(x, "(b t) c h w -> b c t h w", t=self.frames)
            pooled = F.max_pool3d(clip, (self.pool_t, 3, 3), stride=1, padding=(self.pool_t // 2, 1, 1))
            pooled = rearrange(pooled, "b c t h w -> (b t) c h w")
        else:
            pooled = F.max_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([self.b0(x), self.b1(x), self.b2(x), self.b3(pooled)], dim=1)


class InceptionDSN(nn.Module):
    """Per-frame Inception backbone -> one ``dim``-wide token per frame.

    Shapes:
        x: (B, C, T, H, W), maps: (B, T, H, W) or None -> (B, T, dim)
    """

    def __init__(
        self, *, in_chans: int = 3, frames: int = 64, dim: int = 512, frp: bool = True, frp_window: int = 10,
        pool_temporal_kernel: int = 1,
    ):  # fmt: skip
        super().__init__()
        if pool_temporal_kernel not in (1, 3):
            raise ValueError(f"pool_temporal_kernel must be 1 or 3, got {pool_temporal_kernel}")
        self.frames, self.frp_window = frames, frp_window
        self.stem = nn.Sequential(
            _unit(in_chans, 64, 7, stride=2),
            nn.MaxPool2d(3, stride=2, padding=1),
            _unit(64, 64, 1),
            _unit(64, 192, 3),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages, cin = {}, 192
        for name in _STAGES:
            if name == "pool3":
                stages[name] = nn.MaxPool2d(3, stride=2, padding=1)
            elif name == "pool5":
                stages[name] = nn.MaxPool2d(2, stride=2)
            else:
                stages[name] = _Mixed(cin, _MIXED[name], frames, pool_temporal_kernel)
                cin = stages[name].out_channels
        self.stages = nn.ModuleDict(stages)
        self.frp = nn.ModuleDict({name: FRPBlock() for name in _FRP_AFTER}) if frp else None
        self.to_token = nn.Sequential(nn.LayerNorm(cin), nn.Linear(cin, dim))

    def forward(self, x: torch.Tensor, maps: torch.Tensor | None = None) -> torch.Tensor:
        B, C, T, H, W = x.shape
        if T != self.frames:
            raise ValueError(f"InceptionDSN expects {self.frames} frames, got {T}")
        h = self.stem(rearrange(x, "b c t h w -> (b t) c h w"))
        if self.frp is not None:
            if maps is None:
                maps = motion_attention_maps(x, min(self.frp_window, T))  # computed here when the loader gave none
            flat_maps = rearrange(maps, "b t h w -> (b t) h w")
        for name, stage in self.stages.items():
            h = stage(h)
            if self.frp is not None and name in self.frp:
                h = self.frp[name](h, flat_maps)
        tokens = rearrange(h.mean(dim=(2, 3)), "(b t) c -> b t c", b=B)  # spatial GAP: (B, T, 1024)
        return self.to_token(tokens)


class MiniDSN(nn.Module):
    """The miniature's per-frame CNN: three conv stages, 2x2 average pool (keeps coarse position), LN, linear.

    Shapes:
        x: (B, C, T, H, W) -> (B, T, dim)
    """

    def __init__(self, *, in_chans: int = 3, dim: int = 64, widths: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        w1, w2, w3 = widths
        self.net = nn.Sequential(
            nn.Conv2d(in_chans, w1, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w1), nn.ReLU(),
            nn.Conv2d(w1, w2, 3, padding=1, bias=False), nn.BatchNorm2d(w2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w2, w3, 3, padding=1, bias=False), nn.BatchNorm2d(w3), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.LayerNorm(4 * w3), nn.Linear(4 * w3, dim),
        )  # fmt: skip

    def forward(self, x: torch.Tensor, maps: torch.Tensor | None = None) -> torch.Tensor:
        B = x.shape[0]
        return rearrange(self.net(rearrange(x, "b c t h w -> (b t) c h w")), "(b t) d -> b t d", b=B)
