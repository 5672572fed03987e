"""Swin Transformer building blocks: windows, relative position bias, W-MSA/SW-MSA, patch embed and merging.

Liu et al., "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows", arXiv 2103.14030;
official code github.com/microsoft/Swin-Transformer (``models/swin_transformer.py``). Parameter names follow
the official code (``qkv``, ``proj``, ``relative_position_bias_table``, ``reduction``), so official Swin
weights load by name.

Every block here works on channels-last maps ``(B, H, W, C)`` (not Swin's ``(B, L, C)`` tokens plus a
stored resolution), so one instance accepts any input size. Sizes that are not multiples of the window
are padded bottom/right as in Swin's detection backbone; the classification code asserts divisibility
instead. Patch merging likewise pads an odd side.

Shapes (notation): B batch, H, W map size, C channels, w window side, N = w² tokens per window,
nW windows per image, G heads, d = C / G head width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from damokit.nn.layers import DropPath, Mlp

__all__ = [
    "window_partition",
    "window_reverse",
    "relative_position_index",
    "shifted_window_mask",
    "WindowAttention",
    "SwinBlock",
    "PatchEmbed",
    "PatchMerging",
]

_MASK_VALUE = -100.0  # Swin's additive mask between tokens of different regions of a shifted window


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """Cut a map into non-overlapping windows: (B, H, W, C) -> (B·nW, w, w, C), windows in row-major order."""
    return rearrange(x, "b (nh wh) (nw ww) c -> (b nh nw) wh ww c", wh=window_size, ww=window_size)


def window_reverse(windows: torch.Tensor, window_size: int, H: int, W: int) -> torch.Tensor:
    """Inverse of ``window_partition``: (B·nW, w, w, C) -> (B, H, W, C)."""
    return rearrange(windows, "(b nh nw) wh ww c -> b (nh wh) (nw ww) c", nh=H // window_size, nw=W // window_size)


def relative_position_index(window_size: int, device: torch.device | None = None) -> torch.Tensor:
    """Index into the (2w−1)² bias table for every (query i, key j) pair of a window, shape (N, N).

    Swin's convention: the offset is query minus key, ``idx = (Δy + w − 1)·(2w − 1) + (Δx + w − 1)``.
    """
    coords = torch.stack(
        torch.meshgrid(
            torch.arange(window_size, device=device), torch.arange(window_size, device=device), indexing="ij"
        )
    ).flatten(1)  # (2, N) row, column of each token
    delta = coords[:, :, None] - coords[:, None, :] + (window_size - 1)  # (2, N_q, N_k), shifted to >= 0
    return delta[0] * (2 * window_size - 1) + delta[1]


def shifted_window_mask(H: int, W: int, window_size: int, shift_size: int, device=None) -> torch.Tensor:
    """Additive attention mask of SW-MSA for an (H, W) map (multiples of w): (nW, N, N), 0 or −100.

    After the cyclic roll by −shift, a window may hold tokens from up to 4 of 9 regions (slices
    [0:−w], [−w:−s], [−s:] on each axis) that were not neighbours before the roll; pairs from different
    regions are masked.
    """

    def labels(n: int) -> torch.Tensor:  # region of each row (column): 0, 1, 2 for the three slices
        out = torch.zeros(n, dtype=torch.long, device=device)
        out[n - window_size :] = 1
        out[n - shift_size :] = 2
        return out

    rows, cols = labels(H), labels(W)
    regions = (rows[:, None] * 3 + cols[None, :])[None, :, :, None]  # (1, H, W, 1) region label 0..8
    windows = window_partition(regions, window_size).flatten(1)  # (nW, N)
    differ = windows[:, :, None] != windows[:, None, :]  # (nW, N, N)
    return differ.to(torch.get_default_dtype()) * _MASK_VALUE


class WindowAttention(nn.Module):
    """Multi-head self-attention inside a window with a learned relative position bias (W-MSA).

    Args:
        dim: channels C.
        window_size: window side w.
        num_heads: heads G (must divide ``dim``).
        qkv_bias: bias of the fused q/k/v projection.
        qk_scale: logit scale (default ``d ** -0.5``).
        attn_drop: dropout on the attention probabilities.
        proj_drop: dropout after the output projection.

    Shapes:
        x: (B·nW, N, C); mask: (nW, N, N) additive or None -> (B·nW, N, C)
    """

    def __init__(
        self,
        dim: int,
        window_size: int,
        num_heads: int,
        *,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"WindowAttention: dim={dim} must be divisible by num_heads={num_heads}")
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        # a constant of the window size: not saved, recomputed on construction
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def relative_bias(self) -> torch.Tensor:
        """The bias added to the logits, (G, N, N)."""
        n = self.window_size**2
        bias = self.relative_position_bias_table[self.relative_position_index.flatten()]  # (N·N, G)
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        Bw, N, C = x.shape
        q, k, v = rearrange(self.qkv(x), "b n (three g d) -> three b g n d", three=3, g=self.num_heads)
        logits = (q * self.scale) @ k.transpose(-2, -1) + self.relative_bias()  # (B·nW, G, N, N)
        if mask is not None:
            nW = mask.shape[0]
            logits = logits.view(Bw // nW, nW, self.num_heads, N, N) + mask[None, :, None]
            logits = logits.view(Bw, self.num_heads, N, N)
        attn = self.attn_drop(logits.softmax(-1))
        out = rearrange(attn @ v, "b g n d -> b n (g d)")  # (B·nW, N, C)
        return self.proj_drop(self.proj(out))


class SwinBlock(nn.Module):
    """Swin block: ``x + DropPath(W-MSA(LN(x)))`` then ``x + DropPath(MLP(LN(x)))``, optionally shifted.

    Args:
        dim: channels C.
        num_heads: heads G.
        window_size: window side w.
        shift_size: cyclic shift of SW-MSA (0: regular windows; Swin uses w // 2 on odd blocks).
        mlp_ratio: MLP hidden width / C.
        qkv_bias, qk_scale, attn_drop: see ``WindowAttention``.
        drop: dropout after the attention projection and in the MLP.
        drop_path: stochastic depth rate of both branches.
        input_resolution: (H, W) the block will see, if known. As in Swin, when it is not larger than
            the window, the window shrinks to it and the shift is disabled (global attention).

    Shapes:
        (B, H, W, C) -> (B, H, W, C)
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        window_size: int = 7,
        shift_size: int = 0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        input_resolution: tuple[int, int] | None = None,
    ):
        super().__init__()
        if input_resolution is not None and min(input_resolution) <= window_size:
            window_size, shift_size = min(input_resolution), 0
        if not 0 <= shift_size < window_size:
            raise ValueError(
                f"SwinBlock: shift_size={shift_size} must be in [0, window_size={window_size}); "
                "Swin uses 0 and window_size // 2"
            )
        self.window_size, self.shift_size = window_size, shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(
            dim, window_size, num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale, attn_drop=attn_drop, proj_drop=drop
        )
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        w, s = self.window_size, self.shift_size
        pad_h, pad_w = (-H) % w, (-W) % w
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))  # (B, Hp, Wp, C), zeros bottom/right
        Hp, Wp = H + pad_h, W + pad_w
        mask = None
        if s > 0:
            x = torch.roll(x, shifts=(-s, -s), dims=(1, 2))
            mask = shifted_window_mask(Hp, Wp, w, s, device=x.device).to(x.dtype)
        windows = window_partition(x, w).flatten(1, 2)  # (B·nW, N, C)
        windows = self.attn(windows, mask).view(-1, w, w, C)
        x = window_reverse(windows, w, Hp, Wp)  # (B, Hp, Wp, C)
        if s > 0:
            x = torch.roll(x, shifts=(s, s), dims=(1, 2))
        return x[:, :H, :W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self._attend(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Image to channels-last patch features: Conv2d(kernel k, stride p) then LayerNorm.

    Args:
        in_chans: image channels.
        embed_dim: output channels.
        patch_size: stride p (Swin: 4).
        kernel_size: convolution kernel (default p, i.e. non-overlapping patches); a larger odd kernel with
            ``padding=(k − p) // 2`` gives an overlapping stem (e.g. 3×3 stride 1 for 8×8 digits).
        norm: LayerNorm after the projection (Swin's ``patch_norm=True``).

    Shapes:
        (B, in_chans, H, W) -> (B, ⌈H/p⌉, ⌈W/p⌉, embed_dim) (input padded bottom/right to multiples of p)
    """

    def __init__(
        self, in_chans: int, embed_dim: int, *, patch_size: int = 4, kernel_size: int | None = None, norm: bool = True
    ):
        super().__init__()
        kernel_size = kernel_size or patch_size
        if kernel_size < patch_size or (kernel_size - patch_size) % 2:
            raise ValueError(
                f"PatchEmbed: kernel_size={kernel_size} must be >= patch_size={patch_size} with an even "
                "difference (symmetric padding); use kernel_size=patch_size for plain patches"
            )
        self.patch_size = patch_size
        self.proj = nn.Conv2d(
            in_chans, embed_dim, kernel_size, stride=patch_size, padding=(kernel_size - patch_size) // 2
        )
        self.norm = nn.LayerNorm(embed_dim) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        x = F.pad(x, (0, (-x.shape[-1]) % p, 0, (-x.shape[-2]) % p))
        return self.norm(self.proj(x).permute(0, 2, 3, 1))  # (B, C, H', W') -> (B, H', W', C)


class PatchMerging(nn.Module):
    """Halve the resolution, double the width: concat 2×2 neighbours, LayerNorm(4C), Linear(4C, 2C).

    The neighbours are concatenated in Swin's order (0,0), (1,0), (0,1), (1,1) (row, column offsets),
    which official weights depend on.

    Shapes:
        (B, H, W, C) -> (B, ⌈H/2⌉, ⌈W/2⌉, 2C) (an odd side is zero-padded first)
    """

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 0, 0, x.shape[2] % 2, 0, x.shape[1] % 2))
        parts = [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]]
        return self.reduction(self.norm(torch.cat(parts, dim=-1)))  # (B, H/2, W/2, 4C) -> (B, H/2, W/2, 2C)
