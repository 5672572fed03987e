"""Single-loop primal-dual Adam for ``min_x max_{y in Y} f(x, y)`` with ``f(x, .)`` strongly concave.

arXiv 2104.14840 (SEMA-era abstract): a single-loop method with batch size O(1), no inner loop, and
O(1/eps^4) oracle complexity. Spec ``adam_family.md`` §4.1 (reconstructed; the algorithm box could not
be read):

    m_{t+1} = (1 - beta) m_t + beta grad_x f(x_t, y_t; xi_t)
    x_{t+1} = x_t - eta_x h_{t+1} * m_{t+1}                     # any AdaptiveRule; h = 1 gives PD-momentum
    y_{t+1} = Proj_Y(y_t + eta_y grad_y f(x_t, y_t; xi'_t))     # projected stochastic ascent

Both players use the gradients stored in ``.grad`` after ONE backward of ``f`` (simultaneous update); the
dual player ascends, so the user does not flip signs. Two time scales: ``lr`` (``eta_x``) well below
``dual_lr`` (``eta_y``), ``eta_x ≈ eta_y / kappa^2`` in theory.

Example:
    >>> import torch
    >>> x, y = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.zeros(2))
    >>> opt = PrimalDualAdam([x], [y], lr=1e-2, dual_lr=0.1, dual_projection=box_projection(-1, 1))
    >>> f = (x**2).sum() + (y * x).sum() - (y**2).sum()
    >>> f.backward(); opt.step()
    >>> bool((y > 0).all())  # ascent on y
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from damokit.optim.adam_family import AdamFamily
from damokit.optim.rules import AdamRule, AdaptiveRule, IdentityRule
from damokit.optim.schedules import MomentumSchedule

__all__ = ["PrimalDualAdam", "simplex_projection", "box_projection"]

Projection = Callable[[Tensor], Tensor]


def simplex_projection(y: Tensor) -> Tensor:
    """Euclidean projection of each row (last dim) onto the probability simplex (sort-based, exact).

    Shapes: ``(..., n) -> (..., n)``.
    """
    n = y.shape[-1]
    u, _ = torch.sort(y, dim=-1, descending=True)  # (..., n)
    css = u.cumsum(-1) - 1  # (..., n)
    k = torch.arange(1, n + 1, device=y.device, dtype=y.dtype)  # (n,)
    support = u - css / k > 0  # (..., n); True on a prefix
    rho = support.sum(-1, keepdim=True)  # (..., 1), >= 1
    theta = css.gather(-1, rho - 1) / rho.to(y.dtype)  # (..., 1)
    return (y - theta).clamp_min(0)


def box_projection(low: float, high: float) -> Projection:
    """Projection onto the box ``[low, high]`` (elementwise clamp)."""
    if not low <= high:
        raise ValueError(f"box_projection: low={low} must be <= high={high}")
    return lambda y: y.clamp(low, high)


class PrimalDualAdam:
    """Primal Adam-family descent + projected stochastic ascent, one loop (PD-Adam / PD-momentum).

    Args:
        primal: parameters ``x`` (minimised).
        dual: parameters ``y`` (maximised; their ``.grad`` is ascended).
        lr: primal step ``eta_x``.
        dual_lr: dual step ``eta_y`` (larger than ``lr``).
        rule: adaptive factor of the primal step (default ``AdamRule``; ``IdentityRule()`` gives PD-momentum).
        momentum: paper-convention ``beta`` (float or schedule) of the primal moving average.
        dual_projection: ``Proj_Y`` applied to each dual tensor after the step (default: identity).
        dual_rule: optional adaptive factor for the dual step (default ``IdentityRule``: plain ascent).
        dual_momentum: optional ``beta`` of a dual moving average (default 1: no averaging).
        weight_decay: coupled L2 on the primal.

    The two players are two ``AdamFamily`` optimizers (``.primal_opt``, ``.dual_opt``) so each can carry
    its own ``torch.optim.lr_scheduler``.
    """

    def __init__(
        self,
        primal: Iterable[Tensor],
        dual: Iterable[Tensor],
        lr: float = 1e-3,
        dual_lr: float = 1e-1,
        rule: AdaptiveRule | None = None,
        momentum: float | MomentumSchedule = 0.1,
        dual_projection: Projection | None = None,
        dual_rule: AdaptiveRule | None = None,
        dual_momentum: float | MomentumSchedule = 1.0,
        weight_decay: float = 0.0,
    ):
        if not dual_lr >= 0:
            raise ValueError(f"dual_lr={dual_lr} must be >= 0")
        self.primal_opt = AdamFamily(
            primal, lr, rule if rule is not None else AdamRule(), momentum, weight_decay=weight_decay
        )
        self.dual_opt = AdamFamily(
            dual, dual_lr, dual_rule if dual_rule is not None else IdentityRule(), dual_momentum, maximize=True
        )
        self.dual_projection = dual_projection

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Update both players from their stored gradients, then project the dual ones."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.primal_opt.step()
        self.dual_opt.step()
        if self.dual_projection is not None:
            for group in self.dual_opt.param_groups:
                for y in group["params"]:
                    y.copy_(self.dual_projection(y))
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.primal_opt.zero_grad(set_to_none)
        self.dual_opt.zero_grad(set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"primal": self.primal_opt.state_dict(), "dual": self.dual_opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.primal_opt.load_state_dict(state["primal"])
        self.dual_opt.load_state_dict(state["dual"])
