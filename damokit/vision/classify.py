"""Image classification around the vision backbones: data (named packs or an image folder), training
through ``damokit.engine.fit``, accuracy and confusion matrices. Used by ``damokit vision`` and the ELSA
reproduction.

An image folder is ``DIR/<class>/<image>`` (then a seeded, stratified hold-out is the test split) or
``DIR/train/<class>/...`` plus ``DIR/test/<class>/...``. Images are read with Pillow (a dependency of
matplotlib), converted to RGB and resized to ``img_size``×``img_size``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from damokit.engine import FitResult, TrainConfig, fit

__all__ = [
    "NAMED_DATA",
    "IMAGE_SUFFIXES",
    "ClassificationData",
    "load_classification_data",
    "load_image_folder",
    "shift_flip_loss",
    "predict",
    "confusion_matrix",
    "plot_confusion",
    "train_classifier",
]

NAMED_DATA = ("digits", "cifar10_mini")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
CIFAR_MEAN = (0.4934, 0.4831, 0.4470)  # cifar10_mini pack README, train split statistics
CIFAR_STD = (0.2460, 0.2441, 0.2616)


class ClassificationData(NamedTuple):
    """Train and test images (N, C, H, W) float32, labels (N,) int64, and the class names."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]


def _stratified_split(y: torch.Tensor, n_train: int | float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(
        torch.arange(len(y)).numpy(), train_size=n_train, stratify=y.numpy(), random_state=seed
    )
    return torch.as_tensor(train), torch.as_tensor(test)


def load_image_folder(
    root: str | os.PathLike, img_size: int = 32
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Every image under ``root/<class>/``: (N, 3, img_size, img_size) floats in [0, 1], labels, class names.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no class sub-folders, or a class folder without images.
    """
    from PIL import Image

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    if not classes:
        raise ValueError(f"image folder {root} has no class sub-folders; expected {root}/<class>/<image>")
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"class folder {root / name} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        for path in files:
            with Image.open(path) as im:
                im = im.convert("RGB").resize((img_size, img_size), Image.Resampling.BILINEAR)
                images.append(torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(img_size, img_size, 3))
            labels.append(label)
    x = torch.stack(images).permute(0, 3, 1, 2).float() / 255.0  # (N, H, W, 3) uint8 -> (N, 3, H, W)
    return x, torch.tensor(labels), classes


def load_classification_data(
    spec: str, *, img_size: int = 32, seed: int = 0, test_fraction: float = 0.2
) -> ClassificationData:
    """``digits`` (1000 / 797 stratified by ``seed``), ``cifar10_mini`` (10k / 2k, normalised) or an image folder.

    Raises:
        FileNotFoundError: ``spec`` is neither a named set nor an existing folder.
        ValueError: see ``load_image_folder``; train and test folders with different classes.
    """
    from damokit.data.images import load_cifar10_mini, load_digits

    if spec == "digits":
        x, y, classes = load_digits()
        train, test = _stratified_split(y, 1000, seed)
        return ClassificationData(x[train], y[train], x[test], y[test], classes)
    if spec == "cifar10_mini":
        tr, te = load_cifar10_mini("train"), load_cifar10_mini("test")
        mean, std = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
        return ClassificationData((tr.x - mean) / std, tr.y, (te.x - mean) / std, te.y, tr.classes)
    root = Path(spec)
    if not root.is_dir():
        raise FileNotFoundError(f"--data {spec!r} is neither one of {NAMED_DATA} nor an existing image folder")
    if (root / "train").is_dir() and (root / "test").is_dir():
        x_tr, y_tr, classes = load_image_folder(root / "train", img_size)
        x_te, y_te, test_classes = load_image_folder(root / "test", img_size)
        if test_classes != classes:
            raise ValueError(
                f"{root}/train and {root}/test must hold the same class folders: {classes} vs {test_classes}"
            )
        return ClassificationData(x_tr, y_tr, x_te, y_te, classes)
    x, y, classes = load_image_folder(root, img_size)
    train, test = _stratified_split(y, 1.0 - test_fraction, seed)
    return ClassificationData(x[train], y[train], x[test], y[test], classes)


def shift_flip_loss(max_shift: int = 0, flip: bool = False):
    """Cross-entropy ``loss_fn(model, (x, y))`` for ``fit`` with a random cyclic shift of the batch by up to
    ``max_shift`` pixels and an optional random horizontal flip (one draw per batch).

    The draws come from the global RNG, which ``fit`` seeds from ``config.seed`` and stores in its
    checkpoints, so a resumed run continues exactly as an uninterrupted one.
    """

    def loss_fn(model: nn.Module, batch) -> torch.Tensor:
        x, y = batch
        if max_shift:
            dy, dx = torch.randint(-max_shift, max_shift + 1, (2,)).tolist()
            x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        if flip and torch.rand(()) < 0.5:
            x = x.flip(3)
        return F.cross_entropy(model(x), y)

    return loss_fn


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Predicted classes (N,) in eval mode."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) counts, rows = true class, columns = predicted class."""
    return torch.bincount(target * num_classes + pred, minlength=num_classes**2).view(num_classes, num_classes)


def plot_confusion(cm: torch.Tensor, classes: tuple[str, ...], path: Path, title: str = "") -> Path:
    """Row-normalised confusion matrix as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = cm.float() / cm.sum(1, keepdim=True).clamp(min=1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * len(classes), 0.8 + 0.5 * len(classes)))
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            if cm[i, j]:
                ax.text(
                    j, i, int(cm[i, j]), ha="center", va="center", fontsize=6, color="k" if rates[i, j] < 0.6 else "w"
                )
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def train_classifier(
    model: nn.Module,
    data: ClassificationData,
    config: TrainConfig,
    *,
    max_shift: int = 0,
    flip: bool = False,
    val_fraction: float = 0.1,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    run_config: dict | None = None,
) -> FitResult:
    """Train with cross-entropy through ``fit``, monitoring accuracy on a stratified ``val_fraction`` of the
    training images (the test split is never seen; the best validation epoch's weights are kept)."""
    train, val = _stratified_split(data.y_train, 1.0 - val_fraction, config.seed)

    def accuracy(m: nn.Module, batch) -> dict[str, torch.Tensor]:
        x, y = batch
        logits = m(x)
        return {"loss": F.cross_entropy(logits, y), "accuracy": (logits.argmax(1) == y).float().mean()}

    return fit(
        model,
        (data.x_train[train], data.y_train[train]),
        loss_fn=shift_flip_loss(max_shift, flip),
        config=config,
        val_set=(data.x_train[val], data.y_train[val]),
        eval_fn=accuracy,
        out_dir=out_dir,
        resume=resume,
        run_config=run_config,
    )
