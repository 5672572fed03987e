"""Small image backbones for 8x8 to 32x32 inputs, shared by the pre-training and fine-tuning methods.

``ConvNet``: conv blocks (3x3 conv, BatchNorm, ReLU; 2x2 max-pool after all but the last block), global
average pooling. With ``channels=(32, 64, 128)`` it is the encoder of the LOOK spec (§5a); with
``(32, 64, 64)`` the source-pool CNN of the fine-tuning-selection spec (§6). ``ResNetMini``: a CIFAR-style
ResNet (basic blocks, three stages). ``MLPEncoder``: the MLP of the LOOK fast variant (§5b).

Every backbone has ``feat_dim`` and ``forward_features(x) -> (B, feat_dim)``; ``forward`` adds a linear head
when ``num_classes > 0`` and returns the features otherwise.
"""

from __future__ import annotations

import torch
from einops.layers.torch import Rearrange
from torch import nn

from damokit.registry import register_model

__all__ = ["ConvNet", "ResNetMini", "MLPEncoder", "convnet_small", "convnet_tiny", "resnet_mini", "resnet_tiny"]


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)


class _Backbone(nn.Module):
    """Interface of the backbones here: ``forward_features`` and an optional linear head (no logic shared)."""

    feat_dim: int
    head: nn.Module

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


class ConvNet(_Backbone):
    """Plain CNN: conv blocks, max-pool between them, global average pool.

    Shapes:
        x: (B, in_chans, H, W) -> features (B, channels[-1]) -> logits (B, num_classes) when num_classes > 0
    """

    def __init__(self, *, in_chans: int = 1, channels: tuple[int, ...] = (32, 64, 128), num_classes: int = 0):
        super().__init__()
        if not channels or min(channels) < 1:
            raise ValueError(f"channels must be a non-empty tuple of positive ints, got {channels}")
        layers: list[nn.Module] = []
        c_prev = in_chans
        for i, c in enumerate(channels):
            layers.append(_conv_bn_relu(c_prev, c))
            if i < len(channels) - 1:
                layers.append(nn.MaxPool2d(2))
            c_prev = c
        layers += [nn.AdaptiveAvgPool2d(1), Rearrange("b c 1 1 -> b c")]
        self.body = nn.Sequential(*layers)
        self.feat_dim = channels[-1]
        self.head = nn.Linear(self.feat_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs) with a 1x1 projection shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = _conv_bn_relu(c_in, c_out, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        self.shortcut = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResNetMini(_Backbone):
    """CIFAR-style ResNet: a stem conv, one stage per width (stride 2 from the second), global pool.

    Shapes:
        x: (B, in_chans, H, W) -> features (B, widths[-1]) -> logits (B, num_classes) when num_classes > 0
    """

    def __init__(
        self,
        *,
        in_chans: int = 3,
        widths: tuple[int, ...] = (32, 64, 128),
        blocks_per_stage: int = 1,
        num_classes: int = 0,
    ):
        super().__init__()
        if not widths or min(widths) < 1 or blocks_per_stage < 1:
            raise ValueError(
                f"widths must be positive ints and blocks_per_stage >= 1, got {widths}, {blocks_per_stage}"
            )
        stages: list[nn.Module] = [_conv_bn_relu(in_chans, widths[0])]
        c_prev = widths[0]
        for i, w in enumerate(widths):
            for b in range(blocks_per_stage):
                stages.append(_BasicBlock(c_prev, w, stride=2 if i > 0 and b == 0 else 1))
                c_prev = w
        self.body = nn.Sequential(*stages, nn.AdaptiveAvgPool2d(1), Rearrange("b c 1 1 -> b c"))
        self.feat_dim = widths[-1]
        self.head = nn.Linear(self.feat_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MLPEncoder(_Backbone):
    """MLP on flattened images: Linear-BN-ReLU layers; the last Linear gets BN-ReLU too when ``final_act``.

    Shapes:
        x: (B, C, H, W) or (B, in_dim) -> features (B, dims[-1]) -> logits (B, num_classes) when num_classes > 0
    """

    def __init__(
        self,
        *,
        in_dim: int = 64,
        dims: tuple[int, ...] = (256, 256, 64),
        num_classes: int = 0,
        final_act: bool = False,
    ):
        super().__init__()
        if not dims or min(dims) < 1:
            raise ValueError(f"dims must be a non-empty tuple of positive ints, got {dims}")
        layers: list[nn.Module] = [nn.Flatten()]
        d_prev = in_dim
        for d in dims[:-1]:
            layers += [nn.Linear(d_prev, d), nn.BatchNorm1d(d), nn.ReLU(inplace=True)]
            d_prev = d
        layers.append(nn.Linear(d_prev, dims[-1]))
        if final_act:
            layers += [nn.BatchNorm1d(dims[-1]), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.feat_dim = dims[-1]
        self.head = nn.Linear(self.feat_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _grey28(g: torch.Generator) -> tuple[torch.Tensor]:
    return (torch.rand(4, 1, 28, 28, generator=g),)


def _rgb32(g: torch.Generator) -> tuple[torch.Tensor]:
    return (torch.rand(4, 3, 32, 32, generator=g),)


@register_model(task="image_classification", paper="2110.06014", input_layout="B C H W", example_inputs=_grey28)
def convnet_small(**overrides) -> ConvNet:
    """3 conv blocks 32-64-128 on 28x28 grey images: the LOOK spec's §5a encoder (128-d features)."""
    return ConvNet(**{"in_chans": 1, "channels": (32, 64, 128), **overrides})


@register_model(task="image_classification", paper="2110.06014", input_layout="B C H W", example_inputs=_grey28)
def convnet_tiny(**overrides) -> ConvNet:
    """3 conv blocks 4-8-8 with a 10-class head, for tests."""
    return ConvNet(**{"in_chans": 1, "channels": (4, 8, 8), "num_classes": 10, **overrides})


@register_model(task="image_classification", paper="2111.12292", input_layout="B C H W", example_inputs=_rgb32)
def resnet_mini(**overrides) -> ResNetMini:
    """CIFAR-style ResNet 32-64-128, one basic block per stage, 32x32 RGB (128-d features)."""
    return ResNetMini(**{"in_chans": 3, "widths": (32, 64, 128), **overrides})


@register_model(task="image_classification", paper="2111.12292", input_layout="B C H W", example_inputs=_rgb32)
def resnet_tiny(**overrides) -> ResNetMini:
    """ResNetMini 4-8 with a 10-class head, for tests."""
    return ResNetMini(**{"in_chans": 3, "widths": (4, 8), "num_classes": 10, **overrides})
