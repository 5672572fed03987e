"""Training and evaluation recipes for MotionRGBD on in-memory clips (the miniature and small real packs).

Everything trains through ``damokit.engine.fit``. The miniature recipe is spec §8.2: AdamW, one-cycle-like
cosine with 10 % warm-up, batch 16, label smoothing 0.1, gradient clip 5, distillation off for the first
epochs (the official warm-up), clip augmentation for split G.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from damokit.engine import FitResult, TrainConfig, fit
from damokit.video.motion_rgbd.capf import CAPFusion, capf_loss, capf_predict
from damokit.video.motion_rgbd.model import check_labels, motion_loss
from damokit.video.motion_rgbd.sampling import segment_indices

__all__ = ["MiniRecipe", "RECIPES", "ClipTensorDataset", "train_unimodal", "train_capf", "predict_logits", "accuracy"]


@dataclass(frozen=True)
class MiniRecipe:
    """Experiment settings of one run (architecture lives in the registered model)."""

    epochs: int = 15
    """Passes over the training clips (spec: 15-20 for split G, 10-15 for B)."""
    lr: float = 2e-3
    """AdamW learning rate (CAPF fine-tuning uses ``capf_lr``)."""
    capf_lr: float = 1e-3
    weight_decay: float = 0.05
    batch_size: int = 16
    warmup_fraction: float = 0.1
    """Share of the steps spent in linear LR warm-up (one-cycle style)."""
    grad_clip: float = 5.0
    distill_weight: float = 1.0
    """lambda_d of the recoupling distillation (spec §8.2 runs 0.1 and 1.0)."""
    distill_warmup_epochs: int = 3
    """Epochs with lambda_d = 0 at the start (official: during the LR warm-up epochs)."""
    frames: int = 16
    """Frames the network sees, sampled from the clip with the segment rule."""
    augment: bool = False
    """Random translation by up to 2 px and +-10 % brightness/contrast per clip (split G)."""
    seed: int = 0


RECIPES: dict[str, MiniRecipe] = {
    "smoke": MiniRecipe(epochs=1, batch_size=4, distill_warmup_epochs=0, frames=8),
    "mini-g": MiniRecipe(epochs=15, augment=True),
    "mini-b": MiniRecipe(epochs=12),
}


class ClipTensorDataset(Dataset):
    """In-memory clips (one or two modalities) sampled to ``frames`` per item.

    Items are ``(rgb, depth, label)`` with ``None`` dropped for a missing modality. At train time frames are
    drawn at random within segments (torch's global RNG, which the engine checkpoints) and the optional
    augmentation is applied; at test time the segment middles are used.

    Shapes:
        rgb: (N, 3, T_raw, H, W), depth: (N, 1, T_raw, H, W), labels: (N,)
    """

    def __init__(
        self,
        labels: torch.Tensor,
        *,
        rgb: torch.Tensor | None = None,
        depth: torch.Tensor | None = None,
        frames: int = 16,
        train: bool = False,
        augment: bool = False,
    ):
        clips = [c for c in (rgb, depth) if c is not None]
        if not clips:
            raise ValueError("give at least one modality (rgb or depth)")
        for name, c in (("rgb", rgb), ("depth", depth)):
            if c is not None and (c.ndim != 5 or c.shape[0] != len(labels)):
                raise ValueError(f"{name} clips must be (N={len(labels)}, C, T, H, W), got {tuple(c.shape)}")
        if rgb is not None and depth is not None and rgb.shape[2:] != depth.shape[2:]:
            raise ValueError(f"RGB and depth clips are not paired: {tuple(rgb.shape)} vs {tuple(depth.shape)}")
        self.rgb, self.depth, self.labels = rgb, depth, labels.long()
        self.frames, self.train, self.augment = frames, train, augment

    def __len__(self) -> int:
        return len(self.labels)

    def _transform(self, clip: torch.Tensor, idx: torch.Tensor, shift: torch.Tensor, gain: torch.Tensor):
        clip = clip[:, idx]  # (C, T, H, W)
        if self.augment and self.train:
            dy, dx = int(shift[0]), int(shift[1])
            padded = torch.nn.functional.pad(clip, (2, 2, 2, 2), mode="replicate")
            H, W = clip.shape[-2:]
            clip = padded[..., 2 + dy : 2 + dy + H, 2 + dx : 2 + dx + W]
            clip = ((clip - 0.5) * gain[0] + 0.5 + (gain[1] - 1)).clamp(0, 1)
        return clip

    def __getitem__(self, i: int):
        raw = (self.rgb if self.rgb is not None else self.depth).shape[2]
        idx = segment_indices(raw, self.frames, train=self.train)
        shift = torch.randint(-2, 3, (2,))
        gain = 1 + (torch.rand(2) - 0.5) * 0.2  # contrast, brightness within +-10 %
        # the same frames and augmentation for both modalities, so they stay registered
        out = [self._transform(c[i], idx, shift, gain) for c in (self.rgb, self.depth) if c is not None]
        return (*out, self.labels[i])


def _config(recipe: MiniRecipe, n_train: int, lr: float, progress: bool | None) -> TrainConfig:
    steps = recipe.epochs * (n_train // recipe.batch_size)
    return TrainConfig(
        epochs=recipe.epochs, batch_size=recipe.batch_size, lr=lr, optimizer="adamw",
        weight_decay=recipe.weight_decay, schedule="cosine", warmup_steps=max(1, int(recipe.warmup_fraction * steps)),
        grad_clip=recipe.grad_clip, seed=recipe.seed, progress=progress, restore_best=False,
    )  # fmt: skip


class _DistillRamp:
    """lambda_d as a function of the optimizer step: 0 during the first epochs, then the recipe's weight."""

    def __init__(self, recipe: MiniRecipe, steps_per_epoch: int):
        self.start = recipe.distill_warmup_epochs * steps_per_epoch
        self.weight, self.step = recipe.distill_weight, 0

    def __call__(self) -> float:
        return self.weight if self.step >= self.start else 0.0

    def after_step(self, model: nn.Module, step: int) -> None:
        self.step = step + 1


def train_unimodal(
    model: nn.Module,
    train_set: ClipTensorDataset,
    recipe: MiniRecipe,
    *,
    out_dir: str | Path | None = None,
    progress: bool | None = None,
) -> FitResult:
    """Train a unimodal network (MotionRGBDNet or the C3D baseline) on single-modality items ``(clip, label)``."""
    ramp = _DistillRamp(recipe, len(train_set) // recipe.batch_size)

    def loss_fn(m: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
        clip, labels = batch
        return motion_loss(m(clip), labels, distill_weight=ramp())

    return fit(
        model, train_set, loss_fn=loss_fn, config=_config(recipe, len(train_set), recipe.lr, progress),
        out_dir=out_dir, after_step=ramp.after_step, run_config={"recipe": dataclasses.asdict(recipe)},
    )  # fmt: skip


def train_capf(
    model: CAPFusion,
    train_set: ClipTensorDataset,
    recipe: MiniRecipe,
    *,
    bce_weight: float = 0.1,
    mse_weight: float = 0.1,
    out_dir: str | Path | None = None,
    progress: bool | None = None,
) -> FitResult:
    """Fine-tune CAPF end to end on paired items ``(rgb, depth, label)`` (spec §8.2 loss weights by default)."""
    ramp = _DistillRamp(dataclasses.replace(recipe, distill_warmup_epochs=0), len(train_set) // recipe.batch_size)

    def loss_fn(m: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
        rgb, depth, labels = batch
        return capf_loss(m(rgb, depth), labels, bce_weight=bce_weight, mse_weight=mse_weight, distill_weight=ramp())

    return fit(
        model, train_set, loss_fn=loss_fn, config=_config(recipe, len(train_set), recipe.capf_lr, progress),
        out_dir=out_dir, after_step=ramp.after_step, run_config={"recipe": dataclasses.asdict(recipe)},
    )  # fmt: skip


@torch.no_grad()
def predict_logits(model: nn.Module, dataset: ClipTensorDataset, *, batch_size: int = 64, rule: str = "fused+unimodal"):
    """Class scores (N, K) in eval mode; CAPF scores follow one fixed ``rule``."""
    model.eval()
    outs = []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
        inputs = [torch.stack(parts) for parts in zip(*(item[:-1] for item in items))]
        out = model(*inputs)
        if isinstance(model, CAPFusion):
            outs.append(capf_predict(out, rule))
        else:
            outs.append(out if isinstance(out, torch.Tensor) else out.logits)
    return torch.cat(outs)


def accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    check_labels(labels, scores.shape[1])
    return 100.0 * (scores.argmax(dim=1) == labels).float().mean().item()
