"""Single-loop bilevel optimisation with moving averages and an Adam-family upper step.

``min_x Phi(x) = f(x, y*(x))``, ``y*(x) = argmin_y g(x, y)``, ``g(x, .)`` strongly convex. Hypergradient
``grad Phi = grad_x f - grad_xy g [grad_yy g]^{-1} grad_y f`` at ``(x, y*(x))``. arXiv 2104.14840 (SEMA
version) gives a single-loop method without Hessian inverses or SVDs; its treatment of the Hessian term
could not be read, so spec ``adam_family.md`` §4.3 fixes a damokit design:

    y_{t+1} = y_t - tau grad_y g(x_t, y_t)
    z_{t+1} = z_t - tau_z (grad_yy g(x_t, y_t) z_t - grad_y f(x_t, y_t))     # SGD on the linear system
    v_t     = grad_x f(x_t, y_t) - grad_xy g(x_t, y_t) z_{t+1}
    m_{t+1} = (1 - beta) m_t + beta v_t;  x_{t+1} = x_t - eta h_{t+1} * m_{t+1}   # AdamFamily on x

Hessian- and Jacobian-vector products come from double backward; no matrix is formed.

Deviations: one call of ``lower_loss`` serves the ``y`` and ``z`` updates (one sample ``zeta``) and a
second call gives the cross term at ``z_{t+1}``; the spec writes three independent samples. The gradients
of ``f`` come from one call (``xi = xi'``).

Example:
    >>> import torch
    >>> x, y = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(2))
    >>> opt = BilevelSEMA([x], [y], lr=0.05, lower_lr=0.5, z_lr=0.5)
    >>> upper = lambda: ((y - 1.0) ** 2).sum()
    >>> lower = lambda: ((y - x) ** 2).sum()  # y*(x) = x, so Phi(x) = 2 (x - 1)^2
    >>> for _ in range(300):
    ...     _ = opt.step(upper, lower)
    >>> round(float(x), 1)
    1.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from damokit.optim.adam_family import AdamFamily
from damokit.optim.rules import AdamRule, AdaptiveRule
from damokit.optim.schedules import MomentumSchedule

__all__ = ["BilevelSEMA"]


class BilevelSEMA:
    """Single-loop bilevel optimizer: SGD on ``y``, linear-system SGD on ``z``, Adam-family step on ``x``.

    Args:
        upper: upper-level parameters ``x``.
        lower: lower-level parameters ``y``.
        lr: upper step ``eta``.
        lower_lr: lower step ``tau`` (``<= 1/L_g``).
        z_lr: step ``tau_z`` of the linear-system iterate ``z`` (``<= 1/L_g``).
        rule: adaptive factor of the upper step (default ``AdamRule``).
        momentum: paper-convention ``beta`` (float or schedule) of the upper moving average.
    """

    def __init__(
        self,
        upper: Iterable[Tensor],
        lower: Iterable[Tensor],
        lr: float = 1e-3,
        lower_lr: float = 1e-2,
        z_lr: float = 1e-2,
        rule: AdaptiveRule | None = None,
        momentum: float | MomentumSchedule = 0.1,
    ):
        self.upper, self.lower = list(upper), list(lower)
        if not self.upper or not self.lower:
            raise ValueError("BilevelSEMA needs at least one upper and one lower parameter")
        for name, value in (("lower_lr", lower_lr), ("z_lr", z_lr)):
            if not value > 0:
                raise ValueError(f"{name}={value} must be > 0")
        self.lower_lr, self.z_lr = float(lower_lr), float(z_lr)
        self.outer = AdamFamily(self.upper, lr, rule if rule is not None else AdamRule(), momentum)
        self.z = [torch.zeros_like(y) for y in self.lower]

    def step(self, upper_loss: Callable[[], Tensor], lower_loss: Callable[[], Tensor]) -> tuple[Tensor, Tensor]:
        """One single-loop iteration; the callables evaluate (stochastic) ``f(x, y)`` and ``g(x, y)``.

        Returns:
            the detached ``(f, g)`` at ``(x_t, y_t)``.
        """
        f = upper_loss()
        grads_f = torch.autograd.grad(f, self.upper + self.lower, allow_unused=True)
        fx = [_or_zeros(gr, x) for gr, x in zip(grads_f[: len(self.upper)], self.upper)]
        fy = [_or_zeros(gr, y) for gr, y in zip(grads_f[len(self.upper) :], self.lower)]
        g = lower_loss()
        gy = torch.autograd.grad(g, self.lower, create_graph=True)
        hz = torch.autograd.grad(gy, self.lower, grad_outputs=self.z)  # grad_yy g z_t
        z_next = [z - self.z_lr * (hz_i - fy_i) for z, hz_i, fy_i in zip(self.z, hz, fy)]
        # cross term at (x_t, y_t) from a second sample of g, before y moves
        gy2 = torch.autograd.grad(lower_loss(), self.lower, create_graph=True)
        cross = torch.autograd.grad(gy2, self.upper, grad_outputs=z_next, allow_unused=True)  # grad_xy g z_{t+1}
        with torch.no_grad():
            for y, gy_i in zip(self.lower, gy):
                y.sub_(gy_i, alpha=self.lower_lr)
        self.z = [z.detach() for z in z_next]
        for x, fx_i, c in zip(self.upper, fx, cross):
            x.grad = fx_i - _or_zeros(c, x)
        self.outer.step()
        return f.detach(), g.detach()

    def state_dict(self) -> dict[str, Any]:
        return {"outer": self.outer.state_dict(), "z": [z.clone() for z in self.z]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.outer.load_state_dict(state["outer"])
        self.z = [z.clone() for z in state["z"]]


def _or_zeros(grad: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if grad is None else grad
