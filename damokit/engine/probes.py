"""Transfer evaluation shared by the pre-training and fine-tuning methods: frozen features and probes.

* ``extract_features``: any backbone, eval mode, no grad, batched, with a progress bar.
* ``linear_probe``: scikit-learn ``LogisticRegression`` (L-BFGS) on L2-normalised frozen features. Chosen
  over a torch linear layer trained with ``fit`` because the problem is convex and small (<= 10^4 x 512): the
  solver reaches the optimum deterministically with no learning rate, epochs or early stopping to tune, so a
  probe measures the features and not the probe's optimisation budget. ``C=10`` follows the LOOK spec §5a.
* ``knn_probe``: scikit-learn ``KNeighborsClassifier``; on L2-normalised features Euclidean neighbours are
  cosine neighbours.
* ``few_shot_probe``: k labelled samples per class drawn per seed, probe accuracy per seed.
* ``finetune_accuracy`` / ``accuracy``: end-to-end fine-tuning of a backbone + linear head on ``engine.fit``.
* ``mean_std`` / ``paired_differences``: mean +- std over seeds and same-seed differences.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

from damokit.engine.loop import TrainConfig, fit

__all__ = [
    "extract_features",
    "linear_probe",
    "knn_probe",
    "few_shot_probe",
    "accuracy",
    "finetune_accuracy",
    "LinearHead",
    "MeanStd",
    "mean_std",
    "paired_differences",
]

FeatureFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def _default_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``forward_features`` when the model has it (timm convention), else the model's output."""
    fn = getattr(model, "forward_features", None)
    return fn(x) if callable(fn) else model(x)


@torch.no_grad()
def extract_features(
    model: nn.Module,
    data: torch.Tensor | Dataset | DataLoader,
    *,
    layer: FeatureFn | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Features of every input, in order, from ``model`` in eval mode (its mode is restored afterwards).

    Args:
        model: any backbone.
        data: images (N, ...), a dataset whose items are ``x`` or ``(x, ...)``, or a ready DataLoader.
        layer: ``layer(model, x) -> (B, D)``; default ``model.forward_features`` or ``model(x)``.
        batch_size: images per forward pass (ignored for a DataLoader).
        device: where to run (default: the model's device).
        progress: show a tqdm bar.

    Returns:
        (N, D) float features on the CPU; a (B, ...) output is flattened to (B, D).
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    layer = layer or _default_features
    if isinstance(data, torch.Tensor):
        data = TensorDataset(data)
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=batch_size, shuffle=False)
    params = next(model.parameters(), None)
    device = torch.device(device) if device is not None else (params.device if params is not None else "cpu")
    was_training = model.training
    model.eval()
    out = []
    try:
        for batch in tqdm(loader, desc="features", disable=not progress, leave=False):
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            out.append(layer(model, x.to(device)).flatten(1).float().cpu())  # (B, D)
    finally:
        model.train(was_training)
    if not out:
        raise ValueError("data is empty; nothing to extract features from")
    return torch.cat(out)


def _prepare(features: torch.Tensor, normalize: bool):
    feats = torch.as_tensor(features, dtype=torch.float32)
    if feats.ndim != 2:
        raise ValueError(f"features must be 2-D (N, D), got shape {tuple(feats.shape)}")
    if normalize:
        feats = F.normalize(feats, dim=1)
    return feats.numpy().astype("float64")


def _check_pair(feats: torch.Tensor, labels: torch.Tensor, name: str) -> None:
    if len(feats) != len(labels):
        raise ValueError(f"{name}: {len(feats)} feature rows but {len(labels)} labels; they must match")


def _fit_and_score(clf, train_feats, train_labels, test_feats, test_labels, normalize: bool) -> float:
    """Fit a scikit-learn classifier on the probe-train features; its test accuracy."""
    _check_pair(train_feats, train_labels, "train")
    _check_pair(test_feats, test_labels, "test")
    clf.fit(_prepare(train_feats, normalize), torch.as_tensor(train_labels).numpy())
    pred = clf.predict(_prepare(test_feats, normalize))
    return float((pred == torch.as_tensor(test_labels).numpy()).mean())


def linear_probe(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    C: float = 10.0,
    normalize: bool = True,
    max_iter: int = 2000,
) -> float:
    """Test accuracy of a multinomial logistic regression fit on frozen features.

    Args:
        C: inverse L2 strength (LOOK spec §5a: 10).
        normalize: L2-normalise the features first (spec §4).
    """
    from sklearn.linear_model import LogisticRegression

    if C <= 0:
        raise ValueError(f"C must be > 0, got {C}")
    clf = LogisticRegression(C=C, max_iter=max_iter)
    return _fit_and_score(clf, train_feats, train_labels, test_feats, test_labels, normalize)


def knn_probe(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    k: int = 5,
    normalize: bool = True,
) -> float:
    """Test accuracy of a k-nearest-neighbour classifier (majority vote) on frozen features."""
    from sklearn.neighbors import KNeighborsClassifier

    if not 1 <= k <= len(train_feats):
        raise ValueError(f"k must be in [1, {len(train_feats)}] (the number of probe-train samples), got {k}")
    clf = KNeighborsClassifier(n_neighbors=k)
    return _fit_and_score(clf, train_feats, train_labels, test_feats, test_labels, normalize)


def few_shot_probe(
    pool_feats: torch.Tensor,
    pool_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    shots: int,
    seeds: Sequence[int],
    probe: str = "linear",
    **probe_kw: Any,
) -> list[float]:
    """Accuracy per seed of a probe trained on ``shots`` labelled samples per class drawn from the pool."""
    from damokit.data.images import per_class_subset

    probes = {"linear": linear_probe, "knn": knn_probe}
    if probe not in probes:
        raise ValueError(f"probe must be one of {sorted(probes)}, got {probe!r}")
    accs = []
    for seed in seeds:
        idx = per_class_subset(pool_labels, shots, seed)
        accs.append(probes[probe](pool_feats[idx], pool_labels[idx], test_feats, test_labels, **probe_kw))
    return accs


class LinearHead(nn.Module):
    """A backbone's features followed by a linear classifier (``forward_features`` when it has one)."""

    def __init__(self, backbone: nn.Module, feat_dim: int, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(feat_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(_default_features(self.backbone, x))


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model(x)`` logits in eval mode (mode restored)."""
    logits = extract_features(model, x, layer=lambda m, b: m(b), batch_size=batch_size)
    return float((logits.argmax(1) == torch.as_tensor(y)).float().mean())


def finetune_accuracy(
    backbone: nn.Module,
    feat_dim: int,
    num_classes: int,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    config: TrainConfig,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> float:
    """Fine-tune ``backbone`` + a fresh linear head end to end with cross-entropy; return test accuracy."""
    model = LinearHead(backbone, feat_dim, num_classes)
    aug = augment or (lambda x: x)

    def loss_fn(m: nn.Module, batch) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(m(aug(x)), y)

    fit(model, train, loss_fn=loss_fn, config=config)
    return accuracy(model, *test)


class MeanStd(NamedTuple):
    """Mean and sample standard deviation over seeds."""

    mean: float
    std: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.std:.3f}"


def mean_std(values: Sequence[float]) -> MeanStd:
    """Mean and sample std (ddof=1; 0 for one value) of per-seed results."""
    if len(values) == 0:
        raise ValueError("values is empty; pass one result per seed")
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return MeanStd(mean, math.sqrt(var), n)


def paired_differences(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Same-seed differences ``a[i] - b[i]`` (paired differences are steadier than per-method stds)."""
    if len(a) != len(b):
        raise ValueError(f"paired results need equal lengths (one per seed), got {len(a)} and {len(b)}")
    return [x - y for x, y in zip(a, b)]
