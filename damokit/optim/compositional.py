"""Compositional objectives ``min_x f(g(x))`` with a moving-average (SEMA) estimate of the inner value.

arXiv 2104.14840, spec ``adam_family.md`` §4.2 (reconstructed):

    u_{t+1} = (1 - gamma) u_t + gamma g(x_t; zeta_t)          # MovingAverage: tracked inner value
    G_t     = J_g(x_t; zeta_t)^T grad f(u_{t+1})               # chain rule with the tracked value
    m_{t+1} = (1 - beta) m_t + beta G_t;  x_{t+1} = x_t - eta h_{t+1} * m_{t+1}   # any AdamFamily

A plug-in estimate ``grad f(g(x; zeta))`` is biased whenever ``f`` is non-linear; the moving average
makes the bias vanish with ``gamma``. ``compositional_surrogate`` builds ``<stopgrad(grad f(u)), g(x)>``
so that a plain ``backward()`` yields ``G_t`` and the outer step is any ``AdamFamily``. Public reference
of the same pattern: Optimization-AI/LibAUC ``libauc/optimizers/soap.py`` (read, not copied).

Deviations: the Jacobian uses the same mini-batch as the inner-value update (``zeta' = zeta``), as
LibAUC does; the spec writes an independent sample.

Example:
    >>> import torch
    >>> w = torch.nn.Parameter(torch.zeros(3))
    >>> tracker = MovingAverage(gamma=0.5, log_space=True)
    >>> losses = torch.nn.functional.softplus(-(torch.randn(4, 3) @ w))  # 4 per-sample losses
    >>> kl_dro_surrogate(losses, tracker, lam=1.0).backward()
    >>> w.grad.shape
    torch.Size([3])
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

__all__ = ["MovingAverage", "compositional_surrogate", "kl_dro_surrogate"]


class MovingAverage:
    """SEMA tracker ``u <- (1 - gamma) u + gamma value``: one tensor, or a table with one entry per index.

    The first update sets ``u`` to the value (never 0 or 1: a wrong start biases ``grad f(u)`` for
    ~1/gamma steps, and diverged in the spec's prototype). With ``log_space`` the tracker stores and
    receives ``log u`` (log-sum-exp form) so that exponential inner functions cannot overflow.

    Args:
        gamma: new-value weight in (0, 1].
        shape: shape of one entry (default scalar).
        num_entries: size of the table for finite-sum inner functions (``update(value, index=...)``);
            ``None`` tracks a single entry.
        log_space: values and ``value()`` are logarithms.
    """

    def __init__(self, gamma: float, shape: tuple[int, ...] = (), num_entries: int | None = None, log_space=False):
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma={gamma} must lie in (0, 1] (weight of the new inner-function value)")
        if num_entries is not None and num_entries < 1:
            raise ValueError(f"num_entries={num_entries} must be >= 1 or None")
        self.gamma, self.log_space = float(gamma), bool(log_space)
        self.shape, self.num_entries = tuple(shape), num_entries
        self.u: Tensor | None = None  # (num_entries, *shape) or shape
        self.seen: Tensor | None = None  # (num_entries,) bool, table mode only

    def _blend(self, old: Tensor, new: Tensor) -> Tensor:
        if self.log_space:  # log((1 - gamma) e^old + gamma e^new)
            if self.gamma == 1.0:
                return new
            return torch.logaddexp(old + math.log1p(-self.gamma), new + math.log(self.gamma))
        return old.lerp(new, self.gamma)

    @torch.no_grad()
    def update(self, value: Tensor, index: Tensor | None = None) -> Tensor:
        """Blend ``value`` (shaped ``shape``, or ``(len(index), *shape)`` in table mode) in; return ``u_{t+1}``.

        Raises:
            ValueError: ``index`` missing in table mode (or given without a table), or a shape mismatch.
        """
        value = value.detach()
        if self.num_entries is None:
            if index is not None:
                raise ValueError("index given but the tracker has no table; build it with num_entries=N")
            if tuple(value.shape) != self.shape:
                raise ValueError(f"value shape {tuple(value.shape)} != tracker shape {self.shape}")
            self.u = value.clone() if self.u is None else self._blend(self.u, value)
            return self.u
        if index is None:
            raise ValueError(f"the tracker is a table of {self.num_entries} entries; pass index=")
        if tuple(value.shape) != (len(index), *self.shape):
            raise ValueError(f"value shape {tuple(value.shape)} != (len(index), *shape) = {(len(index), *self.shape)}")
        if self.u is None:
            self.u = value.new_zeros((self.num_entries, *self.shape))
            self.seen = torch.zeros(self.num_entries, dtype=torch.bool, device=value.device)
        old = self.u[index]
        first = ~self.seen[index]  # (b,)
        new = self._blend(old, value)
        new[first] = value[first]
        self.u[index] = new
        self.seen[index] = True
        return new

    def value(self, index: Tensor | None = None) -> Tensor:
        """The tracked value (its log with ``log_space``), all entries or those at ``index``."""
        if self.u is None:
            raise ValueError("the tracker has no value yet; call update() first")
        return self.u if index is None else self.u[index]

    def state_dict(self) -> dict[str, Any]:
        return {"u": self.u, "seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.u, self.seen = state["u"], state["seen"]


def compositional_surrogate(inner: Tensor, outer_grad: Tensor) -> Tensor:
    """``<stopgrad(outer_grad), inner>``: its gradient is ``J_inner^T outer_grad`` (the chain rule at ``u``)."""
    return (outer_grad.detach() * inner).sum()


def kl_dro_surrogate(losses: Tensor, tracker: MovingAverage, lam: float) -> Tensor:
    """Surrogate of the KL-DRO loss ``lam log((1/n) sum_i exp(l_i / lam))`` with a tracked inner mean.

    Inner ``g = mean_i exp(l_i / lam)``, outer ``f(u) = lam log u``, ``grad f(u) = lam / u``; the tracker
    works in log space (``log u``). The gradient of the returned scalar is
    ``mean_b exp(l_b / lam - log u_{t+1}) grad l_b``.

    Args:
        losses: per-sample losses of the mini-batch, shape ``(b,)``.
        tracker: a scalar ``MovingAverage(log_space=True)``.
        lam: KL radius parameter, > 0.
    """
    if not lam > 0:
        raise ValueError(f"lam={lam} must be > 0")
    if not tracker.log_space or tracker.num_entries is not None or tracker.shape != ():
        raise ValueError("kl_dro_surrogate needs a scalar MovingAverage(log_space=True)")
    scaled = losses / lam  # (b,)
    log_u = tracker.update(torch.logsumexp(scaled.detach(), 0) - math.log(len(losses)))
    return lam * torch.exp(scaled - log_u).mean()
