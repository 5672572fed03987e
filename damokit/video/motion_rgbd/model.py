"""The unimodal MotionRGBD network: DSN (space) -> RCM (recoupling) -> DTN (time), and its loss (spec §3-4).

Paper: "Decoupling and Recoupling Spatiotemporal Representation for RGB-D-based Motion Recognition",
CVPR 2022, arXiv 2112.09129. Official code: github.com/damo-cv/MotionRGBD.

Deviations (see also dsn.py, dtn.py): eval-mode branch sampling is deterministic (segment middles) unless
``random_test_sampling``; the distillation loss is averaged over the batch (official: summed); the logit
sharpening temperature is an attribute the recipe sets per epoch (``logit_temperature``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from damokit.registry import register_model
from damokit.video.motion_rgbd.dsn import InceptionDSN, MiniDSN
from damokit.video.motion_rgbd.dtn import MultiScaleTemporalTransformer
from damokit.video.motion_rgbd.rcm import RecouplingModule, recoupling_distill_loss

__all__ = ["MotionBackbone", "MotionRGBDNet", "MotionOutput", "motion_loss", "check_clip", "check_labels"]


class MotionOutput(NamedTuple):
    logits: torch.Tensor  # (B, K): element-wise max over the branch logits
    branch_logits: torch.Tensor  # (branches, B, K)
    distill_loss: torch.Tensor  # scalar (0 without recoupling)


class MotionBackbone(nn.Module):
    """DSN + RCM + DTN without heads: per-branch CLS features and the distillation loss.

    CAPF fusion reuses this part of two trained unimodal networks.

    Shapes:
        x: (B, C, T, H, W) -> spatial tokens (B, T, D); temporal -> (branches, B, D), scalar
    """

    def __init__(
        self,
        *,
        spatial: nn.Module,
        frames: int,
        dim: int,
        branch_frames: tuple[int, ...],
        depth: int,
        heads: int,
        head_dim: int,
        mlp_dim: int,
        knn_ratio: float,
        dropout: float,
        recoupling: bool,
        rcm_hidden: int,
        rcm_qk_dim: int,
        distill_temperature: float,
        random_test_sampling: bool = False,
    ):
        super().__init__()
        self.spatial = spatial
        self.rcm = (
            RecouplingModule(frames=frames, dim=dim, hidden=rcm_hidden, qk_dim=rcm_qk_dim) if recoupling else None
        )
        self.dtn = MultiScaleTemporalTransformer(
            dim=dim, frames=frames, branch_frames=branch_frames, depth=depth, heads=heads, head_dim=head_dim,
            mlp_dim=mlp_dim, knn_ratio=knn_ratio, dropout=dropout, random_test_sampling=random_test_sampling,
        )  # fmt: skip
        self.distill_temperature = distill_temperature

    def temporal(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Branch CLS features (branches, B, D) and the recoupling distillation loss."""
        if self.rcm is None:
            return self.dtn(tokens), tokens.new_zeros(())
        recoupled, w_t, _ = self.rcm(tokens)
        cls = self.dtn(recoupled)
        teacher = cls.mean(dim=0)  # detached inside the loss: the DTN gets no gradient from distillation
        return cls, recoupling_distill_loss(self.rcm, w_t, teacher, self.distill_temperature)

    def forward(self, x: torch.Tensor, maps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.temporal(self.spatial(x, maps))


class MotionRGBDNet(nn.Module):
    """One modality's classifier: backbone + one ``LayerNorm -> Linear`` head per branch, max-merged.

    Args:
        spatial: ``"inception"`` (the paper's DSN) or ``"mini"`` (spec §8.2 per-frame CNN).
        frames: T tokens per clip (64; mini 16). dim: D (512; mini 64).
        branch_frames: tokens per branch (16, 32, 48; mini 4, 8, 12). depth: layers N (6; mini 2).
        recoupling: use RCM and its distillation (default True, as every official config).
        frp: motion-attention FRP blocks in the Inception DSN (default True, as the official configs).

    Shapes:
        x: (B, in_chans, T, H, W), maps: (B, T, H, W) or None -> MotionOutput
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int = 3,
        spatial: str = "inception",
        frames: int = 64,
        dim: int = 512,
        branch_frames: tuple[int, ...] = (16, 32, 48),
        depth: int = 6,
        heads: int = 8,
        head_dim: int = 64,
        mlp_dim: int = 768,
        knn_ratio: float = 0.7,
        dropout: float = 0.1,
        recoupling: bool = True,
        rcm_hidden: int = 256,
        rcm_qk_dim: int = 64,
        distill_temperature: float = 0.4,
        frp: bool = True,
        pool_temporal_kernel: int = 1,
        random_test_sampling: bool = False,
    ):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if spatial == "inception":
            dsn: nn.Module = InceptionDSN(
                in_chans=in_chans, frames=frames, dim=dim, frp=frp, pool_temporal_kernel=pool_temporal_kernel
            )
        elif spatial == "mini":
            dsn = MiniDSN(in_chans=in_chans, dim=dim)
        else:
            raise ValueError(f"spatial must be 'inception' or 'mini', got {spatial!r}")
        self.in_chans, self.frames, self.num_classes = in_chans, frames, num_classes
        self.backbone = MotionBackbone(
            spatial=dsn, frames=frames, dim=dim, branch_frames=branch_frames, depth=depth, heads=heads,
            head_dim=head_dim, mlp_dim=mlp_dim, knn_ratio=knn_ratio, dropout=dropout, recoupling=recoupling,
            rcm_hidden=rcm_hidden, rcm_qk_dim=rcm_qk_dim, distill_temperature=distill_temperature,
            random_test_sampling=random_test_sampling,
        )  # fmt: skip
        self.heads = nn.ModuleList(
            [nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes)) for _ in branch_frames]
        )
        self.logit_temperature = 1.0  # the official "sharpness" schedule sets 0.04 -> 0.07

    def forward(self, x: torch.Tensor, maps: torch.Tensor | None = None) -> MotionOutput:
        check_clip(x, self.in_chans, self.frames)
        cls, distill = self.backbone(x, maps)  # (branches, B, D)
        branch_logits = torch.stack([head(c) for head, c in zip(self.heads, cls)]) / self.logit_temperature
        return MotionOutput(branch_logits.amax(dim=0), branch_logits, distill)


def check_clip(x: torch.Tensor, channels: int, frames: int) -> None:
    """Raise a clear error for a clip that is not (B, channels, frames, H, W)."""
    if x.ndim != 5 or x.shape[1] != channels or x.shape[2] != frames:
        raise ValueError(
            f"expected clips of shape (B, {channels}, {frames}, H, W), got {tuple(x.shape)}; "
            "check the modality's channel count and the number of sampled frames"
        )


def check_labels(labels: torch.Tensor, num_classes: int) -> None:
    """Raise a clear error for labels outside ``[0, num_classes)``."""
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got range [{int(labels.min())}, {int(labels.max())}]")


def motion_loss(
    out: MotionOutput | torch.Tensor,
    labels: torch.Tensor,
    *,
    branch_weights: tuple[float, ...] = (0.5, 0.5, 0.5),
    distill_weight: float = 1.0,
    label_smoothing: float = 0.1,
) -> tuple[torch.Tensor, dict[str, float]]:
    """``CE(max) + sum_b w_b CE(branch b) + lambda_d L_distill`` with label-smoothed CE (official ``MultiLoss``).

    torch's ``label_smoothing=0.1`` equals the official ``0.1 mean_k(-log p_k) + 0.9 (-log p_y)``. A plain
    logits tensor (coupled baseline) gets the CE term only.
    """
    check_labels(labels, (out if isinstance(out, torch.Tensor) else out.logits).shape[1])
    if isinstance(out, torch.Tensor):
        loss = F.cross_entropy(out, labels, label_smoothing=label_smoothing)
        return loss, {"ce": float(loss.detach())}
    ce = F.cross_entropy(out.logits, labels, label_smoothing=label_smoothing)
    branch = sum(
        w * F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
        for w, logits in zip(branch_weights, out.branch_logits)
    )
    loss = ce + branch + distill_weight * out.distill_loss
    return loss, {"ce": float(ce.detach()), "distill": float(out.distill_loss.detach())}


# Registered variants -------------------------------------------------------------------------------------

_META = dict(task="video_classification", paper="2112.09129", input_layout="(B, C, T, H, W)")


def _clips(channels: int, frames: int, size: int):
    return lambda g: (torch.rand(2, channels, frames, size, size, generator=g),)


@register_model(**_META)
def motion_rgbd_inception(**overrides) -> MotionRGBDNet:
    """The paper's unimodal network: Inception DSN with FRP, RCM, 3-branch DTN (64 frames of 224 x 224)."""
    return MotionRGBDNet(**{"num_classes": 25, **overrides})


_MINI = dict(
    spatial="mini", frames=16, dim=64, branch_frames=(4, 8, 12), depth=2, heads=4, head_dim=16, mlp_dim=128,
    rcm_hidden=32, rcm_qk_dim=32, distill_temperature=0.5, frp=False,
)  # fmt: skip


@register_model(**_META)
def motion_rgbd_mini(**overrides) -> MotionRGBDNet:
    """Spec §8.2 DSN-mini + RCM-mini + DTN-mini (16 frames of 32 x 32, D = 64); the reproduction's model."""
    return MotionRGBDNet(**{"num_classes": 10, **_MINI, **overrides})


@register_model(**_META, example_inputs=_clips(3, 8, 16), per_sample=True)
def motion_rgbd_tiny(**overrides) -> MotionRGBDNet:
    """Test-sized unimodal network: 8 frames of 16 x 16, D = 16, one layer."""
    tiny = dict(_MINI, frames=8, dim=16, branch_frames=(2, 4, 6), depth=1, heads=2, head_dim=8, mlp_dim=32,
                rcm_hidden=8, rcm_qk_dim=8)  # fmt: skip
    return MotionRGBDNet(**{"num_classes": 5, **tiny, **overrides})
