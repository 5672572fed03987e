"""ELSA: Enhanced Local Self-Attention (Hadamard attention + ghost head) and ELSA-Swin.

Zhou et al., "ELSA: Enhanced Local Self-Attention for Vision Transformer", arXiv 2112.12786 (IJCV 2023:
"What Limits the Performance of Local Self-attention?"). Official code: github.com/damo-cv/ELSA
(``cls/models/elsa/elsa.py``, ``cls/models/elsa_swin.py``), which is the authority here.

ELSA generates, at every pixel, k² attention logits per head from the Hadamard product q⊙k through
``Conv1x1(GELU(GroupConv_kxk(q⊙k)))``, softmaxes them over the k×k neighbourhood and applies them to v
in a sliding window; a *ghost head* of per-channel static k×k matrices turns the G per-head filters
into C per-channel ones: ``filter_c = a^{g(c)} · M_c^λ + γ · S_c``.

Deviations from the official code:
- The filter application (the "ELSA op") is pure PyTorch: a shift-and-add formulation with its own
  backward (memory O(C·H·W), like the official CUDA kernel's) and the official unfold fallback; both give
  the CUDA kernel's function (zero padding, no renormalisation at borders). No compensated summation.
- ``stride`` > 1 is refused (no released model uses it and the official unfold path cannot run it).
- A non-integer λ is refused: the official ``mul ** λ`` of a ``randn`` matrix is NaN for negative entries.
- Blocks take channels-last maps ``(B, H, W, C)`` rather than tokens plus a stored resolution, so any input
  size works; stage-4 Swin attention uses damokit's ``SwinBlock`` (standard Swin names and conventions).
  ``load_official_elsa_swin`` maps the official stage-4 names (``pre_proj`` split v, q, k; ``rb`` with
  key−query offsets) onto it.
- The paper's ghost-head pseudo-code interleaves channels across heads; the official code (followed here)
  gives head g the contiguous channel block [g·C/G, (g+1)·C/G) for v and the ghost matrices alike.

Shapes (notation): B batch, H, W map size, C channels, G heads, k kernel size, Cqk q/k width,
Cv v width, N = B·G (op batch).
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from damokit.engine.checkpoint import load_weights
from damokit.nn.layers import DropPath, Mlp
from damokit.nn.swin import PatchEmbed, PatchMerging, SwinBlock, relative_position_index
from damokit.registry import register_model

__all__ = [
    "ELSA_METHODS",
    "elsa_filter",
    "ELSA",
    "ELSABlock",
    "ELSASwin",
    "convert_official_elsa_swin",
    "load_official_elsa_swin",
]

ELSA_METHODS = ("shift", "unfold")


# --------------------------------------------------------------------------------------------------
# The ELSA op: out[n,c,i] = Σ_j (a[n,j,i] · M[n,c,j] + S[n,c,j]) · v[n,c,i+j·d], zero padding


def _offsets(kernel_size: int, dilation: int):
    """(j, row start, column start) of every kernel offset in the padded map, j = ky·k + kx."""
    for ky in range(kernel_size):
        for kx in range(kernel_size):
            yield ky * kernel_size + kx, ky * dilation, kx * dilation


class _ShiftAddFilter(torch.autograd.Function):
    """Dynamic part ``Σ_j a_j · M_j · v_j`` by shift-and-add, with a hand-written backward that saves only
    the inputs (autograd through the loop would keep k² full-size temporaries)."""

    @staticmethod
    def forward(ctx, v, attn, mul, kernel_size: int, dilation: int):
        N, C, H, W = v.shape
        pad = (kernel_size // 2) * dilation
        vp = F.pad(v, (pad, pad, pad, pad))  # (N, C, H + 2p, W + 2p)
        out = torch.zeros_like(v)
        for j, y0, x0 in _offsets(kernel_size, dilation):
            v_j = vp[:, :, y0 : y0 + H, x0 : x0 + W]  # neighbour at offset j of every pixel
            a_j = attn[:, j : j + 1]  # (N, 1, H, W)
            if mul is not None:
                a_j = a_j * mul[:, :, j // kernel_size, j % kernel_size, None, None]  # (N, C, H, W)
            out.addcmul_(a_j, v_j)
        ctx.save_for_backward(v, attn, mul)
        ctx.kernel_size, ctx.dilation = kernel_size, dilation
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        v, attn, mul = ctx.saved_tensors
        k, d = ctx.kernel_size, ctx.dilation
        N, C, H, W = v.shape
        pad = (k // 2) * d
        need_v, need_a, need_m = ctx.needs_input_grad[:3]
        vp = F.pad(v, (pad, pad, pad, pad))
        g_vp = torch.zeros_like(vp) if need_v else None
        g_a = torch.empty_like(attn) if need_a else None
        g_m = grad.new_empty(N, C, k, k) if need_m else None
        for j, y0, x0 in _offsets(k, d):
            ky, kx = divmod(j, k)
            v_j = vp[:, :, y0 : y0 + H, x0 : x0 + W]
            a_j = attn[:, j]  # (N, H, W)
            m_j = mul[:, :, ky, kx] if mul is not None else None  # (N or 1, C)
            if need_v:  # the output at i received w_j(i) · v(i + j): scatter the gradient back
                w_j = a_j[:, None] if m_j is None else a_j[:, None] * m_j[:, :, None, None]
                g_vp[:, :, y0 : y0 + H, x0 : x0 + W].addcmul_(w_j, grad)
            if need_a or need_m:
                t = grad * v_j  # (N, C, H, W)
                if need_a:
                    g_a[:, j] = t.sum(1) if m_j is None else torch.einsum("nchw,nc->nhw", t, m_j.expand(N, C))
                if need_m:
                    g_m[:, :, ky, kx] = torch.einsum("nchw,nhw->nc", t, a_j)
        g_v = g_vp[:, :, pad : pad + H, pad : pad + W] if need_v else None
        if need_m and mul.shape[0] != N:  # mul was broadcast over the batch
            g_m = g_m.sum(0, keepdim=True)
        return g_v, g_a, g_m, None, None


def _static_filter(v: torch.Tensor, add: torch.Tensor, kernel_size: int, dilation: int) -> torch.Tensor:
    """Static part ``Σ_j S_j · v_j``: a depth-wise convolution (one k×k kernel per sample and channel)."""
    N, C, H, W = v.shape
    pad = (kernel_size // 2) * dilation
    if add.shape[0] == 1:  # shared over the batch: one depth-wise convolution
        return F.conv2d(v, add[0, :, None], padding=pad, dilation=dilation, groups=C)
    out = F.conv2d(
        v.reshape(1, N * C, H, W),
        add.reshape(N * C, 1, kernel_size, kernel_size),
        padding=pad,
        dilation=dilation,
        groups=N * C,
    )  # (1, N·C, H, W): every (sample, channel) its own kernel
    return out.view(N, C, H, W)


def _unfold_filter(v, attn, mul, add, kernel_size: int, dilation: int) -> torch.Tensor:
    """The official CPU fallback: materialise every neighbourhood (memory C·k²·H·W per sample)."""
    N, C, H, W = v.shape
    kk = kernel_size**2
    cols = F.unfold(v, kernel_size, dilation=dilation, padding=(kernel_size // 2) * dilation)
    cols = cols.view(N, C, kk, H * W)  # (N, C·k², H·W) -> (N, C, k², H·W), channel-major as unfold emits
    filt = attn.reshape(N, 1, kk, H * W)
    if mul is not None:
        filt = mul.reshape(-1, C, kk, 1) * filt  # (N, C, k², H·W)
    if add is not None:
        filt = filt + add.reshape(-1, C, kk, 1)
    return (cols * filt).sum(2).view(N, C, H, W)


def elsa_filter(
    v: torch.Tensor,
    attn: torch.Tensor,
    mul: torch.Tensor | None = None,
    add: torch.Tensor | None = None,
    *,
    kernel_size: int | None = None,
    dilation: int = 1,
    method: str = "shift",
) -> torch.Tensor:
    """Apply per-pixel k×k filters built from attention and ghost matrices (the ELSA op).

    ``out[n,c,y,x] = Σ_{ky,kx} (attn[n, ky·k+kx, y, x] · mul[n,c,ky,kx] + add[n,c,ky,kx])
    · v[n, c, y + (ky − k//2)·d, x + (kx − k//2)·d]``; neighbours outside the map contribute zero and the
    weights are not renormalised (official CUDA kernel semantics). ``mul=None`` means all ones (λ=0),
    ``add=None`` all zeros (γ=0).

    Args:
        v: values, (N, C, H, W).
        attn: filter weights per pixel, (N, k², H, W), channel ``ky·k + kx``.
        mul: multiplicative per-channel matrices (N or 1, C, k, k), or None.
        add: additive per-channel matrices (N or 1, C, k, k), or None.
        kernel_size: k (odd); default ``sqrt(attn.shape[1])``.
        dilation: spacing d of the neighbourhood.
        method: "shift" (default: the dynamic part by shift-and-add with O(C·H·W) extra memory and its
            own backward, the static part ``add`` as a depth-wise convolution) or "unfold" (materialises
            the C·k²·H·W neighbourhoods: the official CPU path). Both compute the same function.

    Returns:
        (N, C, H, W), in the promoted dtype of the inputs.

    Raises:
        ValueError: bad shapes, even kernel, dilation < 1 or unknown method.

    Example:
        >>> v = torch.randn(2, 4, 6, 6); a = torch.randn(2, 9, 6, 6).softmax(1)
        >>> elsa_filter(v, a).shape
        torch.Size([2, 4, 6, 6])
    """
    if v.ndim != 4:
        raise ValueError(f"elsa_filter: v must be (N, C, H, W), got shape {tuple(v.shape)}")
    N, C, H, W = v.shape
    if kernel_size is None:
        kernel_size = math.isqrt(attn.shape[1]) if attn.ndim == 4 else 0
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"elsa_filter: kernel_size must be a positive odd number, got {kernel_size}")
    if dilation < 1:
        raise ValueError(f"elsa_filter: dilation must be >= 1, got {dilation}")
    if method not in ELSA_METHODS:
        raise ValueError(f"elsa_filter: method must be one of {ELSA_METHODS}, got {method!r}")
    if attn.shape != (N, kernel_size**2, H, W):
        raise ValueError(
            f"elsa_filter: attn must be (N, k², H, W) = {(N, kernel_size**2, H, W)} for v {tuple(v.shape)} "
            f"and kernel_size={kernel_size}, got {tuple(attn.shape)}"
        )
    for name, m in (("mul", mul), ("add", add)):
        if m is not None and (m.ndim != 4 or m.shape[0] not in (1, N) or m.shape[1:] != (C, kernel_size, kernel_size)):
            raise ValueError(
                f"elsa_filter: {name} must be (N or 1, C, k, k) = ({N} or 1, {C}, {kernel_size}, {kernel_size}), "
                f"got {tuple(m.shape)}"
            )
    dtype = v.dtype
    for t in (attn, mul, add):
        if t is not None:
            dtype = torch.promote_types(dtype, t.dtype)
    v, attn = v.to(dtype), attn.to(dtype)
    mul = mul.to(dtype) if mul is not None else None
    add = add.to(dtype) if add is not None else None
    if method == "unfold":
        return _unfold_filter(v, attn, mul, add, kernel_size, dilation)
    out = _ShiftAddFilter.apply(v, attn, mul, kernel_size, dilation)
    return out if add is None else out + _static_filter(v, add, kernel_size, dilation)


# --------------------------------------------------------------------------------------------------
# ELSA module and block


class ELSA(nn.Module):
    """Enhanced local self-attention: Hadamard attention over a k×k neighbourhood plus a ghost head.

    Args (official names and defaults):
        dim: input/output channels C.
        num_heads: G, heads of the dynamic attention (must divide ``dim_v``).
        dim_qk: width of q and k (default ``(C // 3) * 2``); always rounded up to a multiple of ``group_width``.
        dim_v: width of v (default C).
        kernel_size: k, odd.
        stride: only 1 (see module deviations).
        dilation: d of the neighbourhood.
        qkv_bias: bias of the 1×1 q/k/v projection ``pre_proj``.
        qk_scale: scale of q⊙k (default ``(Cv / G) ** -0.5``; Python ``or``: ELSA-Swin passes 1, i.e. none).
        attn_drop, proj_drop: dropout on the attention weights / after ``post_proj``.
        group_width: channels per group of the k×k convolution ``attn[0]``.
        groups: groups of the 1×1 convolution ``attn[2]`` that emits k²·G logits.
        lam: λ, exponent of the multiplicative ghost matrices (0: none); an integer.
        gamma: γ, factor of the additive ghost matrices (0: none).
        method: formulation of the op's dynamic part, see ``elsa_filter`` (the static γ·S part is always one
            depth-wise convolution shared by the batch).

    Shapes:
        (B, H, W, C) -> (B, H, W, C)
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        dim_qk: int | None = None,
        dim_v: int | None = None,
        kernel_size: int = 5,
        stride: int = 1,
        dilation: int = 1,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        group_width: int = 8,
        groups: int = 1,
        lam: float = 1,
        gamma: float = 1,
        method: str = "shift",
    ):
        super().__init__()
        dim_v = dim_v or dim
        dim_qk = math.ceil((dim_qk or (dim // 3) * 2) / group_width) * group_width
        checks = [
            (
                kernel_size >= 1 and kernel_size % 2 == 1,
                f"kernel_size must be a positive odd number, got {kernel_size}",
            ),
            (stride == 1, f"stride must be 1 (no released ELSA model uses another), got {stride}"),
            (dim_v % num_heads == 0, f"dim_v={dim_v} must be divisible by num_heads={num_heads}"),
            (
                dim_qk % groups == 0 and (kernel_size**2 * num_heads) % groups == 0,
                f"groups={groups} must divide dim_qk={dim_qk} and kernel_size²·num_heads={kernel_size**2 * num_heads}",
            ),
            (
                float(lam).is_integer(),
                f"lam must be an integer (mul ** lam of a randn matrix is NaN otherwise), got {lam}",
            ),
            (method in ELSA_METHODS, f"method must be one of {ELSA_METHODS}, got {method!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"ELSA: {message}")
        self.dim, self.num_heads, self.dim_qk, self.dim_v = dim, num_heads, dim_qk, dim_v
        self.kernel_size, self.dilation, self.lam, self.gamma, self.method = kernel_size, dilation, lam, gamma, method
        self.scale = qk_scale or (dim_v // num_heads) ** -0.5
        self.pre_proj = nn.Conv2d(dim, 2 * dim_qk + dim_v, 1, bias=qkv_bias)
        self.attn = nn.Sequential(
            nn.Conv2d(
                dim_qk,
                dim_qk,
                kernel_size,
                padding=(kernel_size // 2) * dilation,
                dilation=dilation,
                groups=dim_qk // group_width,
            ),
            nn.GELU(),
            nn.Conv2d(dim_qk, kernel_size**2 * num_heads, 1, groups=groups),
        )
        shape = (dim_v, kernel_size, kernel_size)
        if lam != 0 and gamma != 0:  # slice 0 multiplicative (randn), slice 1 additive (trunc-normal 0.02)
            ghost = torch.cat([torch.randn(1, 1, *shape), nn.init.trunc_normal_(torch.zeros(1, 1, *shape), std=0.02)])
        elif gamma != 0:
            ghost = nn.init.trunc_normal_(torch.zeros(1, *shape), std=0.02)
        elif lam != 0:
            ghost = torch.randn(1, *shape)
        else:
            ghost = None
        self.ghost_head = nn.Parameter(ghost) if ghost is not None else None
        self.attn_drop = nn.Dropout(attn_drop)
        self.post_proj = nn.Linear(dim_v, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def ghost_matrices(self, batch: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Effective ghost matrices: M^λ per (batch·head, channel of head) as (B·G, Cv/G, k, k), the op's
        layout, and γ·S as (1, Cv, k, k), shared by the batch; None for a switched-off branch."""
        if self.ghost_head is None:
            return None, None
        G, k = self.num_heads, self.kernel_size
        mul = add = None
        if self.lam != 0:  # (1, Cv, k, k) -> (B·G, Cv/G, k, k): head g owns channels [g·Cv/G, (g+1)·Cv/G)
            m = self.ghost_head[0] if self.gamma != 0 else self.ghost_head
            mul = (m**self.lam).expand(batch, self.dim_v, k, k).reshape(batch * G, self.dim_v // G, k, k)
        if self.gamma != 0:
            add = (self.ghost_head[1] if self.lam != 0 else self.ghost_head) * self.gamma
        return mul, add

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, _ = x.shape
        G, k = self.num_heads, self.kernel_size
        q, key, v = self.pre_proj(x.permute(0, 3, 1, 2)).split((self.dim_qk, self.dim_qk, self.dim_v), dim=1)
        logits = self.attn(q * key * self.scale)  # (B, k²·G, H, W), channel g·k² + ky·k + kx
        attn = self.attn_drop(logits.reshape(B * G, k * k, H, W).softmax(1))  # over the k² offsets, no mask
        mul, add = self.ghost_matrices(B)
        # dynamic part per head: contiguous channel block per head, (B·G, Cv/G, H, W)
        heads = v.reshape(B * G, self.dim_v // G, H, W)
        out = elsa_filter(heads, attn, mul, kernel_size=k, dilation=self.dilation, method=self.method)
        out = out.reshape(B, self.dim_v, H, W)
        if add is not None:
            # static part γ·S: the same k×k kernel per channel for every sample, so one depth-wise convolution
            # over (B, Cv, H, W); as B·G separate kernels (the op's layout) its backward was ~3x slower on CPU
            out = out + _static_filter(v, add, k, self.dilation)
        out = out.permute(0, 2, 3, 1)  # (B, H, W, Cv)
        return self.proj_drop(self.post_proj(out))


class ELSABlock(nn.Module):
    """Pre-norm ELSA block: ``x + DropPath(ELSA(LN(x)))``, ``x + DropPath(MLP(LN(x)))``; no windows.

    Args:
        dim, num_heads: as in ``ELSA``.
        mlp_ratio: MLP hidden width / C (official block default 3; ELSA-Swin passes 4).
        drop: dropout inside the MLP (the official block leaves ELSA's ``proj_drop`` at 0).
        drop_path: stochastic depth rate.
        qk_scale: the block's default 1 (no scaling), as in the official ``ELSABlock``.
        **elsa_kwargs: the remaining ``ELSA`` arguments (kernel_size, lam, gamma, group_width, ...).

    Shapes:
        (B, H, W, C) -> (B, H, W, C)
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float = 3.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
        qk_scale: float | None = 1,
        **elsa_kwargs,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ELSA(dim, num_heads, qk_scale=qk_scale, **elsa_kwargs)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


# --------------------------------------------------------------------------------------------------
# ELSA-Swin


class _Stage(nn.Module):
    """Blocks at one resolution, then an optional patch merging (official ``BasicLayer`` names)."""

    def __init__(self, blocks: list[nn.Module], downsample: nn.Module | None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


def _init_weights(module: nn.Module) -> None:
    """Official init (timm 0.4.9 ``_init_vit_weights`` without names): Linear trunc-normal 0.02, zero bias;
    LayerNorm 1/0; Conv2d layers keep PyTorch's default."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class ELSASwin(nn.Module):
    """Swin Transformer whose first ``elsa_stages`` stages use ELSA blocks; the rest keep (S)W-MSA.

    ELSA-Swin (official) is ``elsa_stages=3`` of 4. ``elsa_stages=0`` is the plain Swin (the LSA baseline),
    built from the same code so that only the attention differs.

    Args:
        in_chans, num_classes: image channels and classes.
        embed_dim: C0, width of stage 1 (doubled by every patch merging).
        depths, num_heads: blocks and heads per stage.
        elsa_stages: leading stages built from ``ELSABlock`` (no windows, no shift).
        img_size: training resolution; only used, as in Swin, to shrink windows that exceed a stage's map.
        patch_size, stem_kernel: the patch embedding (see ``PatchEmbed``).
        window_size: Swin window w of the window-attention stages (alternating shift 0 / w//2).
        mlp_ratio, qkv_bias: shared by both block kinds (ELSA-Swin: 4, True).
        drop_rate, attn_drop_rate, drop_path_rate: dropout, attention dropout, linearly increasing stochastic depth.
        elsa_kernel, group_width, lam, gamma, qk_scale, method: ``ELSA`` settings of the ELSA stages.

    Shapes:
        (B, in_chans, H, W) -> (B, num_classes)
    """

    def __init__(
        self,
        *,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 96,
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (3, 6, 12, 24),
        elsa_stages: int = 3,
        img_size: int = 224,
        patch_size: int = 4,
        stem_kernel: int | None = None,
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        elsa_kernel: int = 7,
        group_width: int = 8,
        lam: float = 0,
        gamma: float = 1,
        qk_scale: float | None = 1,
        method: str = "shift",
    ):
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(
                f"ELSASwin: depths {tuple(depths)} and num_heads {tuple(num_heads)} must have one entry per stage"
            )
        if not 0 <= elsa_stages <= len(depths):
            raise ValueError(f"ELSASwin: elsa_stages={elsa_stages} must be in [0, {len(depths)}] (number of stages)")
        self.patch_embed = PatchEmbed(in_chans, embed_dim, patch_size=patch_size, kernel_size=stem_kernel)
        n_blocks = sum(depths)  # stochastic depth grows linearly with depth (Swin's rule)
        rates = [drop_path_rate * i / max(1, n_blocks - 1) for i in range(n_blocks)]
        resolution = math.ceil(img_size / patch_size)
        layers, dim, offset = [], embed_dim, 0
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            blocks = []
            for j in range(depth):
                common = dict(mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop=drop_rate, drop_path=rates[offset + j])
                if i < elsa_stages:
                    block = ELSABlock(
                        dim,
                        heads,
                        kernel_size=elsa_kernel,
                        group_width=group_width,
                        lam=lam,
                        gamma=gamma,
                        qk_scale=qk_scale,
                        attn_drop=attn_drop_rate,
                        method=method,
                        **common,
                    )
                else:
                    block = SwinBlock(
                        dim,
                        heads,
                        window_size=window_size,
                        shift_size=0 if j % 2 == 0 else window_size // 2,
                        attn_drop=attn_drop_rate,
                        input_resolution=(resolution, resolution),
                        **common,
                    )
                blocks.append(block)
            last = i == len(depths) - 1
            layers.append(_Stage(blocks, None if last else PatchMerging(dim)))
            offset += depth
            if not last:
                dim, resolution = 2 * dim, math.ceil(resolution / 2)
        self.layers = nn.ModuleList(layers)
        self.num_features = dim
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.apply(_init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features: (B, in_chans, H, W) -> (B, num_features)."""
        x = self.patch_embed(x)  # (B, H/p, W/p, C0)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x).mean((1, 2))  # LN over channels, mean over tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


# --------------------------------------------------------------------------------------------------
# Official checkpoints


def _official_window_blocks(state_dict: Mapping[str, torch.Tensor]) -> set[str]:
    """Prefixes (``layers.3.blocks.0.``) of the official blocks that hold Swin window attention."""
    return {key[: -len("attn.rb")] for key in state_dict if key.endswith(".attn.rb")}


def convert_official_elsa_swin(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename and re-lay an official ELSA-Swin state_dict for ``ELSASwin`` (keys that are not mapped pass through).

    ELSA stages share the official names. In the window-attention blocks (stage 4):
    ``attn.pre_proj`` (output order v, q, k) becomes ``attn.qkv`` (q, k, v); ``attn.post_proj`` becomes
    ``attn.proj``; ``attn.rb`` (G, (2w−1)²) indexed by key − query offsets becomes
    ``attn.relative_position_bias_table`` ((2w−1)², G) indexed by query − key, which reverses the table;
    the ``attn.relative_id`` buffer is checked against that convention and dropped.

    Raises:
        ValueError: a ``relative_id`` buffer that does not hold the official key − query indices.
    """
    state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    window_blocks = _official_window_blocks(state_dict)
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        prefix = next((p for p in window_blocks if key.startswith(p)), None)
        if prefix is None:
            out[key] = value
            continue
        name = key[len(prefix) :]
        if name == "attn.rb":
            # offset (key − query) = −(query − key): idx(−Δ) = (2w−1)² − 1 − idx(Δ), a reversal
            out[prefix + "attn.relative_position_bias_table"] = value.flip(-1).t().contiguous()
        elif name == "attn.relative_id":
            side = math.isqrt(state_dict[prefix + "attn.rb"].shape[-1])
            expected = relative_position_index((side + 1) // 2).t().flatten()  # key − query convention
            if value.shape != expected.shape or not torch.equal(value.long().cpu(), expected):
                raise ValueError(
                    f"{key}: the relative index buffer does not hold the official key − query indices of a "
                    f"{(side + 1) // 2}×{(side + 1) // 2} window; the checkpoint is not an official ELSA-Swin"
                )
        elif name.startswith("attn.pre_proj."):
            v, q, k = value.chunk(3, dim=0)  # official split order of the fused projection
            out[prefix + "attn.qkv." + name.rsplit(".", 1)[1]] = torch.cat([q, k, v], dim=0)
        elif name.startswith("attn.post_proj."):
            out[prefix + "attn.proj." + name.rsplit(".", 1)[1]] = value
        else:
            out[key] = value
    return out


def _read_official(path: Path, ema: bool) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"official ELSA-Swin checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    # timm training checkpoints also store the argparse Namespace of the run; allow only that class
    with torch.serialization.safe_globals([argparse.Namespace]):
        obj = torch.load(path, map_location="cpu", weights_only=True)
    key = "state_dict_ema" if ema else "state_dict"
    if isinstance(obj, Mapping) and key in obj:
        return obj[key]
    if ema:
        raise ValueError(f"{path} has no 'state_dict_ema' entry; load it with ema=False")
    return obj


def load_official_elsa_swin(
    source: str | os.PathLike | Mapping[str, torch.Tensor], model: ELSASwin, *, ema: bool = False
) -> ELSASwin:
    """Load official ELSA-Swin weights (damo-cv/ELSA ``cls`` checkpoints) into ``model``, strictly.

    Args:
        source: a state_dict, or a local file: a timm training checkpoint (``.pth``/``.pth.tar``, read with
            ``weights_only=True``; weights under ``state_dict``) or a ``.safetensors`` file.
        model: an ``ELSASwin`` of the matching variant, e.g. ``create_model("elsa_swin_t")``.
        ema: take ``state_dict_ema`` (the EMA weights the Swin-B recipe evaluates).

    Returns:
        ``model``, with the weights loaded.

    Raises:
        FileNotFoundError: ``source`` is a path that does not exist.
        ValueError: ``ema=True`` without EMA weights, or a foreign relative index buffer.
        damokit.engine.CheckpointError: missing, unexpected or mis-shaped keys (all listed).
    """
    label = "state_dict"
    if not isinstance(source, Mapping):
        label = str(source)
        source = _read_official(Path(source), ema)
    load_weights(model, convert_official_elsa_swin(source), source=f"official ELSA-Swin weights ({label})")
    return model


# --------------------------------------------------------------------------------------------------
# Registered variants


def _rgb(size: int):
    def example_inputs(g: torch.Generator) -> tuple[torch.Tensor]:
        return (torch.randn(2, 3, size, size, generator=g),)

    return example_inputs


def _grey8(g: torch.Generator) -> tuple[torch.Tensor]:
    return (torch.rand(2, 1, 8, 8, generator=g),)


_META = dict(task="image_classification", paper="2112.12786", input_layout="(B, C, H, W)", per_sample=True)
_T = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), group_width=4, drop_path_rate=0.1)
_S = dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), group_width=8, drop_path_rate=0.3)
_B = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), group_width=8, drop_path_rate=0.5)
# test-sized: 32×32 input, 8×8 -> 4×4 -> 2×2 -> 1×1 maps; stage 1 of the LSA twin has shifted 4×4 windows
_TINY = dict(
    img_size=32,
    num_classes=10,
    embed_dim=16,
    depths=(2, 1, 1, 1),
    num_heads=(1, 2, 2, 4),
    window_size=4,
    elsa_kernel=3,
    group_width=4,
    drop_path_rate=0.0,
)
# spec §9 "TinySwin" for 8×8 digits: 3×3 stem, stage 1 (8×8, C=32, 2 heads), stage 2 (4×4, C=64, 4 heads)
_DIGITS = dict(
    in_chans=1,
    num_classes=10,
    img_size=8,
    patch_size=1,
    stem_kernel=3,
    embed_dim=32,
    depths=(2, 2),
    num_heads=(2, 4),
    window_size=4,
    elsa_kernel=5,
    group_width=8,
    drop_path_rate=0.0,
)
# CIFAR-10-mini (32×32): 2×2 patches, stages at 16×16, 8×8, 4×4; the last keeps window attention
_CIFAR = dict(
    img_size=32,
    num_classes=10,
    patch_size=2,
    embed_dim=48,
    depths=(2, 2, 2),
    num_heads=(2, 4, 8),
    window_size=4,
    elsa_kernel=5,
    group_width=8,
    drop_path_rate=0.1,
)


@register_model(**_META, example_inputs=_rgb(224))
def elsa_swin_t(**overrides) -> ELSASwin:
    """ELSA-Swin-T (29.1M params): ImageNet-1K top-1 82.7 vs Swin-T 81.2 (official README)."""
    return ELSASwin(**{**_T, **overrides})


@register_model(**_META, example_inputs=_rgb(224))
def elsa_swin_s(**overrides) -> ELSASwin:
    """ELSA-Swin-S (52.9M params): ImageNet-1K top-1 83.5 vs Swin-S 83.2 (official README)."""
    return ELSASwin(**{**_S, **overrides})


@register_model(**_META, example_inputs=_rgb(224))
def elsa_swin_b(**overrides) -> ELSASwin:
    """ELSA-Swin-B (92.7M params): ImageNet-1K top-1 84.0 vs Swin-B 83.5 (official README)."""
    return ELSASwin(**{**_B, **overrides})


@register_model(**_META, example_inputs=_rgb(224))
def swin_lsa_t(**overrides) -> ELSASwin:
    """Swin-T (28.3M params), the LSA baseline of ELSA-Swin-T: window attention in every stage."""
    return ELSASwin(**{**_T, "elsa_stages": 0, **overrides})


@register_model(**_META, example_inputs=_rgb(224))
def swin_lsa_s(**overrides) -> ELSASwin:
    """Swin-S (49.6M params), the LSA baseline of ELSA-Swin-S."""
    return ELSASwin(**{**_S, "elsa_stages": 0, **overrides})


@register_model(**_META, example_inputs=_rgb(224))
def swin_lsa_b(**overrides) -> ELSASwin:
    """Swin-B (87.8M params), the LSA baseline of ELSA-Swin-B."""
    return ELSASwin(**{**_B, "elsa_stages": 0, **overrides})


@register_model(**_META, example_inputs=_rgb(32))
def elsa_swin_tiny(**overrides) -> ELSASwin:
    """Test-sized ELSA-Swin (32×32 input, 4 stages, ELSA in stages 1–3); not a paper model."""
    return ELSASwin(**{**_TINY, **overrides})


@register_model(**_META, example_inputs=_rgb(32))
def swin_lsa_tiny(**overrides) -> ELSASwin:
    """Test-sized Swin (LSA) twin of ``elsa_swin_tiny``."""
    return ELSASwin(**{**_TINY, "elsa_stages": 0, **overrides})


@register_model(**_META, example_inputs=_grey8)
def elsa_swin_digits(**overrides) -> ELSASwin:
    """Spec §9 TinySwin with ELSA in stage 1 (k=5, λ=0, γ=1), for 8×8 digits; the `damokit reproduce elsa` model."""
    return ELSASwin(**{**_DIGITS, "elsa_stages": 1, **overrides})


@register_model(**_META, example_inputs=_grey8)
def swin_lsa_digits(**overrides) -> ELSASwin:
    """Spec §9 TinySwin with (S)W-MSA (window 4, shift 2) in stage 1: the LSA baseline of ``elsa_swin_digits``."""
    return ELSASwin(**{**_DIGITS, "elsa_stages": 0, **overrides})


@register_model(**_META, example_inputs=_rgb(32))
def elsa_swin_cifar(**overrides) -> ELSASwin:
    """Small ELSA-Swin for 32×32 CIFAR images (ELSA in stages 1–2, window attention in stage 3)."""
    return ELSASwin(**{**_CIFAR, "elsa_stages": 2, **overrides})


@register_model(**_META, example_inputs=_rgb(32))
def swin_lsa_cifar(**overrides) -> ELSASwin:
    """Swin (LSA) twin of ``elsa_swin_cifar`` (window 4, alternating shift 2)."""
    return ELSASwin(**{**_CIFAR, "elsa_stages": 0, **overrides})
