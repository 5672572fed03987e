"""CAPF: cross-modal fusion of two unimodal MotionRGBD networks, as the official ``CrossFusionNet`` (spec §5).

Both streams receive the same shared feature per frame (spatial interaction) and again after temporal
modelling (temporal interaction); a fusion encoder yields a code for the fused classifier, a decoder
reconstructs both temporal features, and a modality discriminator sees each stream's feature.

Deviation: the official spatial interaction *reshapes* (B, T, 2D) to (B, 2D, T) instead of transposing, so
its 1x1 convs mix frames; the default here is the per-frame version the paper describes
(``official_reshape=True`` reproduces the code).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from damokit.registry import register_model
from damokit.video.motion_rgbd.model import MotionBackbone, MotionRGBDNet, check_labels

__all__ = ["CAPFusion", "CAPFOutput", "capf_loss", "capf_predict", "late_fusion", "FUSION_RULES"]


class CAPFOutput(NamedTuple):
    fused_logits: torch.Tensor  # (B, K) from the fusion code
    rgb_logits: torch.Tensor  # (B, K) unimodal posteriors, before the temporal interaction
    depth_logits: torch.Tensor  # (B, K)
    disc_rgb: torch.Tensor  # (B,) discriminator logits, target 1
    disc_depth: torch.Tensor  # (B,) target 0
    reconstruction: torch.Tensor  # (B, D) decoder output
    rgb_feature: torch.Tensor  # (B, D) t_r' after the temporal interaction
    depth_feature: torch.Tensor  # (B, D) t_d'
    distill_loss: torch.Tensor  # scalar: both streams' recoupling distillation


def _interaction(dim: int, dropout: float) -> nn.Sequential:
    """1x1 conv 2D -> D, BN, ReLU, 1x1 conv D -> D, dropout (official ``MLP_s``/``MLP_t``)."""
    return nn.Sequential(
        nn.Conv1d(2 * dim, dim, 1, bias=False), nn.BatchNorm1d(dim), nn.ReLU(),
        nn.Conv1d(dim, dim, 1, bias=False), nn.Dropout(dropout),
    )  # fmt: skip


def _convs(widths: tuple[int, ...], last_act: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Conv1d(cin, cout, 1))
        if last_act or i < len(widths) - 2:
            layers += [nn.BatchNorm1d(cout), nn.ReLU()]
    return nn.Sequential(*layers)


class CAPFusion(nn.Module):
    """Two unimodal backbones trained end to end with spatial/temporal interaction and the fusion module.

    Args:
        rgb, depth: the unimodal backbones (``MotionRGBDNet.backbone``), usually trained first.
        encoder_widths: fusion encoder after the 2D input (official 1024, 512, 256, 256 for D = 512).
        decoder_widths: decoder from the code (official 256, 512).

    Shapes:
        rgb: (B, 3, T, H, W), depth: (B, Cd, T, H, W) -> CAPFOutput
    """

    def __init__(
        self,
        rgb: MotionBackbone,
        depth: MotionBackbone,
        *,
        num_classes: int,
        dim: int,
        encoder_widths: tuple[int, ...] | None = None,
        decoder_widths: tuple[int, ...] | None = None,
        dropout: float = 0.4,
        official_reshape: bool = False,
    ):
        super().__init__()
        encoder_widths = encoder_widths or (2 * dim, dim, dim // 2, dim // 2)
        decoder_widths = decoder_widths or (dim // 2, dim)
        if decoder_widths[-1] != dim:
            raise ValueError(f"the decoder must end at dim={dim} to reconstruct the features, got {decoder_widths}")
        self.rgb, self.depth, self.official_reshape = rgb, depth, official_reshape
        self.spatial_mlp = _interaction(dim, dropout)
        self.temporal_mlp = _interaction(dim, dropout)
        self.rgb_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))
        self.depth_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))
        self.encoder = _convs((2 * dim, *encoder_widths), last_act=False)
        self.classifier = nn.Linear(encoder_widths[-1], num_classes, bias=False)
        self.decoder = _convs((encoder_widths[-1], *decoder_widths), last_act=True)
        self.discriminator = nn.Linear(dim, 1)
        self.disc_dropout = nn.Dropout(0.5)

    @classmethod
    def from_unimodal(cls, rgb: MotionRGBDNet, depth: MotionRGBDNet, **kwargs) -> CAPFusion:
        """Fuse two trained unimodal networks (their heads are dropped; CAPF has its own)."""
        if rgb.num_classes != depth.num_classes:
            raise ValueError(f"the streams disagree on num_classes: {rgb.num_classes} vs {depth.num_classes}")
        dim = rgb.heads[0][1].in_features
        return cls(rgb.backbone, depth.backbone, num_classes=rgb.num_classes, dim=dim, **kwargs)

    def _spatial_interaction(self, s_r: torch.Tensor, s_d: torch.Tensor) -> torch.Tensor:
        both = F.normalize(torch.cat([s_r, s_d], dim=-1), dim=-1)  # (B, T, 2D), l2 over channels
        B, T, D2 = both.shape
        if self.official_reshape:
            return self.spatial_mlp(both.reshape(B, D2, T)).reshape(B, T, D2 // 2)
        return self.spatial_mlp(both.transpose(1, 2)).transpose(1, 2)  # per frame: (B, T, D)

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor) -> CAPFOutput:
        if rgb.shape[0] != depth.shape[0] or rgb.shape[2:] != depth.shape[2:]:
            raise ValueError(
                f"RGB and depth clips must pair up (same batch, frames and size): {tuple(rgb.shape)} vs "
                f"{tuple(depth.shape)}"
            )
        s_r, s_d = self.rgb.spatial(rgb), self.depth.spatial(depth)  # (B, T, D) each
        shared = self._spatial_interaction(s_r, s_d)
        cls_r, distill_r = self.rgb.temporal(s_r + shared)
        cls_d, distill_d = self.depth.temporal(s_d + shared)
        t_r, t_d = cls_r.amax(dim=0), cls_d.amax(dim=0)  # max over branches: (B, D)
        rgb_logits, depth_logits = self.rgb_head(t_r), self.depth_head(t_d)
        both = F.normalize(torch.cat([t_r, t_d], dim=-1), dim=-1)[..., None]  # (B, 2D, 1)
        shared_t = self.temporal_mlp(both)[..., 0]
        t_r, t_d = t_r + shared_t, t_d + shared_t
        code = self.encoder(torch.cat([t_r, t_d], dim=-1)[..., None])  # (B, code, 1)
        return CAPFOutput(
            fused_logits=self.classifier(code[..., 0]),
            rgb_logits=rgb_logits,
            depth_logits=depth_logits,
            disc_rgb=self.discriminator(self.disc_dropout(t_r))[:, 0],
            disc_depth=self.discriminator(self.disc_dropout(t_d))[:, 0],
            reconstruction=self.decoder(code)[..., 0],
            rgb_feature=t_r,
            depth_feature=t_d,
            distill_loss=distill_r + distill_d,
        )


FUSION_RULES = ("fused+unimodal", "fused", "unimodal")


def capf_predict(out: CAPFOutput, rule: str = "fused+unimodal") -> torch.Tensor:
    """Class scores by one fixed rule (the official code reports the best of three per epoch; we never do)."""
    if rule == "fused+unimodal":
        return out.fused_logits + out.rgb_logits + out.depth_logits
    if rule == "fused":
        return out.fused_logits
    if rule == "unimodal":
        return out.rgb_logits + out.depth_logits
    raise ValueError(f"rule must be one of {FUSION_RULES}, got {rule!r}")


def capf_loss(
    out: CAPFOutput,
    labels: torch.Tensor,
    *,
    bce_weight: float = 1.0,
    mse_weight: float = 1.0,
    distill_weight: float = 1.0,
    label_smoothing: float = 0.1,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Three label-smoothed CEs + modality BCEs + reconstruction MSEs + distillation (official: all weights 1)."""
    check_labels(labels, out.fused_logits.shape[1])
    ce = sum(
        F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
        for logits in (out.fused_logits, out.rgb_logits, out.depth_logits)
    )
    bce = F.binary_cross_entropy_with_logits(
        out.disc_rgb, torch.ones_like(out.disc_rgb)
    ) + F.binary_cross_entropy_with_logits(out.disc_depth, torch.zeros_like(out.disc_depth))
    mse = F.mse_loss(out.reconstruction, out.rgb_feature) + F.mse_loss(out.reconstruction, out.depth_feature)
    loss = ce + bce_weight * bce + mse_weight * mse + distill_weight * out.distill_loss
    return loss, {"ce": float(ce.detach()), "bce": float(bce.detach()), "mse": float(mse.detach())}


def late_fusion(rgb_logits: torch.Tensor, depth_logits: torch.Tensor, rule: str = "softmax_mean") -> torch.Tensor:
    """Posterior-level fusion of two independently trained networks: softmax average or log-prob sum."""
    if rule == "softmax_mean":
        return (rgb_logits.softmax(-1) + depth_logits.softmax(-1)) / 2
    if rule == "logprob_sum":
        return rgb_logits.log_softmax(-1) + depth_logits.log_softmax(-1)
    raise ValueError(f"rule must be 'softmax_mean' or 'logprob_sum', got {rule!r}")


_META = dict(task="video_classification", paper="2112.09129", input_layout="(B, C, T, H, W) x 2")


def _fresh(variant: str, num_classes: int, rgb_chans: int, depth_chans: int, **overrides) -> CAPFusion:
    from damokit.registry import create_model

    rgb = create_model(variant, num_classes=num_classes, in_chans=rgb_chans)
    depth = create_model(variant, num_classes=num_classes, in_chans=depth_chans)
    return CAPFusion.from_unimodal(rgb, depth, **overrides)


@register_model(**_META)
def capf_mini(num_classes: int = 4, depth_chans: int = 1, **overrides) -> CAPFusion:
    """CAPF over two fresh mini networks (RGB 3 channels, depth 1); load unimodal weights for real use."""
    return _fresh("motion_rgbd_mini", num_classes, 3, depth_chans, **overrides)


@register_model(
    **_META,
    example_inputs=lambda g: (torch.rand(2, 3, 8, 16, 16, generator=g), torch.rand(2, 1, 8, 16, 16, generator=g)),
    per_sample=True,
)
def capf_tiny(num_classes: int = 4, depth_chans: int = 1, **overrides) -> CAPFusion:
    """Test-sized CAPF over two tiny unimodal networks."""
    return _fresh("motion_rgbd_tiny", num_classes, 3, depth_chans, **overrides)
