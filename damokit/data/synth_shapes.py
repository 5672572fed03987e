"""SynthShapes: seeded, vectorised scenes of textured shapes for the TransFGU miniature (spec §9.1).

Class = shape (disk, rotated square, rotated triangle, ring); appearance is independent of class: every object
is filled with a texture from a shared pool (solid, stripes, checkerboard, dots) in two random colours. So
low-level appearance does not reveal the class, which is the setting where top-down (image-level concepts)
should beat bottom-up clustering of local features.

- ``make_scenes``: 2-4 occluding objects of radius 7-11 px, background about 60 % of the pixels; masks hold
  0 for background and 1..4 for the shapes.
- ``make_objects``: one object per image (radius 5-13 px), the backbone's pre-training set, label 0..3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["SHAPES", "SynthShapes", "make_scenes", "make_objects"]

SHAPES = ("disk", "square", "triangle", "ring")


@dataclass
class SynthShapes:
    images: torch.Tensor  # (N, 3, H, W) float in [0, 1]
    masks: torch.Tensor  # (N, H, W) int64: 0 background, 1..4 shapes (scenes); all -1 for object images
    labels: torch.Tensor  # (N,) shape of the (largest visible) object, 0..3


def _shape_mask(shape: np.ndarray, cx, cy, radius, angle, yy, xx) -> np.ndarray:
    """Boolean (n, H, W) masks; every argument but the grids is (n,)."""
    dx, dy = xx[None] - cx[:, None, None], yy[None] - cy[:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    r = radius[:, None, None]
    dist = np.sqrt(u**2 + v**2)
    masks = np.stack([
        dist <= r,  # disk
        np.maximum(np.abs(u), np.abs(v)) <= 0.8 * r,  # square
        (v <= r / 2) & (np.sqrt(3) * u - v <= r) & (-np.sqrt(3) * u - v <= r),  # triangle, circumradius r
        (dist <= r) & (dist >= 0.55 * r),  # ring
    ])  # fmt: skip
    return np.take_along_axis(masks, shape[None, :, None, None], 0)[0]


def _textures(rng: np.random.Generator, n: int, yy, xx) -> np.ndarray:
    """(n, 3, H, W) fills: solid, stripes, checkerboard or dots, each in two random colours."""
    c1, c2 = rng.uniform(0, 1, (2, n, 3, 1, 1)).astype(np.float32)
    kind = rng.integers(0, 4, n)[:, None, None]
    theta = rng.uniform(0, np.pi, (n, 1, 1))
    freq = rng.uniform(0.15, 0.35, (n, 1, 1))
    stripes = np.sin(2 * np.pi * freq * (np.cos(theta) * xx + np.sin(theta) * yy)) > 0
    period = rng.integers(2, 5, (n, 1, 1))
    checker = ((xx // period + yy // period) % 2).astype(bool)
    dots = rng.uniform(size=(n,) + xx.shape) < 0.3
    second = np.select([kind == 0, kind == 1, kind == 2], [np.zeros_like(dots), stripes, checker], dots)
    return np.where(second[:, None], c2, c1)


def _background(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    base = rng.uniform(0.1, 0.9, (n, 3, 1, 1)).astype(np.float32)
    grid = torch.from_numpy(rng.normal(0, 0.12, (n, 3, 4, 4)).astype(np.float32))
    return base + F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=True).numpy()


def _render(rng, n: int, objects: np.ndarray, radius_range, centre_range, size: int) -> SynthShapes:
    coords = np.arange(size, dtype=np.float32)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    images = _background(rng, n, size)
    masks = np.zeros((n, size, size), dtype=np.int64)
    for layer in range(objects.max()):  # later objects occlude earlier ones
        active = objects > layer
        shape = rng.integers(0, 4, n)
        cx, cy = rng.uniform(*centre_range, (2, n))
        radius = rng.uniform(*radius_range, n)
        mask = _shape_mask(shape, cx, cy, radius, rng.uniform(0, 2 * np.pi, n), yy, xx) & active[:, None, None]
        images = np.where(mask[:, None], _textures(rng, n, yy, xx), images)
        masks = np.where(mask, shape[:, None, None] + 1, masks)
    noise = rng.normal(0, 0.03, images.shape).astype(np.float32)
    images = np.clip(images + noise, 0, 1)
    counts = np.stack([(masks == k).sum((1, 2)) for k in range(1, 5)], 1)  # (n, 4)
    return SynthShapes(torch.from_numpy(images), torch.from_numpy(masks), torch.from_numpy(counts.argmax(1)))


def make_scenes(n: int, *, seed: int, size: int = 32) -> SynthShapes:
    """``n`` target scenes with 2-4 objects of radius 7-11 px, centres in [6, 26]^2 (for 32 x 32).

    Example:
        >>> scenes = make_scenes(4, seed=0)
        >>> tuple(scenes.images.shape), int(scenes.masks.max()) <= 4
        ((4, 3, 32, 32), True)
    """
    if n < 1 or size < 16:
        raise ValueError(f"need n >= 1 scenes of size >= 16, got n={n}, size={size}")
    rng = np.random.default_rng(seed)
    scale = size / 32
    return _render(rng, n, rng.integers(2, 5, n), (7 * scale, 11 * scale), (6 * scale, 26 * scale), size)


def make_objects(n: int, *, seed: int, size: int = 32) -> SynthShapes:
    """``n`` single-object images (radius 5-13 px, centre in [8, 24]^2): the backbone's pre-training set."""
    if n < 1 or size < 16:
        raise ValueError(f"need n >= 1 images of size >= 16, got n={n}, size={size}")
    rng = np.random.default_rng(seed)
    scale = size / 32
    data = _render(rng, n, np.ones(n, dtype=np.int64), (5 * scale, 13 * scale), (8 * scale, 24 * scale), size)
    return data
