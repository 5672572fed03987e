"""The coupled baseline: a plain 3D CNN that mixes space and time in every layer (spec §8.2, "C3D-mini"), in the
miniature's size and at the size of the paper's unimodal network."""

from __future__ import annotations

import torch
from torch import nn

from damokit.registry import register_model

__all__ = ["C3DBaseline"]


class C3DBaseline(nn.Module):
    """Strided 3x3x3 stem, blocks of [3x3x3 conv + BN + ReLU + max-pool], global average, linear.

    Args:
        widths: stem width then one width per block (mini: 12, 24, 48, 48).
        pools: max-pool kernel (= stride) of each block, (T, H, W).

    Shapes:
        x: (B, C, T, H, W) -> (B, num_classes)
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int = 3,
        widths: tuple[int, ...] = (12, 24, 48, 48),
        pools: tuple[tuple[int, int, int], ...] = ((1, 2, 2), (2, 2, 2), (2, 2, 2)),
    ):
        super().__init__()
        if len(pools) != len(widths) - 1:
            raise ValueError(f"need one pool per block: {len(widths) - 1} blocks, got {len(pools)} pools")
        layers: list[nn.Module] = [
            nn.Conv3d(in_chans, widths[0], 3, stride=(1, 2, 2), padding=1, bias=False),
            nn.BatchNorm3d(widths[0]),
            nn.ReLU(),
        ]
        for cin, cout, pool in zip(widths[:-1], widths[1:], pools):
            layers += [nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(),
                       nn.MaxPool3d(pool)]  # fmt: skip
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool3d(1), nn.Flatten())
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor, maps: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x))


_META = dict(task="video_classification", paper="2112.09129", input_layout="(B, C, T, H, W)")


@register_model(**_META)
def c3d(**overrides) -> C3DBaseline:
    """Coupled 3D CNN of the paper network's size (36.4 M parameters vs 38.1 M for ``motion_rgbd_inception``),
    for 64 frames of 224 x 224: widths 64-1024, time pooled 16x and space 64x (plus the strided stem)."""
    widths = (64, 128, 256, 512, 768, 1024)
    pools = ((1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2))
    return C3DBaseline(**{"num_classes": 25, "widths": widths, "pools": pools, **overrides})


@register_model(**_META)
def c3d_mini(**overrides) -> C3DBaseline:
    """Spec §8.2 coupled baseline (about 0.10 M parameters), compared with the decoupled mini network."""
    return C3DBaseline(**{"num_classes": 10, **overrides})


@register_model(**_META, example_inputs=lambda g: (torch.rand(2, 3, 8, 16, 16, generator=g),), per_sample=True)
def c3d_tiny(**overrides) -> C3DBaseline:
    """Test-sized coupled 3D CNN."""
    return C3DBaseline(**{"num_classes": 5, "widths": (4, 8, 8), "pools": ((1, 2, 2), (2, 2, 2)), **overrides})
