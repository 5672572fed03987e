"""TransReID-SSL model: ViT (patchify or IBN convolution stem) + BNNeck head, and official checkpoint loading.

Paper: "Self-Supervised Pre-training for Transformer-Based Person Re-Identification", Luo et al.,
arXiv 2111.12084; official code ``damo-cv/TransReID-SSL`` (``transreid_pytorch/model/backbones/
vit_pytorch.py`` ``PatchEmbed(stem_conv=True)``, ``model/make_model.py`` ``build_transformer``).

Module names mirror the official ones (``patch_embed.conv.<idx>`` with ``IN``/``BN`` inside ``IBN``,
``patch_embed.proj``; ``base``, ``bottleneck``, ``classifier``), so official checkpoints load strictly.

Deviations:
    * No leftover ``base.fc`` (a 1000-way ImageNet classifier the official backbone carries unused).
    * ``forward`` returns both the pre-BN feature and the logits in train and eval mode; evaluation code
      calls ``features`` (pre-BN, L2-normalised, as ``NECK_FEAT='before'``, ``FEAT_NORM='yes'``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from damokit.nn.vit import LoadReport, VisionTransformer, load_vit_checkpoint
from damokit.registry import register_model

__all__ = [
    "IBN",
    "ICSStem",
    "ReIDOutput",
    "ReIDModel",
    "reid_vit",
    "load_official",
    "transreid_ssl_vit_small",
    "transreid_ssl_vit_small_ics",
    "transreid_ssl_vit_base_ics",
    "transreid_ssl_tiny",
    "transreid_ssl_ics_tiny",
]


class IBN(nn.Module):
    """Instance-batch normalisation: the first ``int(C * in_ratio)`` channels get IN, the rest BN.

    Shapes: ``(B, C, H, W) -> (B, C, H, W)``; IN output first, then BN, as in the official code.
    """

    def __init__(self, channels: int, in_ratio: float = 0.5):
        super().__init__()
        self.half = int(channels * in_ratio)
        if not 0 < self.half < channels:
            raise ValueError(f"IBN needs 0 < int(channels * in_ratio) < channels, got {channels} x {in_ratio}")
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(channels - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat([self.IN(a.contiguous()), self.BN(b.contiguous())], dim=1)


class ICSStem(nn.Module):
    """IBN-based convolution stem: 3 stride-(s,1,1) convs (IBN, IBN, BN) then a (p/s)-strided projection.

    Keeps the patchify stem's token grid (total stride ``patch``). Shapes: ``(B, 3, H, W) -> (B, D, H/p, W/p)``.
    """

    def __init__(self, in_ch: int = 3, hidden: int = 64, stem_stride: int = 2, patch: int = 16, embed_dim: int = 384):
        super().__init__()
        if patch % stem_stride:
            raise ValueError(f"patch={patch} must be a multiple of stem_stride={stem_stride}")
        self.patch_size = patch
        self.conv = nn.Sequential(
            nn.Conv2d(in_ch, hidden, kernel_size=7, stride=stem_stride, padding=3, bias=False),  # 0
            IBN(hidden),  # 1
            nn.ReLU(inplace=True),  # 2
            nn.Conv2d(hidden, hidden, kernel_size=3, stride=1, padding=1, bias=False),  # 3
            IBN(hidden),  # 4
            nn.ReLU(inplace=True),  # 5
            nn.Conv2d(hidden, hidden, kernel_size=3, stride=1, padding=1, bias=False),  # 6
            nn.BatchNorm2d(hidden),  # 7
            nn.ReLU(inplace=True),  # 8
        )
        k = patch // stem_stride
        self.proj = nn.Conv2d(hidden, embed_dim, kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.conv(x))


def reid_vit(
    *,
    embed_dim: int,
    depth: int,
    num_heads: int,
    img_size: tuple[int, int] = (256, 128),
    patch_size: int = 16,
    stem: str = "patchify",
    stem_hidden: int = 64,
    stem_stride: int = 2,
    drop_path_rate: float = 0.1,
) -> VisionTransformer:
    """A ViT with the patchify stem or the ICS stem (``stem="ics"``)."""
    if stem not in ("patchify", "ics"):
        raise ValueError(f"stem must be 'patchify' or 'ics', got {stem!r}")
    module = ICSStem(3, stem_hidden, stem_stride, patch_size, embed_dim) if stem == "ics" else None
    return VisionTransformer(
        img_size=img_size,
        patch_size=patch_size,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        drop_path_rate=drop_path_rate,
        stem=module,
    )


class ReIDOutput(NamedTuple):
    feat: torch.Tensor  # (B, D) CLS feature before the BNNeck (triplet loss, evaluation)
    logits: torch.Tensor  # (B, num_classes) identity logits of the post-BN feature (ID loss)


class ReIDModel(nn.Module):
    """``base`` ViT, BNNeck ``bottleneck`` (bias frozen at 0) and a bias-free ``classifier``.

    Shapes: ``(B, 3, H, W) -> ReIDOutput(feat (B, D), logits (B, num_classes))``.

    Example:
        >>> model = transreid_ssl_tiny(num_classes=5).eval()
        >>> model.features(torch.rand(2, 3, 64, 32)).shape
        torch.Size([2, 96])
    """

    def __init__(self, base: VisionTransformer, num_classes: int):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.base = base
        dim = base.embed_dim
        self.bottleneck = nn.BatchNorm1d(dim)
        self.bottleneck.bias.requires_grad_(False)  # BNNeck: no shift
        nn.init.ones_(self.bottleneck.weight)
        nn.init.zeros_(self.bottleneck.bias)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    @property
    def img_size(self) -> tuple[int, int]:
        return self.base.img_size

    def forward(self, x: torch.Tensor) -> ReIDOutput:
        feat = self.base(x)  # (B, D)
        return ReIDOutput(feat, self.classifier(self.bottleneck(feat)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Test feature: pre-BN CLS, L2-normalised. Shapes: ``(B, 3, H, W) -> (B, D)``."""
        return F.normalize(self.base(x), dim=1)

    def bn_features(self, x: torch.Tensor) -> torch.Tensor:
        """Cluster-contrast feature: ``normalize(BN(CLS))``. Shapes: ``(B, 3, H, W) -> (B, D)``."""
        return F.normalize(self.bottleneck(self.base(x)), dim=1)


def load_official(
    source: str | os.PathLike | Mapping[str, Any],
    model: ReIDModel | VisionTransformer,
    *,
    strict_backbone: bool = True,
    hw_ratio: float = 2.0,
) -> LoadReport:
    """Load an official TransReID-SSL checkpoint's backbone (DINO, converted, supervised, cluster-contrast).

    ``pos_embed`` of another grid is resized bilinearly, reading the stored grid with ``hw_ratio``
    (``PRETRAIN_HW_RATIO: 2``: 128 tokens -> 16 x 8). Head, BNNeck and classifier keys are skipped.

    Raises:
        FileNotFoundError / CheckpointError: see ``damokit.nn.vit.load_vit_checkpoint``.
    """
    base = model.base if isinstance(model, ReIDModel) else model
    return load_vit_checkpoint(source, base, pos_embed_mode="bilinear", hw_ratio=hw_ratio, strict=strict_backbone)


# ----------------------------------------------------------------------------------------------------------
# registered variants

_META = dict(task="reid", paper="2111.12084", input_layout="(B, 3, H, W) -> (feat (B, D), logits (B, ids))")


def _tiny_inputs(g: torch.Generator) -> tuple[torch.Tensor]:
    return (torch.rand(2, 3, 64, 32, generator=g),)


@register_model(**_META)
def transreid_ssl_vit_small(num_classes: int = 751, **overrides: Any) -> ReIDModel:
    """ViT-S/16 at 256x128 with the patchify stem (README: Market-1501 91.0 mAP / 96.0 R1 supervised)."""
    return ReIDModel(reid_vit(**{"embed_dim": 384, "depth": 12, "num_heads": 6, **overrides}), num_classes)


@register_model(**_META)
def transreid_ssl_vit_small_ics(num_classes: int = 751, **overrides: Any) -> ReIDModel:
    """ViT-S/16+ICS at 256x128 (README: Market-1501 91.3 mAP / 96.2 R1 supervised)."""
    cfg = {"embed_dim": 384, "depth": 12, "num_heads": 6, "stem": "ics", **overrides}
    return ReIDModel(reid_vit(**cfg), num_classes)


@register_model(**_META)
def transreid_ssl_vit_base_ics(num_classes: int = 751, **overrides: Any) -> ReIDModel:
    """ViT-B/16+ICS at 384x128 (README: Market-1501 93.2 mAP / 96.7 R1 supervised)."""
    cfg = {"embed_dim": 768, "depth": 12, "num_heads": 12, "stem": "ics", "img_size": (384, 128), **overrides}
    return ReIDModel(reid_vit(**cfg), num_classes)


_TINY = {"embed_dim": 96, "depth": 4, "num_heads": 3, "img_size": (64, 32), "patch_size": 8, "stem_hidden": 16}


@register_model(**_META, example_inputs=_tiny_inputs, per_sample=True)
def transreid_ssl_tiny(num_classes: int = 10, **overrides: Any) -> ReIDModel:
    """ViT-Tiny-ReID of the miniature (spec §12): 64x32, patch 8 (8 x 4 tokens), D 96, depth 4, 3 heads."""
    return ReIDModel(reid_vit(**{**_TINY, **overrides}), num_classes)


@register_model(**_META, example_inputs=_tiny_inputs, per_sample=True)
def transreid_ssl_ics_tiny(num_classes: int = 10, **overrides: Any) -> ReIDModel:
    """ViT-Tiny-ReID with the ICS stem scaled down: hidden 16, stem stride 2, projection kernel 4."""
    return ReIDModel(reid_vit(**{**_TINY, "stem": "ics", **overrides}), num_classes)
