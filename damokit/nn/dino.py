"""DINO self-distillation for any backbone that maps images to a feature vector.

Paper: "Emerging Properties in Self-Supervised Vision Transformers", Caron et al., arXiv 2104.14294;
official code ``facebookresearch/dino`` (``main_dino.py``, ``vision_transformer.py``, ``utils.py``), also
used as-is by TransReID-SSL (``damo-cv/TransReID-SSL/dino``) and by TransFGU.

Pieces: ``MultiCropAugment`` (the DINO views, written with torch ops only and batched over images),
``DINOHead`` (3-layer MLP -> bottleneck -> L2-normalise -> weight-normalised linear), ``DINOLoss``
(teacher centring + sharpening, student temperature, cross-view cross-entropy), and ``DINO``, the
student/teacher pair whose ``forward(images)`` returns the loss, so it trains through
``damokit.engine.fit`` in one process or under torchrun (DDP sees only the student's parameters;
every collective here is guarded).

Per-step schedules, as the official ``train_one_epoch`` (each indexed by the global iteration t of
``cosine_scheduler`` without warm-up): the teacher is an EMA of the student with momentum cosine from 0.996 to
1, applied right after optimizer step t; the weight decay of the decayed parameter group follows a cosine from
0.04 to 0.4. ``fit_dino`` does both in the engine's ``after_step`` hook: ``DINO.update_teacher(t)`` (the teacher
lives inside ``DINO``, so checkpoints hold it) and the next step's weight decay (held in the optimizer's state,
so a resumed run continues the schedule). A hand-written loop calls ``update_teacher(t)`` after each step.
The forward counter (teacher temperature, last-layer freezing) is a buffer, hence saved in checkpoints.

Deviations:
    * Colour jitter applies brightness, contrast, saturation, hue in this fixed order (torchvision draws
      a random order per image); RandomResizedCrop clamps an oversized box into the image instead of
      re-drawing up to 10 times; crops are resampled with ``grid_sample`` (bicubic, clamped to [0, 1]).
    * Gaussian blur uses a kernel of radius ``ceil(3 sigma)`` with reflect padding (PIL's box
      approximation of a Gaussian differs slightly).
    * Freezing the last layer zeroes its gradient (official: sets it to None), so AdamW still applies
      weight decay to it; the weight normalisation makes its scale irrelevant.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from damokit.engine import FitResult, TrainConfig, build_optimizer, fit
from damokit.nn.layers import DropPath

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MultiCropAugment",
    "random_resized_crop",
    "color_jitter",
    "gaussian_blur",
    "WeightNormLinear",
    "DINOHead",
    "MultiCropWrapper",
    "DINOLoss",
    "DINO",
    "teacher_temperature",
    "teacher_momentum",
    "dino_cosine",
    "dino_param_groups",
    "fit_dino",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------------------------------------
# augmentation (batched torch ops; images are float in [0, 1], (B, 3, H, W))


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _bernoulli(n: int, p: float, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=generator) < p


def random_resized_crop(
    x: torch.Tensor,
    size: tuple[int, int],
    scale: tuple[float, float],
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_p: float = 0.5,
    generator: torch.Generator | None = None,
    mode: str = "bicubic",
) -> torch.Tensor:
    """A random box per image (area fraction in ``scale``, aspect w/h in ``ratio``), resized, maybe flipped.

    Shapes: ``(B, C, H, W) -> (B, C, *size)``.
    """
    B, _, H, W = x.shape
    area = _uniform(B, *scale, generator) * H * W
    aspect = torch.exp(_uniform(B, math.log(ratio[0]), math.log(ratio[1]), generator))
    w = torch.sqrt(area * aspect).clamp(1, W)  # box width/height in pixels
    h = torch.sqrt(area / aspect).clamp(1, H)
    cx = w / 2 + torch.rand(B, generator=generator) * (W - w)  # box centre, box inside the image
    cy = h / 2 + torch.rand(B, generator=generator) * (H - h)
    flip = torch.where(_bernoulli(B, flip_p, generator), -1.0, 1.0)
    theta = torch.zeros(B, 2, 3)  # output coords in [-1, 1] -> input coords in [-1, 1]
    theta[:, 0, 0] = w / W * flip
    theta[:, 0, 2] = 2 * cx / W - 1
    theta[:, 1, 1] = h / H
    theta[:, 1, 2] = 2 * cy / H - 1
    theta = theta.to(x.device, x.dtype)
    grid = F.affine_grid(theta, [B, x.shape[1], *size], align_corners=False)  # (B, h', w', 2)
    out = F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)
    return out.clamp(0, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, as torchvision's rgb_to_grayscale. Shapes: ``(B, 3, H, W) -> (B, 1, H, W)``."""
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def _shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of each image by ``shift`` (fraction of a turn), via RGB -> HSV -> RGB."""
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(maxc == r, ((g - b) / safe) % 6, torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = torch.where(delta > 0, hue / 6, torch.zeros_like(hue))
    hue = (hue + shift.view(-1, 1, 1)) % 1.0
    sat = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    # HSV -> RGB with the continuous formula c_n = v - v s max(0, min(k, 4 - k, 1)), k = (n + 6h) mod 6
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = (n + 6 * hue.unsqueeze(1)) % 6
    return maxc.unsqueeze(1) * (1 - sat.unsqueeze(1) * torch.clamp(torch.minimum(k, 4 - k), 0, 1))


def color_jitter(
    x: torch.Tensor,
    strength: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1),
    p: float = 0.8,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Brightness, contrast, saturation, hue jitter applied to each image with probability ``p``."""
    B = x.shape[0]
    bri, con, sat, hue = strength
    apply = _bernoulli(B, p, generator).to(x.device).view(B, 1, 1, 1)
    fb, fc, fs = (_uniform(B, 1 - s, 1 + s, generator).to(x).view(B, 1, 1, 1) for s in (bri, con, sat))
    fh = _uniform(B, -hue, hue, generator).to(x)
    y = (x * fb).clamp(0, 1)
    mean = _gray(y).mean((2, 3), keepdim=True)  # (B, 1, 1, 1)
    y = ((y - mean) * fc + mean).clamp(0, 1)
    gray = _gray(y)  # (B, 1, H, W)
    y = ((y - gray) * fs + gray).clamp(0, 1)
    y = _shift_hue(y, fh).clamp(0, 1)
    return torch.where(apply, y, x)


def gaussian_blur(
    x: torch.Tensor,
    p: float,
    sigma: tuple[float, float] = (0.1, 2.0),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Blur each image with probability ``p`` by a Gaussian of a random sigma (separable, per image)."""
    B, C, H, W = x.shape
    apply = _bernoulli(B, p, generator).to(x.device)
    sig = _uniform(B, *sigma, generator).to(x)
    radius = min(math.ceil(3 * sigma[1]), (min(H, W) - 1) // 2)
    offs = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offs.view(1, -1) / sig.view(-1, 1)) ** 2)  # (B, K)
    kernel = kernel / kernel.sum(1, keepdim=True)
    kernel = kernel.repeat_interleave(C, 0)  # (B*C, K): one depthwise filter per image channel
    y = x.reshape(1, B * C, H, W)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), kernel.view(B * C, 1, 1, -1), groups=B * C)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), kernel.view(B * C, 1, -1, 1), groups=B * C)
    return torch.where(apply.view(B, 1, 1, 1), y.view(B, C, H, W), x)


@dataclass(frozen=True)
class MultiCropAugment:
    """DINO's views: 2 global crops (blur p 1.0 / 0.1, solarise 0 / 0.2) and ``n_local`` small crops.

    Defaults are the TransReID-SSL person-crop settings (256x128 global, 128x64 local).

    Example:
        >>> aug = MultiCropAugment(global_size=(32, 16), local_size=(16, 8), n_local=2)
        >>> [v.shape[-2:] for v in aug(torch.rand(4, 3, 64, 32))]
        [torch.Size([32, 16]), torch.Size([32, 16]), torch.Size([16, 8]), torch.Size([16, 8])]
    """

    global_size: tuple[int, int] = (256, 128)
    local_size: tuple[int, int] = (128, 64)
    n_local: int = 8
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: tuple[float, float, float] = (1.0, 0.1, 0.5)
    """Blur probability of global view 1, global view 2, local views."""
    solarize_p: float = 0.2
    """Solarisation probability of global view 2 only."""
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def n_views(self) -> int:
        return 2 + self.n_local

    def _view(self, x, size, scale, blur_p, solarize_p, g) -> torch.Tensor:
        B = x.shape[0]
        y = random_resized_crop(x, size, scale, flip_p=self.flip_p, generator=g)
        y = color_jitter(y, self.jitter, self.jitter_p, generator=g)
        y = torch.where(_bernoulli(B, self.gray_p, g).to(x.device).view(B, 1, 1, 1), _gray(y).expand_as(y), y)
        y = gaussian_blur(y, blur_p, generator=g)
        if solarize_p > 0:  # PIL solarize(128): invert pixels >= 128/255
            solar = _bernoulli(B, solarize_p, g).to(x.device).view(B, 1, 1, 1)
            y = torch.where(solar & (y >= 0.5), 1 - y, y)
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (y - mean) / std

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Views of a batch of images in [0, 1]; ``generator=None`` draws from torch's global RNG."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"MultiCropAugment expects RGB images (B, 3, H, W) in [0, 1], got {tuple(x.shape)}")
        gs, ls = self.global_size, self.local_size
        views = [
            self._view(x, gs, self.global_scale, self.blur_p[0], 0.0, generator),
            self._view(x, gs, self.global_scale, self.blur_p[1], self.solarize_p, generator),
        ]
        views += [self._view(x, ls, self.local_scale, self.blur_p[2], 0.0, generator) for _ in range(self.n_local)]
        return views


# ----------------------------------------------------------------------------------------------------------
# head, wrapper, loss


class WeightNormLinear(nn.Module):
    """Bias-free linear layer ``W = g * v / ||v||`` (rows), official names ``weight_g`` / ``weight_v``.

    With ``freeze_gain`` the gain stays 1 (DINO's ``norm_last_layer=True``), i.e. ``W`` has unit rows.
    """

    def __init__(self, in_features: int, out_features: int, freeze_gain: bool = True):
        super().__init__()
        v = torch.empty(out_features, in_features)
        nn.init.kaiming_uniform_(v, a=math.sqrt(5))  # nn.Linear's default, as in the official head
        self.weight_v = nn.Parameter(v)
        self.weight_g = nn.Parameter(torch.ones(out_features, 1), requires_grad=not freeze_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight_g * F.normalize(self.weight_v, dim=1))


class DINOHead(nn.Module):
    """``mlp`` (Linear-GELU x nlayers-1, Linear to bottleneck) -> L2-normalise -> ``last_layer``.

    Shapes: ``(N, in_dim) -> (N, out_dim)``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 65536,
        *,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        nlayers: int = 3,
        norm_last_layer: bool = True,
    ):
        super().__init__()
        if nlayers < 1:
            raise ValueError(f"nlayers must be >= 1, got {nlayers}")
        dims = [in_dim] + [hidden_dim] * (nlayers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for i in range(nlayers):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < nlayers - 1:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim, freeze_gain=norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


class MultiCropWrapper(nn.Module):
    """Runs ``backbone`` once per group of same-resolution views, then ``head`` on all features.

    Shapes: views ``[(B, C, H_i, W_i)] x V -> (V*B, out_dim)`` in view order.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        feats, start = [], 0
        while start < len(views):
            end = start
            while end < len(views) and views[end].shape[-2:] == views[start].shape[-2:]:
                end += 1
            feats.append(self.backbone(torch.cat(list(views[start:end]))))  # (n*B, D)
            start = end
        return self.head(torch.cat(feats))


def teacher_temperature(step: int, base: float, warmup_start: float, warmup_steps: int) -> float:
    """Linear warm-up of the teacher temperature from ``warmup_start`` to ``base``, then constant."""
    if step >= warmup_steps:
        return base
    return warmup_start + (base - warmup_start) * step / warmup_steps


def dino_cosine(step: int, total_steps: int, start: float, end: float) -> float:
    """Official ``cosine_scheduler`` without warm-up: ``end + (start - end) (1 + cos(pi t / T)) / 2``.

    Goes from ``start`` at step 0 towards ``end`` (reached at ``total_steps``; later steps stay there).
    """
    progress = min(step / max(total_steps, 1), 1.0)
    return end + (start - end) * (1 + math.cos(math.pi * progress)) / 2


def teacher_momentum(step: int, total_steps: int, base: float = 0.996) -> float:
    """Cosine increase of the EMA momentum from ``base`` (step 0) to 1 (``total_steps``)."""
    return dino_cosine(step, total_steps, base, 1.0)


class DINOLoss(nn.Module):
    """Cross-entropy between centred, sharpened teacher views and student views, skipping same views.

    Args:
        out_dim: K, the head's output size (the centre's length).
        n_crops: V, student views (2 global + locals); the teacher sees the 2 global ones.
        student_temp: student softmax temperature (0.1).
        center_momentum: EMA momentum of the centre (0.9).

    Shapes: ``student (V*B, K)``, ``teacher (2*B, K)`` -> scalar.
    """

    def __init__(self, out_dim: int, n_crops: int, *, student_temp: float = 0.1, center_momentum: float = 0.9):
        super().__init__()
        if n_crops < 2:
            raise ValueError(f"n_crops must be >= 2 (the two global views), got {n_crops}")
        self.n_crops = n_crops
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        log_p = F.log_softmax(student / self.student_temp, dim=-1).chunk(self.n_crops)  # V x (B, K)
        q = F.softmax((teacher - self.center) / teacher_temp, dim=-1).detach().chunk(2)  # 2 x (B, K)
        total, n_terms = student.new_zeros(()), 0
        for iq, q_i in enumerate(q):
            for v, log_p_v in enumerate(log_p):
                if v == iq:  # the same view seen by teacher and student
                    continue
                total = total + (-q_i * log_p_v).sum(-1).mean()
                n_terms += 1
        self.update_center(teacher)
        return total / n_terms

    @torch.no_grad()
    def update_center(self, teacher: torch.Tensor) -> None:
        """``center <- m center + (1 - m) mean(teacher)``, the mean taken over all processes."""
        batch_sum = teacher.sum(0, keepdim=True)
        count = torch.tensor(float(teacher.shape[0]), device=teacher.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_sum)
            dist.all_reduce(count)
        self.center.mul_(self.center_momentum).add_(batch_sum / count, alpha=1 - self.center_momentum)


# ----------------------------------------------------------------------------------------------------------
# the student/teacher pair


class DINO(nn.Module):
    """Student and EMA teacher around any ``backbone: (B, C, H, W) -> (B, D)``; ``forward`` returns the loss.

    Args:
        backbone: the network to pre-train (e.g. a ``VisionTransformer``); the teacher is a copy with
            stochastic depth switched off.
        embed_dim: D (default: ``backbone.embed_dim``).
        total_steps: optimizer steps of the run (T of the momentum and weight-decay cosines).
        augment: view generator applied inside ``forward``; None means ``forward`` receives the views.
        out_dim, hidden_dim, bottleneck_dim, norm_last_layer: head settings.
        momentum: base EMA momentum (0.996).
        teacher_temp, warmup_teacher_temp, warmup_teacher_temp_steps: teacher sharpening schedule.
        student_temp, center_momentum: loss settings.
        freeze_last_layer_steps: steps during which the head's last layer gets no gradient.

    Example:
        >>> from damokit.nn.vit import vit_tiny
        >>> dino = DINO(vit_tiny(), total_steps=10, out_dim=64, hidden_dim=32, bottleneck_dim=16,
        ...             augment=MultiCropAugment(global_size=(32, 32), local_size=(16, 16), n_local=2))
        >>> loss = dino(torch.rand(4, 3, 40, 40))
        >>> loss.ndim
        0
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        total_steps: int,
        embed_dim: int | None = None,
        augment: MultiCropAugment | None = None,
        out_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        norm_last_layer: bool = True,
        momentum: float = 0.996,
        teacher_temp: float = 0.04,
        warmup_teacher_temp: float = 0.04,
        warmup_teacher_temp_steps: int = 0,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        freeze_last_layer_steps: int = 0,
    ):
        super().__init__()
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        embed_dim = embed_dim or getattr(backbone, "embed_dim", None)
        if embed_dim is None:
            raise ValueError("embed_dim is needed: the backbone has no `embed_dim` attribute")
        head = DINOHead(
            embed_dim, out_dim, hidden_dim=hidden_dim, bottleneck_dim=bottleneck_dim, norm_last_layer=norm_last_layer
        )
        self.student = MultiCropWrapper(backbone, head)
        self.teacher = copy.deepcopy(self.student)
        for m in self.teacher.modules():
            if isinstance(m, DropPath):
                m.p = 0.0  # the official teacher is built without stochastic depth
        self.teacher.requires_grad_(False)
        self.augment = augment
        n_crops = augment.n_views if augment is not None else None
        self.criterion = DINOLoss(out_dim, n_crops or 2, student_temp=student_temp, center_momentum=center_momentum)
        self.total_steps = total_steps
        self.momentum = momentum
        self.teacher_temp = (teacher_temp, warmup_teacher_temp, warmup_teacher_temp_steps)
        self.freeze_last_layer_steps = freeze_last_layer_steps
        self.register_buffer("step", torch.zeros((), dtype=torch.long))  # training forwards so far
        for p in self.student.head.last_layer.parameters():
            if p.requires_grad:
                p.register_hook(self._maybe_freeze)

    def _maybe_freeze(self, grad: torch.Tensor) -> torch.Tensor:
        # runs in backward, after forward advanced ``step``: this step's index is step - 1
        return torch.zeros_like(grad) if int(self.step) <= self.freeze_last_layer_steps else grad

    @torch.no_grad()
    def update_teacher(self, step: int) -> None:
        """EMA after optimizer step ``step`` (0-based): ``teacher <- m teacher + (1 - m) student``,
        ``m = teacher_momentum(step, total_steps, momentum)``."""
        m = teacher_momentum(step, self.total_steps, self.momentum)
        student = [p.detach() for p in self.student.parameters()]
        teacher = list(self.teacher.parameters())
        torch._foreach_mul_(teacher, m)
        torch._foreach_add_(teacher, student, alpha=1 - m)

    def teacher_backbone(self) -> nn.Module:
        """The teacher's backbone (what DINO releases and downstream tasks fine-tune)."""
        return self.teacher.backbone

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """The DINO loss of a batch: images in [0, 1] (with ``augment``) or the list of views."""
        if isinstance(x, torch.Tensor) and x.dtype == torch.uint8:
            x = x.float() / 255
        views = self.augment(x) if self.augment is not None else list(x)
        if len(views) < 2:
            raise ValueError(f"DINO needs at least the 2 global views, got {len(views)}")
        self.criterion.n_crops = len(views)
        with torch.no_grad():
            teacher_out = self.teacher(views[:2])  # (2B, K)
        student_out = self.student(views)  # (V*B, K)
        temp = teacher_temperature(int(self.step), *self.teacher_temp)
        loss = self.criterion(student_out, teacher_out, temp)
        if self.training and torch.is_grad_enabled():
            self.step += 1
        return loss


def dino_param_groups(model: nn.Module, weight_decay: float = 0.04) -> list[dict]:
    """Trainable parameters split as DINO does: no weight decay on biases and 1-D (norm) parameters."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if name.endswith(".bias") or p.ndim == 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _dino_step(model: nn.Module, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    return model(batch[0])


def fit_dino(
    dino: DINO,
    images: torch.Tensor,
    config: TrainConfig,
    *,
    weight_decay_end: float | None = 0.4,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
) -> FitResult:
    """Pre-train ``dino`` on ``images`` ((N, 3, H, W), uint8 or float in [0, 1]) with ``damokit.engine.fit``.

    The optimizer is ``config.optimizer`` over ``dino_param_groups``. Step t trains the decayed group with
    weight decay ``dino_cosine(t, dino.total_steps, config.weight_decay, weight_decay_end)`` (official DINO:
    ``--weight_decay 0.04 --weight_decay_end 0.4``; None keeps ``config.weight_decay`` constant); biases and
    1-D parameters stay at 0. After each step the teacher takes its EMA update, so when this returns
    ``dino.teacher_backbone()`` is ready to use. Official gradient clipping (each parameter's gradient to norm
    3.0 on its own) is ``TrainConfig(grad_clip=3.0, grad_clip_per_parameter=True)``.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
    if weight_decay_end is not None and weight_decay_end < 0:
        raise ValueError(f"weight_decay_end must be >= 0 (or None for a constant weight decay), got {weight_decay_end}")
    groups = dino_param_groups(dino, config.weight_decay)
    optimizer = build_optimizer(config.optimizer, groups, config.lr, **dict(config.optimizer_kwargs))
    wd_end = config.weight_decay if weight_decay_end is None else weight_decay_end

    def after_step(model: nn.Module, step: int) -> None:
        model.update_teacher(step)
        # the weight decay of step + 1 (step 0 uses config.weight_decay, the cosine's start) in
        # dino_param_groups' first group (the second has none). It lives in the optimizer's param groups, which
        # checkpoints save and a resumed run restores (as new dicts: look the group up on every call).
        optimizer.param_groups[0]["weight_decay"] = dino_cosine(
            step + 1, model.total_steps, config.weight_decay, wd_end
        )

    return fit(
        dino,
        (images,),
        loss_fn=_dino_step,
        config=config,
        optimizer=optimizer,
        out_dir=out_dir,
        resume=resume,
        after_step=after_step,
    )
