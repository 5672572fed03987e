"""SynthRGBD: seeded, vectorised synthetic RGB-D gesture clips for the MotionRGBD miniature (spec §8.1).

Three splits isolate the paper's two claims:

- ``"G"`` (10 gestures): direction classes in time-reversed pairs (temporal order needed) and two static
  hold classes that differ only in hand shape (spatial detail needed). Decoupled vs coupled networks.
- ``"B"`` (4 classes, binding): two hands; the active one wears a glove visible in RGB only; the label is
  the depth pattern of the active hand. RGB alone is at chance, depth alone is capped at 62.5 %, and only
  per-frame cross-modal interaction can do better. CAPF vs late fusion.
- ``"F"`` (8 classes, factorised control): glove colour (RGB) x depth pattern of a single hand; late fusion
  is Bayes-optimal here.

Clips are float32 in [0, 1]: RGB ``(N, 3, T, H, W)``, depth ``(N, 1, T, H, W)``, labels ``(N,)`` int64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["SynthRGBD", "make_synth_rgbd", "SPLITS", "GESTURES_G"]

GESTURES_G = (
    "swipe_left", "swipe_right", "swipe_up", "swipe_down", "circle_cw", "circle_ccw",
    "zigzag", "push_pull", "hold_disk", "hold_square",
)  # fmt: skip
SPLITS = {"G": 10, "B": 4, "F": 8}
_GLOVES = np.array([[1.0, 0.1, 1.0], [0.1, 1.0, 1.0]], dtype=np.float32)  # magenta, cyan


@dataclass
class SynthRGBD:
    """A generated split: tensors plus the class names."""

    rgb: torch.Tensor  # (N, 3, T, H, W)
    depth: torch.Tensor  # (N, 1, T, H, W)
    labels: torch.Tensor  # (N,)
    classes: tuple[str, ...]


def _smooth_noise(rng: np.random.Generator, n: int, channels: int, size: int, amplitude: float) -> np.ndarray:
    """Low-frequency noise: a 4x4 Gaussian grid bilinearly upsampled to ``size`` -> (n, channels, size, size)."""
    grid = torch.from_numpy(rng.normal(0.0, amplitude, (n, channels, 4, 4)).astype(np.float32))
    return F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=True).numpy()


def _time_warp(rng: np.random.Generator, n: int, frames: int) -> np.ndarray:
    """Gesture phase in [0, 1] per frame: active over a random 60-100 % of the clip at a random offset."""
    frac = rng.uniform(0.6, 1.0, (n, 1))
    start = rng.uniform(0.0, 1.0, (n, 1)) * (1.0 - frac)
    t = np.linspace(0.0, 1.0, frames)[None]
    return np.clip((t - start) / frac, 0.0, 1.0)  # (n, T); idle frames hold the start or end pose


def _trajectory_g(labels: np.ndarray, phase: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets (dx, dy) from the centre and nearness z for each split-G class; each (n, T)."""
    amp, radius, turn = 9.0, 7.0, 0.85 * 2 * np.pi
    lin = amp * (2 * phase - 1)  # -amp -> +amp
    zeros = np.zeros_like(phase)
    angle = -np.pi / 2 + turn * phase
    table = {
        0: (-lin, zeros, zeros),  # swipe left: +amp -> -amp
        1: (lin, zeros, zeros),
        2: (zeros, -lin, zeros),  # image y grows downwards: up means decreasing y
        3: (zeros, lin, zeros),
        4: (radius * np.cos(angle), radius * np.sin(angle), zeros),  # clockwise on screen
        5: (radius * np.cos(-angle), radius * np.sin(-angle), zeros),
        6: (lin, 5.0 * np.sin(2 * np.pi * 2 * phase), zeros),  # two vertical oscillations
        7: (zeros, zeros, np.sin(np.pi * phase)),  # push-pull: z 0 -> 1 -> 0
        8: (zeros, zeros, zeros),
        9: (zeros, zeros, zeros),
    }
    dx, dy, z = (np.zeros_like(phase) for _ in range(3))
    for label, (tx, ty, tz) in table.items():
        rows = labels == label
        dx[rows], dy[rows], z[rows] = tx[rows], ty[rows], tz[rows]
    return dx, dy, z


def _depth_pattern(pattern: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """z over time for the four binding patterns: push (0->1), pull (1->0), push-pull, pull-push."""
    curves = np.stack([phase, 1 - phase, np.sin(np.pi * phase), 1 - np.sin(np.pi * phase)])  # (4, n, T)
    return np.take_along_axis(curves, pattern[None, :, None].repeat(phase.shape[1], 2), 0)[0]


class _Canvas:
    """Vectorised rendering of N clips of T frames on an H x W grid."""

    def __init__(self, rng: np.random.Generator, n: int, frames: int, size: int):
        self.rng, self.n, self.frames, self.size = rng, n, frames, size
        coords = np.arange(size, dtype=np.float32)
        self.yy, self.xx = np.meshgrid(coords, coords, indexing="ij")  # (H, W)
        base = rng.uniform(0.2, 0.8, (n, 3, 1, 1)).astype(np.float32)
        rgb = base + _smooth_noise(rng, n, 3, size, 0.15)  # (n, 3, H, W)
        for _ in range(int(rng.integers(2, 4))):  # 2-3 static distractor rectangles
            x0, y0 = rng.integers(0, size - 6, (2, n, 1, 1, 1))
            w, h = rng.integers(3, 9, (2, n, 1, 1, 1))
            inside = (self.xx >= x0) & (self.xx < x0 + w) & (self.yy >= y0) & (self.yy < y0 + h)  # (n,1,H,W)
            rgb = np.where(inside, rng.uniform(0, 1, (n, 3, 1, 1)).astype(np.float32), rgb)
        self.rgb = np.repeat(rgb[:, :, None], frames, axis=2)  # (n, 3, T, H, W)
        plane = rng.uniform(0.15, 0.20, (n, 1, 1, 1)) + 0.05 * (self.yy / size - 0.5)
        depth = plane + _smooth_noise(rng, n, 1, size, 0.02)
        self.depth = np.repeat(depth[:, :, None], frames, axis=2).astype(np.float32)  # (n, 1, T, H, W)

    def hand_mask(self, cx: np.ndarray, cy: np.ndarray, radius: np.ndarray, square: np.ndarray) -> np.ndarray:
        """Boolean (n, T, H, W): disk, or an equal-area square where ``square`` is set; cx, cy, radius (n, T)."""
        dx = self.xx[None, None] - cx[..., None, None].astype(np.float32)
        dy = self.yy[None, None] - cy[..., None, None].astype(np.float32)
        r = radius[..., None, None].astype(np.float32)
        disk = dx**2 + dy**2 <= r**2
        box = np.maximum(np.abs(dx), np.abs(dy)) <= r * 0.886
        return np.where(square[:, None, None, None], box, disk)

    def paint(self, mask: np.ndarray, colour: np.ndarray, z: np.ndarray) -> None:
        """Draw a hand: ``colour`` (n, 3) into RGB and ``0.55 + 0.4 z`` (z: (n, T)) into depth."""
        self.rgb = np.where(mask[:, None], colour[:, :, None, None, None].astype(np.float32), self.rgb)
        self.depth = np.where(mask[:, None], _hand_depth(z)[:, None, :, None, None], self.depth)

    def finish(self) -> tuple[torch.Tensor, torch.Tensor]:
        # torch's generator draws the ~10^8 noise values several times faster than numpy's
        gen = torch.Generator().manual_seed(int(self.rng.integers(2**62)))
        rgb = torch.from_numpy(self.rgb)
        rgb = rgb + 0.05 * torch.randn(rgb.shape, generator=gen)
        depth = torch.from_numpy(self.depth)
        depth = depth + 0.03 * torch.randn(depth.shape, generator=gen)
        depth = depth.masked_fill(torch.rand(depth.shape, generator=gen) < 0.05, 0.0)  # sensor holes
        return rgb.clamp_(0, 1), depth.clamp_(0, 1)


def _hand_depth(z: np.ndarray) -> np.ndarray:
    """Depth value of hand pixels at nearness z in [0, 1]."""
    return (0.55 + 0.4 * z).astype(np.float32)


def _skin(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.stack([rng.uniform(0.75, 0.95, n), rng.uniform(0.5, 0.7, n), rng.uniform(0.35, 0.5, n)], 1)


def _render_g(rng: np.random.Generator, labels: np.ndarray, frames: int, size: int) -> tuple[np.ndarray, ...]:
    n = len(labels)
    canvas = _Canvas(rng, n, frames, size)
    phase = _time_warp(rng, n, frames)
    dx, dy, z = _trajectory_g(labels, phase)
    scale = rng.uniform(0.8, 1.2, (n, 1))
    centre = size / 2 + rng.uniform(-3, 3, (2, n, 1))
    jitter = np.where(labels[:, None] >= 8, 1.0, 0.0) * rng.normal(0, 0.3, (2, n, frames))  # hold classes
    cx, cy = centre[0] + scale * dx + jitter[0], centre[1] + scale * dy + jitter[1]
    radius = rng.uniform(3, 4, (n, 1)) * (1 + 0.6 * z)
    canvas.paint(canvas.hand_mask(cx, cy, radius, labels == 9), _skin(rng, n), z)
    return canvas.finish()


def _render_hands(rng: np.random.Generator, patterns: np.ndarray, gloves: np.ndarray, frames: int, size: int):
    """Hands with depth-only z patterns; ``patterns`` (n, hands), ``gloves`` (n, hands): -1 skin, else index."""
    n, hands = patterns.shape
    canvas = _Canvas(rng, n, frames, size)
    phase = _time_warp(rng, n, frames)
    drift = rng.uniform(-4, 4, (n, 1)) * (2 * phase - 1)  # shared lateral velocity (nuisance)
    for h in range(hands):
        z = _depth_pattern(patterns[:, h], phase)
        anchor = size * ((h + 1) / (hands + 1)) if hands > 1 else size / 2
        cx = anchor + drift + rng.uniform(-1.5, 1.5, (n, 1))
        cy = size / 2 + rng.uniform(-3, 3, (n, 1)) + np.zeros_like(phase)
        radius = rng.uniform(3, 4, (n, 1)) + np.zeros_like(phase)  # constant RGB size
        colour = np.where(gloves[:, h, None] >= 0, _GLOVES[np.maximum(gloves[:, h], 0)], _skin(rng, n))
        mask = canvas.hand_mask(cx, cy, radius, np.zeros(n, bool))
        canvas.rgb = np.where(mask[:, None], colour[:, :, None, None, None].astype(np.float32), canvas.rgb)
        # depth blob grows with nearness, so z is visible in depth only
        depth_mask = canvas.hand_mask(cx, cy, radius * (1 + 0.6 * z), np.zeros(n, bool))
        canvas.depth = np.where(depth_mask[:, None], _hand_depth(z)[:, None, :, None, None], canvas.depth)
    return canvas.finish()


def make_synth_rgbd(split: str, clips_per_class: int, *, seed: int, frames: int = 24, size: int = 32) -> SynthRGBD:
    """Generate ``clips_per_class`` clips of every class of ``split`` ("G", "B" or "F").

    Example:
        >>> data = make_synth_rgbd("B", 2, seed=0)
        >>> tuple(data.rgb.shape), tuple(data.depth.shape)
        ((8, 3, 24, 32, 32), (8, 1, 24, 32, 32))
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    if clips_per_class < 1 or frames < 2 or size < 16:
        raise ValueError(f"need clips_per_class >= 1, frames >= 2, size >= 16; got {clips_per_class}, {frames}, {size}")
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(SPLITS[split]), clips_per_class)
    n = len(labels)
    if split == "G":
        rgb, depth = _render_g(rng, labels, frames, size)
        classes = GESTURES_G
    elif split == "B":
        # label = pattern of the active hand; the other hand's pattern is independent
        active = rng.integers(0, 2, n)
        patterns = rng.integers(0, 4, (n, 2))
        patterns[np.arange(n), active] = labels
        gloves = np.full((n, 2), -1)
        gloves[np.arange(n), active] = rng.integers(0, 2, n)  # glove colour itself is irrelevant
        rgb, depth = _render_hands(rng, patterns, gloves, frames, size)
        classes = ("push", "pull", "push_pull", "pull_push")
    else:
        rgb, depth = _render_hands(rng, (labels % 4)[:, None], (labels // 4)[:, None], frames, size)
        classes = tuple(f"{g}_{p}" for g in ("magenta", "cyan") for p in ("push", "pull", "push_pull", "pull_push"))
    order = rng.permutation(n)
    order = torch.from_numpy(order)
    return SynthRGBD(
        rgb=rgb[order],
        depth=depth[order],
        labels=torch.from_numpy(labels)[order].long(),
        classes=classes,
    )
