"""Vision Transformer with DINO-compatible module names, shared by TransReID-SSL and TransFGU.

Follows the ViT of DINO (``facebookresearch/dino`` ``vision_transformer.py``), which the TransReID-SSL
code (``damo-cv/TransReID-SSL``) and TransFGU reuse: pre-norm blocks, ``qkv_bias=True``, LayerNorm
eps 1e-6, learned ``cls_token``/``pos_embed`` (trunc-normal std 0.02), Linear layers trunc-normal 0.02
with zero bias, stochastic depth growing linearly over the blocks. Parameter names equal the official
ones (``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.N.{norm1,attn.qkv,attn.proj,norm2,
mlp.fc1,mlp.fc2}``, ``norm``), so official checkpoints load without a mapping table
(``load_vit_checkpoint``).

The stem is pluggable: any module mapping ``(B, C, H, W) -> (B, D, H/p, W/p)`` with a ``patch_size``
attribute (total stride p) can replace the patchify convolution, e.g. the IBN convolution stem of
TransReID-SSL (``damokit.reid.ICSStem``), which keeps the token grid.

Deviations:
    * Position embeddings are interpolated at run time with ``size=`` (exact target grid) instead of
      DINO's ``scale_factor=(grid + 0.1) / old``; ``resize_pos_embed(scale_offset=0.1)`` reproduces
      DINO's sampling grid bit for bit when needed.
    * Attention uses ``F.scaled_dot_product_attention`` unless the attention map is requested; both
      paths compute the same softmax attention.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from damokit.engine.checkpoint import CheckpointError, load_weights
from damokit.nn.layers import DropPath, Mlp
from damokit.registry import register_model

__all__ = [
    "Attention",
    "Block",
    "PatchEmbed",
    "VisionTransformer",
    "ViTOutput",
    "LoadReport",
    "infer_grid",
    "resize_pos_embed",
    "unwrap_checkpoint",
    "load_vit_checkpoint",
    "vit_small_patch16",
    "vit_base_patch16",
    "vit_small_patch8",
    "vit_base_patch8",
    "vit_tiny",
]


# ----------------------------------------------------------------------------------------------------------
# pure functions


def infer_grid(num_tokens: int, hw_ratio: float = 1.0) -> tuple[int, int]:
    """The (h, w) grid of ``num_tokens`` patch tokens, as the official loaders guess it.

    ``hw_ratio = 1`` is DINO's square grid; TransReID uses ``hw_ratio = 2`` for person crops:
    ``h = int(sqrt(N * 2))``, ``w = h // 2`` (128 tokens -> 16 x 8).

    Raises:
        ValueError: no grid of that ratio holds exactly ``num_tokens`` tokens.
    """
    h = int(math.sqrt(num_tokens * hw_ratio))
    w = int(h // hw_ratio)
    if h * w != num_tokens:
        raise ValueError(
            f"cannot read {num_tokens} position tokens as a grid with hw_ratio={hw_ratio} (got {h} x {w}); "
            "pass the stored grid explicitly (old_grid=(h, w))"
        )
    return h, w


def resize_pos_embed(
    pos_embed: torch.Tensor,
    new_grid: tuple[int, int],
    old_grid: tuple[int, int] | None = None,
    *,
    num_prefix: int = 1,
    mode: str = "bicubic",
    hw_ratio: float = 1.0,
    scale_offset: float = 0.0,
) -> torch.Tensor:
    """Resize the grid part of a position embedding, keeping the ``num_prefix`` (CLS) tokens.

    Args:
        pos_embed: ``(1, num_prefix + h*w, D)``.
        new_grid: target (h', w').
        old_grid: stored (h, w); default ``infer_grid(h*w, hw_ratio)``.
        mode: ``"bicubic"`` (DINO) or ``"bilinear"`` (TransReID), ``align_corners=False``.
        scale_offset: DINO adds 0.1 to the target size to compute ``scale_factor``; 0 uses ``size=``.

    Shapes:
        ``(1, P + h*w, D) -> (1, P + h'*w', D)``.
    """
    prefix, grid = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    old_grid = old_grid or infer_grid(grid.shape[1], hw_ratio)
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    grid = rearrange(grid, "b (h w) d -> b d h w", h=old_grid[0], w=old_grid[1])
    if scale_offset:
        scale = ((new_grid[0] + scale_offset) / old_grid[0], (new_grid[1] + scale_offset) / old_grid[1])
        grid = F.interpolate(grid.float(), scale_factor=scale, mode=mode, align_corners=False)
    else:
        grid = F.interpolate(grid.float(), size=tuple(new_grid), mode=mode, align_corners=False)
    grid = rearrange(grid.to(pos_embed.dtype), "b d h w -> b (h w) d")  # (1, h'*w', D)
    return torch.cat([prefix, grid], dim=1)


# ----------------------------------------------------------------------------------------------------------
# blocks


class Attention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` projection.

    Shapes: ``x (B, N, D) -> (B, N, D)``; the attention map is ``(B, heads, N, N)``.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim={dim} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, return_attention: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        # (B, N, 3D) -> 3 x (B, heads, N, E)
        q, k, v = rearrange(self.qkv(x), "b n (three h e) -> three b h n e", three=3, h=self.num_heads)
        if return_attention:
            attn = (torch.einsum("bhne,bhme->bhnm", q, k) * self.scale).softmax(dim=-1)  # (B, heads, N, N)
            out = torch.einsum("bhnm,bhme->bhne", self.attn_drop(attn), v)
        else:
            p = self.attn_drop.p if self.training else 0.0
            out, attn = F.scaled_dot_product_attention(q, k, v, dropout_p=p), None
        out = rearrange(out, "b h n e -> b n (h e)")
        return self.proj_drop(self.proj(out)), attn


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: torch.Tensor, return_attention: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        y, attn = self.attn(self.norm1(x), return_attention)
        x = x + self.drop_path(y)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, attn


class PatchEmbed(nn.Module):
    """The patchify stem: one ``Conv2d(in_chans, D, kernel=patch, stride=patch)`` named ``proj``.

    Shapes: ``(B, C, H, W) -> (B, D, H/p, W/p)``.
    """

    def __init__(self, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class ViTOutput(NamedTuple):
    """``forward_with_last_attention`` result: normed tokens and the last block's attention."""

    tokens: torch.Tensor  # (B, 1 + h*w, D), after the final LayerNorm
    attention: torch.Tensor  # (B, heads, 1 + h*w, 1 + h*w), softmax, part of the autograd graph


# ----------------------------------------------------------------------------------------------------------
# the model


class VisionTransformer(nn.Module):
    """ViT returning the final-LayerNorm CLS token (or class logits when ``num_classes > 0``).

    Args:
        img_size: (H, W) the position embedding is sized for; other sizes (multiples of the patch) are
            served by interpolating it (bicubic) at run time.
        patch_size: patch side p of the default patchify stem.
        in_chans: input channels C.
        embed_dim: D; depth: number of blocks; num_heads: heads per block.
        mlp_ratio: hidden width of the block MLP over D.
        drop_path_rate: stochastic-depth rate of the last block (linear from 0).
        stem: replaces the patchify stem; must map ``(B, C, H, W) -> (B, D, H/p, W/p)`` and carry
            ``patch_size`` (its total stride).
        num_classes: size of a linear head on the CLS token (0: no head, the CLS feature is returned).

    Shapes: ``x (B, C, H, W) -> (B, D)`` (or ``(B, num_classes)``).

    Example:
        >>> vit = vit_tiny()
        >>> vit(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 48])
    """

    def __init__(
        self,
        *,
        img_size: tuple[int, int] | int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_eps: float = 1e-6,
        stem: nn.Module | None = None,
        num_classes: int = 0,
    ):
        super().__init__()
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.patch_embed = stem if stem is not None else PatchEmbed(patch_size, in_chans, embed_dim)
        self.patch_size = int(self.patch_embed.patch_size)
        if img_size[0] % self.patch_size or img_size[1] % self.patch_size:
            raise ValueError(f"img_size={img_size} must be a multiple of the patch size {self.patch_size}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.img_size = img_size
        self.in_chans = in_chans
        self.grid_size = (img_size[0] // self.patch_size, img_size[1] // self.patch_size)
        self.embed_dim = self.num_features = embed_dim
        self.num_heads = num_heads
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid_size[0] * self.grid_size[1], embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, r, norm_eps) for r in rates
        )
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"expected images of shape (B, {self.in_chans}, H, W), got {tuple(x.shape)}; "
                "convert to channel-first RGB"
            )
        if x.shape[2] % self.patch_size or x.shape[3] % self.patch_size:
            raise ValueError(
                f"image size {tuple(x.shape[2:])} must be a multiple of the patch size {self.patch_size}; "
                f"resize to e.g. {self.img_size}"
            )

    def pos_embed_for(self, grid: tuple[int, int]) -> torch.Tensor:
        """The position embedding for a token grid, bicubically interpolated when it differs."""
        return resize_pos_embed(self.pos_embed, grid, self.grid_size, mode="bicubic")

    def prepare_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Stem, CLS token and position embedding. Shapes: ``(B, C, H, W) -> (B, 1 + h*w, D)``."""
        self._check_input(x)
        feat = self.patch_embed(x)  # (B, D, h, w)
        grid = (feat.shape[2], feat.shape[3])
        tokens = rearrange(feat, "b d h w -> b (h w) d")
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1)
        return self.pos_drop(tokens + self.pos_embed_for(grid))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """All tokens after the final LayerNorm. Shapes: ``(B, C, H, W) -> (B, 1 + h*w, D)``."""
        x = self.prepare_tokens(x)
        for block in self.blocks:
            x, _ = block(x)
        return self.norm(x)

    def forward_with_last_attention(self, x: torch.Tensor) -> ViTOutput:
        """Normed tokens and the last block's softmax attention, which stays in the autograd graph."""
        x = self.prepare_tokens(x)
        for block in self.blocks[:-1]:
            x, _ = block(x)
        x, attn = self.blocks[-1](x, return_attention=True)
        return ViTOutput(self.norm(x), attn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x)[:, 0])


# ----------------------------------------------------------------------------------------------------------
# official checkpoints


@dataclass
class LoadReport:
    """What ``load_vit_checkpoint`` did with each key of the source."""

    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)


_SKIP_PARTS = ("head", "dist", "pre_logits", "fc.", "classifier", "bottleneck")


def _read_file(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    # DINO training checkpoints pickle their argparse Namespace under "args"; allow just that class
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


def unwrap_checkpoint(obj: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A backbone state dict from any official container, and the keys it dropped.

    Accepts a DINO training checkpoint (uses ``teacher``, keeps ``backbone.*``), ``model``/``state_dict``
    wrappers, and flat dicts; strips ``module.``, ``backbone.`` and ``base.`` prefixes; drops head,
    classifier, BNNeck and distillation keys.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
    from_dino = "teacher" in obj
    for key in ("teacher", "model", "state_dict"):
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    state, skipped = {}, []
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            skipped.append(key)
            continue
        name = key.removeprefix("module.")
        if from_dino and not name.startswith("backbone."):
            skipped.append(key)  # the DINO projection head
            continue
        name = name.removeprefix("backbone.").removeprefix("base.")
        if any(part in name for part in _SKIP_PARTS):
            skipped.append(key)
            continue
        state[name] = value
    return state, skipped


def load_vit_checkpoint(
    source: str | os.PathLike | Mapping[str, Any],
    model: VisionTransformer,
    *,
    pos_embed_mode: str = "bilinear",
    hw_ratio: float | None = None,
    strict: bool = True,
) -> LoadReport:
    """Load an official ViT checkpoint (DINO, TransReID, cluster-contrast) into ``model`` strictly.

    Args:
        source: a path (``.pth``/``.pt`` read with ``weights_only=True``, or ``.safetensors``) or a dict.
        model: the target; its ``pos_embed`` grid decides whether the stored one is resized.
        pos_embed_mode: ``"bilinear"`` (TransReID) or ``"bicubic"`` (DINO).
        hw_ratio: h/w of the stored grid (default: that of the model's grid, e.g. 2 for 256x128 crops).
        strict: raise on missing or unexpected backbone keys (mis-shaped keys always raise).

    Raises:
        FileNotFoundError: the path does not exist.
        CheckpointError: keys or shapes do not fit the model (lists every problem key).
    """
    raw = _read_file(source) if isinstance(source, (str, os.PathLike)) else source
    state, skipped = unwrap_checkpoint(raw)
    report = LoadReport(skipped=skipped)
    if "pos_embed" in state and state["pos_embed"].shape != model.pos_embed.shape:
        stored = state["pos_embed"]
        if stored.shape[-1] != model.pos_embed.shape[-1]:
            raise CheckpointError(
                f"pos_embed has width {stored.shape[-1]} but the model's embed_dim is {model.embed_dim}: "
                "the checkpoint is of another architecture"
            )
        ratio = hw_ratio if hw_ratio is not None else model.grid_size[0] / model.grid_size[1]
        state["pos_embed"] = resize_pos_embed(stored, model.grid_size, mode=pos_embed_mode, hw_ratio=ratio)
        report.resized.append("pos_embed")
    load_weights(model, state, source=str(source) if not isinstance(source, Mapping) else "state_dict", strict=strict)
    own = model.state_dict()
    report.loaded = sorted(k for k in state if k in own)
    return report


# ----------------------------------------------------------------------------------------------------------
# registered variants


def _tiny_inputs(g: torch.Generator) -> tuple[torch.Tensor]:
    return (torch.randn(2, 3, 32, 32, generator=g),)


_META = dict(task="vision", paper="2104.14294", input_layout="(B, 3, H, W) -> (B, D)")


@register_model(**_META)
def vit_small_patch16(**overrides: Any) -> VisionTransformer:
    """ViT-S/16 (D 384, depth 12, 6 heads): DINO ViT-S/16 and the TransReID-SSL backbone."""
    return VisionTransformer(**{"patch_size": 16, "embed_dim": 384, "depth": 12, "num_heads": 6, **overrides})


@register_model(**_META)
def vit_base_patch16(**overrides: Any) -> VisionTransformer:
    """ViT-B/16 (D 768, depth 12, 12 heads): DINO ViT-B/16."""
    return VisionTransformer(**{"patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12, **overrides})


@register_model(**_META)
def vit_small_patch8(**overrides: Any) -> VisionTransformer:
    """ViT-S/8 (D 384, depth 12, 6 heads): DINO ViT-S/8, the TransFGU backbone."""
    return VisionTransformer(**{"patch_size": 8, "embed_dim": 384, "depth": 12, "num_heads": 6, **overrides})


@register_model(**_META)
def vit_base_patch8(**overrides: Any) -> VisionTransformer:
    """ViT-B/8 (D 768, depth 12, 12 heads): DINO ViT-B/8."""
    return VisionTransformer(**{"patch_size": 8, "embed_dim": 768, "depth": 12, "num_heads": 12, **overrides})


@register_model(**_META, example_inputs=_tiny_inputs, per_sample=True)
def vit_tiny(**overrides: Any) -> VisionTransformer:
    """Test-size ViT: 32x32 input, patch 8 (4 x 4 tokens), D 48, depth 2, 3 heads."""
    return VisionTransformer(
        **{"img_size": 32, "patch_size": 8, "embed_dim": 48, "depth": 2, "num_heads": 3, **overrides}
    )
