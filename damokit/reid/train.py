"""Supervised ReID fine-tuning (official ``transreid_pytorch`` recipe, spec §6) on ``damokit.engine.fit``.

Loss = ID cross-entropy on the post-BN logits + soft-margin batch-hard triplet on the pre-BN feature;
P x K identity batches; SGD with bias LR x2; per-epoch warm-up then a cosine on the absolute epoch index.

The engine draws its own batches and schedules the LR per step by name, so two pieces adapt the recipe:
``PKBatches`` is a dataset whose item i is a whole P x K batch (``fit`` runs it with ``batch_size=1``), and
``WarmupCosineSGD`` sets each group's LR from its own step counter inside ``step()`` (the counter lives in
the param group, so checkpoints keep it).

Deviations:
    * Images are resized once when loaded; augmentation (flip, pad 10 + random crop, random erasing with
      per-pixel normal values) runs batched on tensors in ``loss_fn`` and draws from torch's global RNG,
      which ``fit`` seeds and checkpoints.
    * An epoch has a fixed number of batches (total K-groups // P); when the official sampler's identities
      run out earlier, a fresh pass of the sampler tops the epoch up.
    * No mixed precision (CPU).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from damokit.engine import FitResult, TrainConfig, fit, module_device
from damokit.reid.metrics import ReIDScores, evaluate_features

__all__ = [
    "soft_margin_triplet",
    "reid_loss",
    "pk_epoch",
    "PKBatches",
    "warmup_cosine_factor",
    "WarmupCosineSGD",
    "reid_param_groups",
    "normalize_images",
    "train_augment",
    "ReIDRecipe",
    "train_supervised",
    "extract_features",
    "evaluate_model",
]


# ----------------------------------------------------------------------------------------------------------
# losses


def soft_margin_triplet(feat: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Batch-hard triplet with soft margin: ``mean(softplus(d_ap - d_an))`` on Euclidean distances.

    Per anchor the farthest positive and the closest negative of the batch (``hard_example_mining``);
    distances ``sqrt(clamp(d2, 1e-12))`` as the official ``euclidean_dist``.

    Shapes: ``feat (B, D)``, ``labels (B,)`` -> scalar.
    """
    d2 = feat.pow(2).sum(1, keepdim=True) + feat.pow(2).sum(1) - 2 * feat @ feat.T
    dist = d2.clamp(min=1e-12).sqrt()  # (B, B)
    pos = labels[:, None] == labels[None, :]
    if pos.all() or (pos.sum(1) < 2).all():
        raise ValueError("batch-hard triplet needs at least two images of one identity and two identities per batch")
    d_ap = dist.masked_fill(~pos, float("-inf")).max(1).values
    d_an = dist.masked_fill(pos, float("inf")).min(1).values
    return F.softplus(d_ap - d_an).mean()  # = SoftMarginLoss(d_an - d_ap, y=1)


def reid_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """``CE(classifier(BN(f)), y) + triplet(f, y)`` with weights 1 and 1 (no label smoothing)."""
    feat, logits = model(images)
    id_loss = F.cross_entropy(logits, labels)
    tri = soft_margin_triplet(feat, labels)
    return id_loss + tri, {"id": float(id_loss.detach()), "tri": float(tri.detach())}


# ----------------------------------------------------------------------------------------------------------
# P x K sampling


def pk_epoch(pids: torch.Tensor, P: int, K: int, generator: torch.Generator) -> list[list[int]]:
    """One epoch of the official ``RandomIdentitySampler``: batches of P identities x K images.

    Each identity's images are shuffled (padded by resampling to K when fewer) and cut into K-groups;
    batches take one group from each of P distinct identities drawn at random until fewer than P
    identities have groups left.
    """
    groups: dict[int, list[list[int]]] = {}
    for pid in torch.unique(pids).tolist():
        idx = torch.nonzero(pids == pid).flatten()
        if len(idx) < K:  # sample with replacement up to K
            idx = idx[torch.randint(len(idx), (K,), generator=generator)]
        idx = idx[torch.randperm(len(idx), generator=generator)].tolist()
        groups[pid] = [idx[i : i + K] for i in range(0, len(idx) - K + 1, K)]
    batches = []
    available = sorted(groups)
    while len(available) >= P:
        chosen = [available[i] for i in torch.randperm(len(available), generator=generator)[:P].tolist()]
        batches.append([i for pid in chosen for i in groups[pid].pop()])
        available = [pid for pid in available if groups[pid]]
    return batches


class PKBatches(Dataset):
    """Item i is batch ``i mod n`` of epoch ``i // n``: ``(images (P*K, 3, H, W), labels (P*K,))``.

    ``n = batches_per_epoch`` (default: total K-groups // P). Epochs are drawn from ``seed + epoch``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        P: int,
        K: int,
        epochs: int,
        seed: int = 0,
        batches_per_epoch: int | None = None,
    ):
        n_ids = int(torch.unique(labels).numel())
        if n_ids < P:
            raise ValueError(f"P={P} identities per batch but the training set has only {n_ids}; lower P")
        if K < 2:
            raise ValueError(f"K must be >= 2 images per identity for the triplet loss, got {K}")
        self.images, self.labels, self.P, self.K, self.seed = images, labels, P, K, seed
        counts = torch.bincount(torch.unique(labels, return_inverse=True)[1])
        n_groups = int(torch.clamp(counts // K, min=1).sum())
        self.batches_per_epoch = batches_per_epoch or max(1, n_groups // P)
        self.epochs = epochs
        self._cache: tuple[int, list[list[int]]] | None = None

    def __len__(self) -> int:
        return self.epochs * self.batches_per_epoch

    def _epoch(self, epoch: int) -> list[list[int]]:
        if self._cache is None or self._cache[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            batches: list[list[int]] = []
            while len(batches) < self.batches_per_epoch:
                batches += pk_epoch(self.labels, self.P, self.K, g)
            self._cache = (epoch, batches[: self.batches_per_epoch])
        return self._cache[1]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.tensor(self._epoch(i // self.batches_per_epoch)[i % self.batches_per_epoch])
        return self.images[idx], self.labels[idx]


def _first(items: Sequence) -> object:
    return items[0]


# ----------------------------------------------------------------------------------------------------------
# LR schedule


def warmup_cosine_factor(
    t: int, *, epochs: int = 120, warmup: int = 20, warmup_factor: float = 0.01, floor: float = 0.002
) -> float:
    """LR multiplier at 0-based epoch ``t``: linear warm-up from ``warmup_factor``, then a cosine on the
    absolute index (official ``WarmupCosineAnnealingLR``-style ``lr(t)``, spec §6)."""
    if t < warmup:
        return warmup_factor + t * (1 - warmup_factor) / warmup
    return floor + 0.5 * (1 - floor) * (1 + math.cos(math.pi * t / epochs))


class WarmupCosineSGD(torch.optim.SGD):
    """SGD whose ``step()`` first sets every group's LR to ``initial_lr * warmup_cosine_factor(epoch)``.

    ``steps_per_epoch`` turns the group's step counter into the epoch index; pass ``schedule="constant"``
    to ``fit`` (its per-step LR factor is then 1 and is overwritten here).
    """

    def __init__(self, params, lr: float, *, steps_per_epoch: int, epochs: int, warmup: int, **kwargs):
        super().__init__(params, lr=lr, **kwargs)
        self.steps_per_epoch, self.epochs, self.warmup = steps_per_epoch, epochs, warmup
        for group in self.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group.setdefault("sched_step", 0)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            epoch = group["sched_step"] // self.steps_per_epoch
            group["lr"] = group["initial_lr"] * warmup_cosine_factor(epoch, epochs=self.epochs, warmup=self.warmup)
            group["sched_step"] += 1
        return super().step(closure)


def reid_param_groups(model: nn.Module, base_lr: float, weight_decay: float, bias_lr_factor: float = 2.0) -> list[dict]:
    """Official ``make_optimizer``: biases at ``bias_lr_factor`` x LR; weight decay on every parameter."""
    groups = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            lr = base_lr * bias_lr_factor if "bias" in name else base_lr
            groups.append({"params": [p], "lr": lr, "weight_decay": weight_decay})
    return groups


# ----------------------------------------------------------------------------------------------------------
# augmentation


def normalize_images(x: torch.Tensor, mean: float = 0.5, std: float = 0.5) -> torch.Tensor:
    """uint8 or [0, 1] float images -> normalised float (ReID statistics 0.5 / 0.5)."""
    if x.dtype == torch.uint8:
        x = x.float() / 255
    return (x - mean) / std


def train_augment(
    x: torch.Tensor, *, flip_p: float = 0.5, pad: int = 10, erase_p: float = 0.5, generator=None
) -> torch.Tensor:
    """Flip, zero-pad + random crop back, normalise 0.5/0.5, random erasing (one box of normal noise).

    Shapes: ``(B, 3, H, W)`` uint8 or float in [0, 1] -> normalised float ``(B, 3, H, W)``.
    """
    x = x.float() / 255 if x.dtype == torch.uint8 else x
    B, C, H, W = x.shape
    flip = torch.rand(B, generator=generator) < flip_p
    x = torch.where(flip.view(B, 1, 1, 1).to(x.device), x.flip(-1), x)
    if pad:
        xp = F.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (B,), generator=generator)
        ox = torch.randint(0, 2 * pad + 1, (B,), generator=generator)
        rows = (oy[:, None] + torch.arange(H)).to(x.device)  # (B, H)
        cols = (ox[:, None] + torch.arange(W)).to(x.device)  # (B, W)
        b = torch.arange(B, device=x.device)[:, None, None]
        x = xp.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (B, C, H, W)
    x = normalize_images(x)
    if erase_p > 0:  # timm RandomErasing(mode="pixel"): area 2%..1/3, log-aspect in (0.3, 1/0.3)
        area = (0.02 + torch.rand(B, generator=generator) * (1 / 3 - 0.02)) * H * W
        aspect = torch.exp(math.log(0.3) + torch.rand(B, generator=generator) * 2 * math.log(1 / 0.3))
        h = torch.sqrt(area * aspect).round().clamp(1, H).long()
        w = torch.sqrt(area / aspect).round().clamp(1, W).long()
        top = (torch.rand(B, generator=generator) * (H - h + 1)).long()
        left = (torch.rand(B, generator=generator) * (W - w + 1)).long()
        apply = torch.rand(B, generator=generator) < erase_p
        ys, xs = torch.arange(H), torch.arange(W)
        box = ((ys[None, :] >= top[:, None]) & (ys[None, :] < (top + h)[:, None]))[:, :, None] & (
            (xs[None, :] >= left[:, None]) & (xs[None, :] < (left + w)[:, None])
        )[:, None, :]  # (B, H, W)
        mask = (box & apply[:, None, None]).unsqueeze(1).to(x.device)
        noise = torch.randn(x.shape, generator=generator).to(x.device)
        x = torch.where(mask, noise, x)
    return x


# ----------------------------------------------------------------------------------------------------------
# recipe


@dataclass(frozen=True)
class ReIDRecipe:
    """Supervised fine-tuning settings (defaults: official ``vit_small.yml``)."""

    epochs: int = 120
    warmup_epochs: int = 20
    base_lr: float = 4e-4
    bias_lr_factor: float = 2.0
    weight_decay: float = 1e-4
    momentum: float = 0.9
    P: int = 16
    """Identities per batch."""
    K: int = 4
    """Images per identity in a batch."""
    batches_per_epoch: int | None = None
    """None: total K-groups // P, as the official sampler."""
    erase_p: float = 0.5
    seed: int = 0


def train_supervised(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    recipe: ReIDRecipe = ReIDRecipe(),
    *,
    out_dir: str | None = None,
    progress: bool | None = False,
    max_steps: int | None = None,
) -> FitResult:
    """Fine-tune a ``ReIDModel`` on ``images`` ((N, 3, H, W) at the model's size) with 0-based ``labels``.

    Raises:
        ValueError: images of another size or channel count, labels outside the classifier's range.
    """
    H, W = model.img_size
    if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (H, W):
        raise ValueError(f"training images must be (N, 3, {H}, {W}) for this model, got {tuple(images.shape)}")
    n_cls = model.classifier.out_features
    if labels.min() < 0 or labels.max() >= n_cls:
        raise ValueError(
            f"labels must lie in [0, {n_cls}) (the classifier's size), got [{labels.min()}, {labels.max()}]"
        )
    data = PKBatches(images, labels, recipe.P, recipe.K, recipe.epochs, recipe.seed, recipe.batches_per_epoch)
    groups = reid_param_groups(model, recipe.base_lr, recipe.weight_decay, recipe.bias_lr_factor)
    optimizer = WarmupCosineSGD(
        groups,
        lr=recipe.base_lr,
        momentum=recipe.momentum,
        steps_per_epoch=data.batches_per_epoch,
        epochs=recipe.epochs,
        warmup=recipe.warmup_epochs,
    )
    erase_p = recipe.erase_p

    def loss_fn(m: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = batch
        return reid_loss(m, train_augment(x, erase_p=erase_p), y)

    config = TrainConfig(
        epochs=1, batch_size=1, shuffle=False, seed=recipe.seed, progress=progress, max_steps=max_steps
    )
    return fit(model, data, loss_fn=loss_fn, config=config, optimizer=optimizer, collate_fn=_first, out_dir=out_dir)


@torch.no_grad()
def extract_features(
    fn: nn.Module, images: torch.Tensor, batch_size: int = 256, *, normalize: bool = True
) -> torch.Tensor:
    """Run ``fn`` (e.g. ``model.features``) in eval mode over uint8/float images, normalised 0.5/0.5.

    Shapes: ``(N, 3, H, W) -> (N, D)``.
    """
    module = fn.__self__ if hasattr(fn, "__self__") else fn
    was_training = module.training
    module.eval()
    device = module_device(module)
    feats = [fn((normalize_images(images[s : s + batch_size]) if normalize else images[s : s + batch_size]).to(device))
             for s in range(0, len(images), batch_size)]  # fmt: skip
    module.train(was_training)
    return torch.cat(feats).cpu()


def evaluate_model(model: nn.Module, query: dict[str, torch.Tensor], gallery: dict[str, torch.Tensor]) -> ReIDScores:
    """mAP/CMC of ``model.features`` (pre-BN, L2-normalised, squared Euclidean) on query vs gallery dicts
    holding ``images``, ``pids``, ``camids``."""
    if len(query["images"]) == 0:
        raise ValueError("the query set is empty; pass at least one query image")
    qf = extract_features(model.features, query["images"])
    gf = extract_features(model.features, gallery["images"])
    return evaluate_features(qf, gf, query["pids"], gallery["pids"], query["camids"], gallery["camids"])
