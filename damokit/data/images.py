"""Small image-classification sets as float tensors: the bundled packs and scikit-learn's digits.

Every loader returns an ``ImageSet`` (NCHW float32 images in [0, 1], int64 labels, class names). Nothing
is read at import; the packs are checksum-verified by ``damokit.data.load_npz``. Splits and subsets come
from a seeded ``torch.Generator``, never from global random state.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from damokit.data.packs import load_npz

__all__ = [
    "ImageSet",
    "to_nchw_float",
    "load_mnist_test",
    "load_notmnist_test",
    "load_cifar10_mini",
    "load_digits",
    "seeded_split",
    "per_class_subset",
    "random_shift",
]


class ImageSet(NamedTuple):
    """Images ``x`` (N, C, H, W) float32 in [0, 1], labels ``y`` (N,) int64 and the class names."""

    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...]


def to_nchw_float(images) -> torch.Tensor:
    """uint8 images, (N, H, W) grey or (N, H, W, C) HWC, to float32 (N, C, H, W) in [0, 1]."""
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8:
        raise ValueError(f"images must be uint8, got {x.dtype}; convert or rescale them first")
    if x.ndim == 3:  # (N, H, W) -> (N, 1, H, W)
        x = x.unsqueeze(1)
    elif x.ndim == 4:  # (N, H, W, C) -> (N, C, H, W)
        x = x.permute(0, 3, 1, 2)
    else:
        raise ValueError(f"images must have shape (N, H, W) or (N, H, W, C), got {tuple(x.shape)}")
    return x.contiguous().float().div_(255.0)


def load_mnist_test() -> ImageSet:
    """The 10,000 MNIST test digits, (10000, 1, 28, 28)."""
    arrays = load_npz("images/mnist_test.npz")
    return ImageSet(to_nchw_float(arrays["x_test"]), torch.as_tensor(arrays["y_test"]), tuple("0123456789"))


def load_notmnist_test() -> ImageSet:
    """10,000 notMNIST letters A-J, (10000, 1, 28, 28), 1,000 per class."""
    arrays = load_npz("images/notmnist_test.npz")
    return ImageSet(to_nchw_float(arrays["x"]), torch.as_tensor(arrays["y"]), tuple(str(c) for c in arrays["classes"]))


def load_cifar10_mini(split: str = "train") -> ImageSet:
    """The class-balanced CIFAR-10 subset: ``split="train"`` (10,000) or ``"test"`` (2,000), (N, 3, 32, 32)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    arrays = load_npz("images/cifar10_mini.npz")
    classes = tuple(str(c) for c in arrays["classes"])
    return ImageSet(to_nchw_float(arrays[f"x_{split}"]), torch.as_tensor(arrays[f"y_{split}"]), classes)


def load_digits() -> ImageSet:
    """scikit-learn's 1,797 digits, (1797, 1, 8, 8), grey levels 0-16 rescaled to [0, 1]."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 8, 8) -> (N, 1, 8, 8)
    return ImageSet(x, torch.as_tensor(bunch.target, dtype=torch.int64), tuple("0123456789"))


def seeded_split(n: int, sizes: tuple[int, ...], seed: int) -> list[torch.Tensor]:
    """Disjoint index sets of the given sizes from a seeded permutation of ``range(n)``."""
    if any(s < 0 for s in sizes) or sum(sizes) > n:
        raise ValueError(f"sizes={sizes} must be >= 0 and sum to at most n={n}; lower them")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    bounds = torch.tensor((0, *sizes)).cumsum(0).tolist()
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def per_class_subset(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Indices of ``per_class`` random samples of every class (k-shot sampling), sorted.

    Raises:
        ValueError: a class has fewer than ``per_class`` samples.
    """
    labels = torch.as_tensor(labels)
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=gen)
    shuffled = labels[order]
    # rank of each sample within its class in the shuffled order, vectorized with a stable sort
    sort_idx = torch.sort(shuffled, stable=True).indices
    sorted_labels = shuffled[sort_idx]
    classes, counts = torch.unique_consecutive(sorted_labels, return_counts=True)
    if counts.min() < per_class:
        short = classes[counts.argmin()].item()
        raise ValueError(
            f"class {short} has {counts.min().item()} samples, fewer than per_class={per_class}; lower per_class"
        )
    starts = torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    rank = torch.arange(len(labels)) - starts
    keep = sort_idx[rank < per_class]
    return torch.sort(order[keep]).values


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Cyclic shift of each image by its own random (dy, dx) in [-max_shift, max_shift] (LOOK spec §5a).

    Shapes:
        x: (B, C, H, W) -> (B, C, H, W)
    """
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    B, C, H, W = x.shape
    dy, dx = torch.randint(-max_shift, max_shift + 1, (2, B), generator=generator, device=x.device)
    rows = (torch.arange(H, device=x.device) - dy[:, None]) % H  # (B, H): source row of each output row
    cols = (torch.arange(W, device=x.device) - dx[:, None]) % W  # (B, W)
    b = torch.arange(B, device=x.device)[:, None, None, None]
    c = torch.arange(C, device=x.device)[None, :, None, None]
    return x[b, c, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W)
