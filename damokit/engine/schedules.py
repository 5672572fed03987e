"""Learning-rate schedules as plain functions of the step: ``factor(step, ...) -> multiplier of the base LR``.

Being stateless, they need nothing saved in a checkpoint: a resumed run recomputes the same LR.
Every schedule takes the same keywords so the loop can call any of them by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["SCHEDULES", "schedule_factor"]


def _warmup(step: int, warmup_steps: int) -> float:
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def constant(step: int, *, total_steps: int, steps_per_epoch: int, warmup_steps: int, min_ratio: float) -> float:
    """1 after an optional linear warm-up."""
    return _warmup(step, warmup_steps)


def cosine(step: int, *, total_steps: int, steps_per_epoch: int, warmup_steps: int, min_ratio: float) -> float:
    """Linear warm-up, then half a cosine from 1 down to ``min_ratio`` at ``total_steps``."""
    if step < warmup_steps:
        return _warmup(step, warmup_steps)
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def linear(step: int, *, total_steps: int, steps_per_epoch: int, warmup_steps: int, min_ratio: float) -> float:
    """Linear warm-up, then linear decay to ``min_ratio``."""
    if step < warmup_steps:
        return _warmup(step, warmup_steps)
    span = max(1, total_steps - warmup_steps)
    return 1.0 - (1.0 - min_ratio) * min(1.0, (step - warmup_steps) / span)


def halve_per_epoch(step: int, *, total_steps: int, steps_per_epoch: int, warmup_steps: int, min_ratio: float) -> float:
    """The Autoformer/FEDformer official ``lradj="type1"``: epochs 0 and 1 at the base LR, then halved each epoch.

    The official loop calls ``adjust_learning_rate(epoch + 1)`` after 0-based epoch ``epoch``, which sets
    ``lr * 0.5 ** epoch`` for the next one, so epoch e >= 1 trains at ``lr * 0.5 ** (e - 1)``.
    """
    epoch = step // max(1, steps_per_epoch)
    return _warmup(step, warmup_steps) * 0.5 ** max(0, epoch - 1)


SCHEDULES: dict[str, Callable[..., float]] = {
    "constant": constant,
    "cosine": cosine,
    "linear": linear,
    "halve_per_epoch": halve_per_epoch,
}


def schedule_factor(
    name: str,
    step: int,
    *,
    total_steps: int,
    steps_per_epoch: int = 1,
    warmup_steps: int = 0,
    min_ratio: float = 0.0,
) -> float:
    """LR multiplier of schedule ``name`` at ``step`` (0-based)."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown LR schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[name](
        step, total_steps=total_steps, steps_per_epoch=steps_per_epoch, warmup_steps=warmup_steps, min_ratio=min_ratio
    )
