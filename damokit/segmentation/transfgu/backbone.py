"""The miniature's backbone (spec §9.2): a tiny ViT with a convolutional stem, its pre-training and its gate.

A single 4 x 4 patchify convolution learns far too slowly for tiny ViTs on a CPU budget, so the stem is
conv 3x3 -> 32, BN, ReLU; conv 3x3 stride 2 -> 64, BN, ReLU; conv 2x2 stride 2 -> D (a documented
deviation; the [CLS]/attention machinery TransFGU needs is unchanged). Two pre-trainings:

- ``pretrain_dino`` (faithful: label-free DINO on the object images, ``damokit.nn.dino``);
- ``pretrain_supervised`` (SUP-PRE, a documented fallback: shape labels of the separate pre-training set,
  never of the target scenes).

``backbone_gate`` measures whether the [CLS] features separate shapes at all (1-NN accuracy, k-means ARI).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from damokit.engine import FitResult, TrainConfig, fit
from damokit.nn.dino import IMAGENET_MEAN, IMAGENET_STD, color_jitter, random_resized_crop
from damokit.nn.vit import VisionTransformer
from damokit.registry import register_model

__all__ = [
    "ConvStem",
    "normalise",
    "pretrain_config",
    "pretrain_supervised",
    "pretrain_dino",
    "GateScores",
    "backbone_gate",
]


class ConvStem(nn.Module):
    """``(B, 3, H, W) -> (B, D, H/4, W/4)``; ``patch_size`` = 4 is its total stride."""

    patch_size = 4

    def __init__(self, embed_dim: int = 64, in_chans: int = 3):
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(in_chans, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.Conv2d(64, embed_dim, 2, stride=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB -> ImageNet-normalised, as the official pipeline feeds the ViT."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def pretrain_config(
    variant: str,
    steps: int,
    n_images: int,
    *,
    batch_size: int = 64,
    lr: float | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> TrainConfig:
    """The miniature's backbone recipe: AdamW, 10 % warm-up then cosine, ``steps`` optimizer steps.

    ``variant`` ``"sup"`` (SUP-PRE: lr 2e-3, weight decay 0.05) or ``"dino"`` (lr 5e-4, weight decay 0.04,
    DINO's ViT-S recipe scaled to batch 64).
    """
    if variant not in ("sup", "dino"):
        raise ValueError(f"variant must be 'sup' or 'dino', got {variant!r}")
    if steps < 1 or n_images < batch_size:
        raise ValueError(f"need steps >= 1 and at least batch_size={batch_size} images, got {steps}, {n_images}")
    per_epoch = n_images // batch_size  # the engine drops the last partial batch
    return TrainConfig(
        epochs=-(-steps // per_epoch),
        max_steps=steps,
        batch_size=batch_size,
        lr=lr or (2e-3 if variant == "sup" else 5e-4),
        optimizer="adamw",
        weight_decay=0.05 if variant == "sup" else 0.04,
        schedule="cosine",
        warmup_steps=max(1, steps // 10),
        seed=seed,
        progress=progress,
    )


def pretrain_supervised(
    vit: VisionTransformer,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig,
    *,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
) -> FitResult:
    """SUP-PRE: shape classification on the object-centric set with crop/flip/colour augmentation.

    ``out_dir``/``resume`` as in ``damokit.engine.fit`` (checkpoints, continuing from the last one).
    """
    head = nn.Linear(vit.embed_dim, int(labels.max()) + 1)
    model = nn.Sequential(vit, head)
    size = tuple(images.shape[-2:])

    def loss_fn(m: nn.Module, batch) -> torch.Tensor:
        x, y = batch
        x = color_jitter(random_resized_crop(x, size, (0.6, 1.0), mode="bilinear"), p=0.8)
        return F.cross_entropy(m(normalise(x)), y)

    return fit(model, (images, labels), loss_fn=loss_fn, config=config, out_dir=out_dir, resume=resume)


def pretrain_dino(
    vit: VisionTransformer,
    images: torch.Tensor,
    config: TrainConfig,
    *,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
) -> FitResult:
    """Label-free DINO on the object images; copies the EMA teacher's backbone weights into ``vit``.

    ``out_dir``/``resume`` as in ``damokit.engine.fit`` (checkpoints, continuing from the last one).
    """
    from damokit.nn.dino import DINO, MultiCropAugment, fit_dino

    size = images.shape[-1]
    augment = MultiCropAugment(global_size=(size, size), local_size=(size // 2, size // 2), n_local=2)
    steps = config.epochs * (len(images) // config.batch_size)
    if config.max_steps is not None:
        steps = min(steps, config.max_steps)
    dino = DINO(vit, total_steps=steps, augment=augment, out_dim=256, hidden_dim=128, bottleneck_dim=64)
    result = fit_dino(dino, images, config, out_dir=out_dir, resume=resume)
    vit.load_state_dict(dino.teacher_backbone().state_dict())
    return result


@dataclass(frozen=True)
class GateScores:
    nn_accuracy: float  # 1-NN shape accuracy of l2-normalised [CLS] (chance 0.25)
    kmeans_ari: float  # adjusted Rand index of k-means (K = 4) on them


@torch.no_grad()
def backbone_gate(vit: VisionTransformer, images: torch.Tensor, labels: torch.Tensor, *, seed: int = 0) -> GateScores:
    """Spec §9.2 gate: first half of ``images`` are queries, second half references."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    vit.eval()
    feats = F.normalize(torch.cat([vit.forward_features(normalise(x))[:, 0] for x in images.split(256)]), dim=1)
    half = len(feats) // 2
    nearest = (feats[:half] @ feats[half:].T).argmax(dim=1)
    nn_acc = (labels[half:][nearest] == labels[:half]).float().mean().item()
    km = KMeans(n_clusters=4, n_init=4, random_state=seed).fit(feats.numpy())
    return GateScores(nn_acc, float(adjusted_rand_score(labels.numpy(), km.labels_)))


_META = dict(task="backbone", paper="2112.01515", input_layout="(B, 3, H, W)")


@register_model(**_META)
def transfgu_vit_mini(**overrides) -> VisionTransformer:
    """Spec §9.2 backbone of the TransFGU miniature: dim 64, depth 4, 4 heads, conv stem, 8 x 8 tokens at 32 px."""
    dim = overrides.pop("embed_dim", 64)
    return VisionTransformer(
        **{"img_size": 32, "embed_dim": dim, "depth": 4, "num_heads": 4, "stem": ConvStem(dim), **overrides}
    )


@register_model(**_META, example_inputs=lambda g: (torch.rand(2, 3, 16, 16, generator=g),), per_sample=True)
def transfgu_vit_tiny(**overrides) -> VisionTransformer:
    """Test-sized conv-stem ViT: dim 16, depth 2, 2 heads."""
    dim = overrides.pop("embed_dim", 16)
    return VisionTransformer(
        **{"img_size": 16, "embed_dim": dim, "depth": 2, "num_heads": 2, "stem": ConvStem(dim), **overrides}
    )
