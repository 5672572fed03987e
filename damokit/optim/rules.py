"""Adaptive factors ``h_{t+1}`` of the Adam family and their Condition-B bounds.

Condition B (arXiv 2104.14840): ``c_l <= h_{t+1,i} <= c_u`` for all steps and coordinates. Any rule that
satisfies it plugs into ``AdamFamily`` with the same convergence guarantee. Bounds are our derivations
under ``||g||_inf <= G`` (spec ``adam_family.md`` §2.2).

A rule is stateless; its hyper-parameters are the defaults of the optimizer's param groups (so they are
per group, saved in ``state_dict`` and editable like torch's ``betas``). It works on lists of tensors
with ``torch._foreach_*`` ops: one call covers a whole bucket of parameters, and a list of one tensor
rounds exactly like the plain tensor op, which is how ``foreach=False`` matches torch's single-tensor path.

To let the final update round like torch (``p.addcdiv_(m, denom, value=-lr / bc1)``) a rule returns
``Factor(divisor, denoms)`` meaning ``h = 1 / (divisor * denom)`` elementwise, rather than ``h`` itself.

Deviations:
    * AdaBelief adds ``eps`` into ``s`` in place each step and outside the root, as its official code
      (juntang-zhuang/Adabelief-Optimizer, pypi ``adabelief-pytorch`` 0.2) and its paper's Alg. 2 do; the
      spec's table omits the inner ``eps``. This makes ``c_u`` tighter (``s >= eps``).
    * AdaBound's clip bounds are expressed on ``h`` (LR excluded): ``h = clip(sqrt(bc2)/(bc1 (sqrt(v)+eps)),
      r lo(t), r hi(t))`` with ``r = final_lr / initial_lr``; times ``lr`` this is the reference code's
      ``clip(step_size / denom, final_lr * lr / base_lr * (1 -+ ...))``.
    * AdamPlus's norm is taken over all parameters updated together (a param group), and its gradient at an
      extrapolated point is not reproduced (out of reach of an optimizer ``step()``).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor

__all__ = [
    "Factor",
    "AdaptiveRule",
    "IdentityRule",
    "AdamRule",
    "AMSGradRule",
    "AdaBoundRule",
    "AdaFomRule",
    "AdamPlusRule",
    "AdaBeliefRule",
    "RMSPropRule",
]

Group = Mapping[str, Any]


class Factor(NamedTuple):
    """``h = 1 / (divisor * denom)`` per coordinate; ``denoms is None`` means the scalar ``h = 1 / divisor``."""

    divisor: float
    denoms: list[Tensor] | None


class AdaptiveRule(abc.ABC):
    """Interface of an adaptive factor (no shared logic beyond ``factor``, which only inverts ``Factor``).

    Attributes:
        name: short name used in reports.
        needs_eps: ``eps`` is what bounds ``h`` from above, so ``eps <= 0`` is rejected.
        whole_group: ``h`` couples all parameters of a group (AdamPlus's norm), so they are never split.
        defaults: hyper-parameters copied into the optimizer's param-group defaults.
    """

    name: ClassVar[str]
    needs_eps: ClassVar[bool] = False
    whole_group: ClassVar[bool] = False

    def __init__(self, **defaults: Any):
        if self.needs_eps and not defaults.get("eps", 0.0) > 0:
            raise ValueError(
                f"{type(self).__name__}: eps={defaults.get('eps')} must be > 0; it gives the adaptive factor its "
                "upper bound c_u (Condition B). Use e.g. eps=1e-8"
            )
        for key in ("beta2",):
            if key in defaults and not 0.0 <= defaults[key] < 1.0:
                raise ValueError(f"{type(self).__name__}: {key}={defaults[key]} must lie in [0, 1)")
        self.defaults = dict(defaults)

    @abc.abstractmethod
    def init_state(self, p: Tensor) -> dict[str, Tensor]:
        """Fresh per-parameter tensors of the rule (e.g. ``exp_avg_sq``)."""

    @abc.abstractmethod
    def precondition(
        self,
        states: list[dict],
        grads: list[Tensor],
        ms: list[Tensor],
        step: int,
        bias_correction1: float,
        group: Group,
    ) -> Factor:
        """Update the rule's state from ``grads`` (step ``step``, counted from 1) and return ``h_{t+1}``.

        Args:
            states: per-parameter state dicts (the rule's keys live there).
            grads: effective gradients ``g_t`` (after coupled weight decay / maximize).
            ms: the updated first moments ``m_{t+1}``.
            step: the step being taken, from 1.
            bias_correction1: ``1 - prod_{s<=t}(1 - beta_s)``, the first moment's bias correction.
            group: the param group (hyper-parameters).
        """

    @abc.abstractmethod
    def bounds(self, G: float, group: Group, bc1_min: float) -> tuple[float, float]:
        """``(c_l, c_u)`` of Condition B under ``||g||_inf <= G``; ``bc1_min`` lower-bounds ``bias_correction1``."""

    def factor(
        self,
        states: list[dict],
        grads: list[Tensor],
        ms: list[Tensor],
        step: int,
        bias_correction1: float,
        group: Group,
    ) -> list[Tensor]:
        """``h_{t+1}`` as tensors shaped like the parameters (updates the state like ``precondition``)."""
        f = self.precondition(states, grads, ms, step, bias_correction1, group)
        if f.denoms is None:
            return [torch.full_like(m, 1.0 / f.divisor) for m in ms]
        return [torch.reciprocal(d * f.divisor).expand_as(m) for d, m in zip(f.denoms, ms)]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.defaults.items())
        return f"{type(self).__name__}({args})"


def _ema_square_(vs: list[Tensor], xs: list[Tensor], beta2: float) -> None:
    """``v = beta2 v + (1 - beta2) x^2`` in torch Adam's op order (``mul_`` then ``addcmul_``)."""
    torch._foreach_mul_(vs, beta2)
    torch._foreach_addcmul_(vs, xs, xs, 1 - beta2)


def _root_denoms(vs: list[Tensor], divide_by: float, eps: float) -> list[Tensor]:
    """``sqrt(v) / divide_by + eps`` as new tensors (torch Adam: ``(v.sqrt() / sqrt(bc2)).add_(eps)``)."""
    denoms = torch._foreach_sqrt(vs)
    if divide_by != 1.0:
        torch._foreach_div_(denoms, divide_by)
    torch._foreach_add_(denoms, eps)
    return denoms


class IdentityRule(AdaptiveRule):
    """``h = 1``: momentum SGD (heavy ball written as a moving average)."""

    name = "identity"

    def init_state(self, p: Tensor) -> dict[str, Tensor]:
        return {}

    def precondition(self, states, grads, ms, step, bias_correction1, group) -> Factor:
        return Factor(1.0, None)

    def bounds(self, G: float, group: Group, bc1_min: float) -> tuple[float, float]:
        return 1.0, 1.0


class AdamRule(AdaptiveRule):
    """Adam: ``h = 1 / (bc1 (sqrt(v / bc2) + eps))``, ``v = b2 v + (1 - b2) g^2``.

    Bounds: ``c_l = 1/(G + eps)``, ``c_u = 1/(bc1_min eps)``.
    """

    name = "adam"
    needs_eps = True

    def __init__(self, beta2: float = 0.999, eps: float = 1e-8):
        super().__init__(beta2=beta2, eps=eps)

    def init_state(self, p: Tensor) -> dict[str, Tensor]:
        return {"exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def precondition(self, states, grads, ms, step, bias_correction1, group) -> Factor:
        vs = [s["exp_avg_sq"] for s in states]
        _ema_square_(vs, grads, group["beta2"])
        bc2_sqrt = (1 - group["beta2"] ** step) ** 0.5
        return Factor(bias_correction1, _root_denoms(vs, bc2_sqrt, group["eps"]))

    def bounds(self, G: float, group: Group, bc1_min: float) -> tuple[float, float]:
        return 1.0 / (G + group["eps"]), 1.0 / (bc1_min * group["eps"])


class AMSGradRule(AdamRule):
    """AMSGrad: Adam with ``vmax = max(vmax, v)`` (max over the raw ``v``, as torch) in the root.

    Bounds as Adam.
    """

    name = "amsgrad"

    def init_state(self, p: Tensor) -> dict[str, Tensor]:
        return {**super().init_state(p), "max_exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def precondition(self, states, grads, ms, step, bias_correction1, group) -> Factor:
        vs = [s["exp_avg_sq"] for s in states]
        vmax = [s["max_exp_avg_sq"] for s in states]
        _ema_square_(vs, grads, group["beta2"])
        torch._foreach_maximum_(vmax, vs)
        bc2_sqrt = (1 - group["beta2"] ** step) ** 0.5
        return Factor(bias_correction1, _root_denoms(vmax, bc2_sqrt, group["eps"]))


class AdaBoundRule(AdaptiveRule):
    """AdaBound (Luo et al. 2019, reference code Luolc/AdaBound): Adam's factor clipped into shrinking bounds.

    ``h = clip(sqrt(bc2) / (bc1 (sqrt(v) + eps)), r lo(t), r hi(t))``, ``r = final_lr / initial_lr``,
    ``lo(t) = 1 - 1/(gamma t + 1)``, ``hi(t) = 1 + 1/(gamma t)``; with ``sqrt_t_decay`` also ``/ sqrt(t)``
    (the paper's Alg. 2, absent from the reference code).

    Bounds: ``c_l = r lo(1)``, ``c_u = r hi(1)`` (the clip alone; no gradient bound needed). With
    ``sqrt_t_decay`` the lower bound decays to 0, outside Condition B, so ``c_l = 0`` is reported.
    """

    name = "adabound"

    def __init__(
        self, beta2: float = 0.999, eps: float = 1e-8, final_lr: float = 0.1, gamma: float = 1e-3, sqrt_t_decay=False
    ):
        if not eps >= 0:
            raise ValueError(f"AdaBoundRule: eps={eps} must be >= 0")
        if not final_lr > 0:
            raise ValueError(f"AdaBoundRule: final_lr={final_lr} must be > 0 (the LR both bounds converge to)")
        if not gamma > 0:
            raise ValueError(f"AdaBoundRule: gamma={gamma} must be > 0 (speed at which the bounds tighten)")
        super().__init__(beta2=beta2, eps=eps, final_lr=final_lr, gamma=gamma, sqrt_t_decay=bool(sqrt_t_decay))

    def init_state(self, p: Tensor) -> dict[str, Tensor]:
        return {"exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def precondition(self, states, grads, ms, step, bias_correction1, group) -> Factor:
        vs = [s["exp_avg_sq"] for s in states]
        _ema_square_(vs, grads, group["beta2"])
        bc2_sqrt = (1 - group["beta2"] ** step) ** 0.5
        r = group["final_lr"] / group["initial_lr"]
        gamma = group["gamma"]
        h_lo, h_hi = r * (1 - 1 / (gamma * step + 1)), r * (1 + 1 / (gamma * step))
        # denom = 1/h before the clip: bc1 (sqrt(v) + eps) / sqrt(bc2); clip 1/h into [1/h_hi, 1/h_lo]
        denoms = _root_denoms(vs, 1.0, group["eps"])
        torch._foreach_mul_(denoms, bias_correction1 / bc2_sqrt)
        torch._foreach_clamp_min_(denoms, 1 / h_hi)
        torch._foreach_clamp_max_(denoms, 1 / h_lo)
        return Factor(math.sqrt(step) if group["sqrt_t_decay"] else 1.0, denoms)

    def bounds(self, G: float, group: Group, bc1_min: float) -> tuple[float, float]:
        r, gamma = group["final_lr"] / group["initial_lr"], group["gamma"]
        c_l = 0.0 if group["sqrt_t_decay"] else r * (1 - 1 / (gamma + 1))
        return c_l, r * (1 + 1 / gamma)


class AdaFomRule(AdaptiveRule):
    """AdaFom (AdaGrad + first-order momentum, Chen et al. 2019): ``h = 1 / (sqrt(S / t) + eps)``, ``S = sum g^2``.

    Bounds: ``c_l = 1/(G + eps)``, ``c_u = 1/eps``.
    """

    name = "adafom"
    needs_eps = True

    def __init__(self, eps: float = 1e-8):
        super().__init__(eps=eps)

    def init_state(self, p: Tensor) -> dict[str, Tensor]:
        return {"sum_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def precondition(self, states, grads, ms, step, bias_correction1, group) -> Factor:
        sums = [s["sum_sq"] for s in states]
        torch._foreach_addcmul_(sums, grads, grads, 1.0)
        return Factor(1.0, _root_denoms(sums, step**0.5, group["eps"]))

    def bounds(self, G: float, group: Group, bc1_min: float) -> tuple[float, float]:
        return 1.0 / (G + group["eps"]), 1.0 / group["eps"]


class AdamPlusRule(AdaptiveRule):
    """Adam+ (Liu et al. 2020), norm-based step only: scalar ``h = 1 / (sqrt(||m_{t+1}||_2) + eps)``.

    The norm runs over every parameter updated in the same call (a param group). Bounds:
    ``c_l = 1/(sqrt(G sqrt(d)) + eps)`` with ``d`` the number of coordinates (``group['numel']``),
    ``c_u = 1/eps``.
    """

    name = "adamplus"
    needs_eps = True
    whole_group = True

    def __init__(self, eps: float = 1e-8):
        super().__init__(eps=eps)

    def init_state(self, p: Tensor) -> dict[str, Tensor]:
        return {}

    def precondition(self, states, grads, ms, step, bias_correction1, group) -> Factor:
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(ms)))  # ||m||_2 over the whole group
        denom = norm.sqrt_().add_(group["eps"])
        return Factor(1.0, [denom.to(m.dtype).expand_as(m) for m in ms])

    def bounds(self, G: float, group: Group, bc1_min: float) -> tuple[float, float]:
        d = sum(p.numel() for p in group["params"])
        return 1.0 / (math.sqrt(G * math.sqrt(d)) + group["eps"]), 1.0 / group["eps"]


class AdaBeliefRule(AdaptiveRule):
    """AdaBelief (Zhuang et al. 2020): ``s = b2 s + (1 - b2)(g - m)^2 + eps``, ``h = 1/(bc1 (sqrt(s/bc2) + eps))``.

    Bounds (``|g - m| <= 2G``, ``s >= eps``): ``c_l = 1/(sqrt(4 G^2 + eps/(1 - b2)) + eps)``,
    ``c_u = 1/(bc1_min (sqrt(eps) + eps))``.
    """

    name = "adabelief"
    needs_eps = True

    def __init__(self, beta2: float = 0.999, eps: float = 1e-16):
        super().__init__(beta2=beta2, eps=eps)

    def init_state(self, p: Tensor) -> dict[str, Tensor]:
        return {"exp_avg_var": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def precondition(self, states, grads, ms, step, bias_correction1, group) -> Factor:
        ss = [s["exp_avg_var"] for s in states]
        residuals = torch._foreach_sub(grads, ms)  # g_t - m_{t+1}, as the official code
        _ema_square_(ss, residuals, group["beta2"])
        torch._foreach_add_(ss, group["eps"])
        bc2_sqrt = (1 - group["beta2"] ** step) ** 0.5
        return Factor(bias_correction1, _root_denoms(ss, bc2_sqrt, group["eps"]))

    def bounds(self, G: float, group: Group, bc1_min: float) -> tuple[float, float]:
        eps, b2 = group["eps"], group["beta2"]
        return 1.0 / (math.sqrt(4 * G**2 + eps / (1 - b2)) + eps), 1.0 / (bc1_min * (math.sqrt(eps) + eps))


class RMSPropRule(AdaptiveRule):
    """RMSProp factor without bias correction: ``h = 1/(sqrt(v) + eps)``.

    Bounds: ``c_l = 1/(G + eps)``, ``c_u = 1/eps``.
    """

    name = "rmsprop"
    needs_eps = True

    def __init__(self, beta2: float = 0.999, eps: float = 1e-8):
        super().__init__(beta2=beta2, eps=eps)

    def init_state(self, p: Tensor) -> dict[str, Tensor]:
        return {"exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def precondition(self, states, grads, ms, step, bias_correction1, group) -> Factor:
        vs = [s["exp_avg_sq"] for s in states]
        _ema_square_(vs, grads, group["beta2"])
        return Factor(1.0, _root_denoms(vs, 1.0, group["eps"]))

    def bounds(self, G: float, group: Group, bc1_min: float) -> tuple[float, float]:
        return 1.0 / (G + group["eps"]), 1.0 / group["eps"]
