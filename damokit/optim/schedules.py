"""Momentum schedules of the Adam family, in the paper's convention.

A schedule is a callable ``(step, group) -> beta_t`` returning the weight of the NEW gradient in
``m_{t+1} = (1 - beta_t) m_t + beta_t g_t`` (arXiv 2104.14840). torch's ``beta1`` is ``1 - beta_t``: a
"large momentum parameter" is a small ``beta_t``, and "increasing momentum" is a ``beta_t`` that decreases.
``step`` counts from 1 (the step being taken); ``group`` is the optimizer's param group, so a schedule may
read the current learning rate. Schedules hold no state, so resuming from a ``state_dict`` replays them
exactly.

Example:
    >>> sched = CoupledToLR(0.1)
    >>> round(1 - sched(5, {"lr": 1e-4, "initial_lr": 1e-3}), 6)  # torch beta1 after one 10x LR drop
    0.99
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

__all__ = [
    "MomentumSchedule",
    "ConstantMomentum",
    "InverseSqrtMomentum",
    "StagewiseMomentum",
    "CoupledToLR",
    "KingmaDecay",
]


class MomentumSchedule(Protocol):
    """``(step, group) -> beta_t`` in (0, 1], the new-gradient weight of the first moment."""

    def __call__(self, step: int, group: Mapping[str, Any]) -> float: ...


def _check_beta(name: str, value: float) -> float:
    if not 0.0 < value <= 1.0:
        raise ValueError(
            f"{name}={value} must lie in (0, 1]: it is the weight of the new gradient (paper convention, "
            f"torch beta1 = 1 - {name}); e.g. {name}=0.1 for torch beta1=0.9"
        )
    return float(value)


class ConstantMomentum:
    """``beta_t = beta``; with a known horizon T the theory picks ``beta = c / sqrt(T)``.

    Args:
        beta: new-gradient weight in (0, 1] (torch ``beta1 = 1 - beta``).
    """

    def __init__(self, beta: float):
        self.beta = _check_beta("beta", beta)

    def __call__(self, step: int, group: Mapping[str, Any]) -> float:
        return self.beta

    def __repr__(self) -> str:
        return f"ConstantMomentum(beta={self.beta})"


class InverseSqrtMomentum:
    """``beta_t = min(1, beta0 / sqrt(t))``: momentum increasing towards 1; pair with ``lr_t ∝ 1/sqrt(t)``.

    Args:
        beta0: scale of the schedule, > 0 (``beta0 = 1`` gives ``beta_t = 1/sqrt(t)``).
    """

    def __init__(self, beta0: float = 1.0):
        if not beta0 > 0:
            raise ValueError(f"beta0={beta0} must be > 0 (beta_t = min(1, beta0/sqrt(t)))")
        self.beta0 = float(beta0)

    def __call__(self, step: int, group: Mapping[str, Any]) -> float:
        return min(1.0, self.beta0 / math.sqrt(step))

    def __repr__(self) -> str:
        return f"InverseSqrtMomentum(beta0={self.beta0})"


class StagewiseMomentum:
    """``beta_t = beta0 / factor^k`` where k is the number of milestones (optimizer steps) reached.

    Use the same milestones and factor as a ``MultiStepLR``; ``CoupledToLR`` does this automatically.

    Args:
        beta0: new-gradient weight of the first stage, in (0, 1].
        milestones: increasing positive step counts at which a new stage starts.
        factor: divisor of ``beta`` at each milestone, >= 1.
    """

    def __init__(self, beta0: float, milestones: Sequence[int], factor: float = 10.0):
        self.beta0 = _check_beta("beta0", beta0)
        self.milestones = [int(m) for m in milestones]
        if any(m < 1 for m in self.milestones) or self.milestones != sorted(set(self.milestones)):
            raise ValueError(f"milestones={list(milestones)} must be strictly increasing positive step counts")
        if not factor >= 1:
            raise ValueError(f"factor={factor} must be >= 1 (momentum may only increase between stages)")
        self.factor = float(factor)

    def __call__(self, step: int, group: Mapping[str, Any]) -> float:
        stage = sum(step >= m for m in self.milestones)
        return self.beta0 / self.factor**stage

    def __repr__(self) -> str:
        return f"StagewiseMomentum(beta0={self.beta0}, milestones={self.milestones}, factor={self.factor})"


class CoupledToLR:
    """``beta_t = beta0 * lr_t / initial_lr``: each LR drop by gamma divides ``beta`` by gamma.

    The abstract's advice ("increase the momentum parameter in a stage-wise manner in accordance with
    stagewise decreasing step size"): with ``beta0 = 0.1`` and 10x LR drops, torch beta1 goes
    0.9 -> 0.99 -> 0.999. Reads ``group['lr'] / group['initial_lr']`` at each step, so it composes with any
    ``torch.optim.lr_scheduler`` and with the engine's named schedules.

    Args:
        beta0: new-gradient weight at the initial LR, in (0, 1].
        beta_min: floor of ``beta_t`` (an LR of 0, e.g. during warm-up, would otherwise stop the average).
    """

    def __init__(self, beta0: float, beta_min: float = 1e-6):
        self.beta0 = _check_beta("beta0", beta0)
        self.beta_min = _check_beta("beta_min", beta_min)

    def __call__(self, step: int, group: Mapping[str, Any]) -> float:
        ratio = float(group["lr"]) / float(group["initial_lr"])
        return min(1.0, max(self.beta_min, self.beta0 * ratio))

    def __repr__(self) -> str:
        return f"CoupledToLR(beta0={self.beta0}, beta_min={self.beta_min})"


class KingmaDecay:
    """torch ``beta1_t = beta1 * lam^(t-1)``: momentum DECREASING to zero, as in the original Adam proof.

    Negative control only: this schedule has NO convergence guarantee (the estimator's variance term
    never shrinks; arXiv 2104.14840 names it the reason Adam diverges on some problems).

    Args:
        beta1: torch-style first-moment decay at step 1, in [0, 1).
        lam: per-step decay of ``beta1``, in (0, 1].
    """

    def __init__(self, beta1: float = 0.9, lam: float = 1 - 1e-8):
        if not 0.0 <= beta1 < 1.0:
            raise ValueError(f"beta1={beta1} must lie in [0, 1) (torch convention)")
        if not 0.0 < lam <= 1.0:
            raise ValueError(f"lam={lam} must lie in (0, 1]")
        self.beta1, self.lam = float(beta1), float(lam)

    def __call__(self, step: int, group: Mapping[str, Any]) -> float:
        return 1.0 - self.beta1 * self.lam ** (step - 1)

    def __repr__(self) -> str:
        return f"KingmaDecay(beta1={self.beta1}, lam={self.lam})"
