"""The Adam family as one optimizer: a moving-average first moment times a bounded adaptive factor.

Papers: "A Simple and Generic Convergence Proof for a Family of Adam-style Methods" (arXiv 2112.03459)
and "A Novel Convergence Analysis for Algorithms of the Adam Family (and Beyond)" (arXiv 2104.14840,
Guo, Xu, Yin, Jin, Yang). No official code was available; the update follows spec ``adam_family.md`` §2-3:

    m_{t+1} = (1 - beta_t) m_t + beta_t g_t           # beta_t: new-gradient weight (torch beta1 = 1 - beta_t)
    x_{t+1} = x_t - lr * h_{t+1} * m_{t+1}            # h: any rule with c_l <= h <= c_u (Condition B)

Convergence needs only Condition B and a large (or increasing) momentum parameter, i.e. a small
``beta_t``. Presets (``Adam``, ``AdamW``, ``AMSGrad``, ``AdaBound``, ``AdaFom``, ``AdamPlus``, ``AdaBelief``,
``RMSPropMomentum``, ``MomentumSGD``) are factories returning an ``AdamFamily`` with the matching rule;
they are registered for ``damokit.engine.build_optimizer`` under ``family_adam``, ``family_adamw``,
``amsgrad``, ``adabound``, ``adafom``, ``adamplus``, ``adabelief``, ``rmsprop_momentum``, ``momentum_sgd``.

Deviations:
    * ``MomentumSGD(momentum=mu)`` takes torch's ``mu`` (as ``torch.optim.SGD``), not the paper's beta;
      the spec's rule "momentum= speaks the paper's beta" holds for ``AdamFamily`` itself.
    * Parameters of a group are updated in buckets of equal step count (normally the whole group), so a
      rule sees the whole group at once; ``foreach=False`` then loops over parameters one at a time.

Performance: on CPU the per-parameter path is the default (as torch): the multi-tensor path materialises
temporaries for the whole group and measured slower for Adam-type rules (``damokit bench optim``).

Example:
    >>> import torch
    >>> w = torch.nn.Parameter(torch.ones(3))
    >>> opt = AdaBound([w], lr=1e-2)
    >>> (w**2).sum().backward(); _ = opt.step()
    >>> bool((w < 1).all())
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from damokit.optim.rules import (
    AdaBeliefRule,
    AdaBoundRule,
    AdaFomRule,
    AdamPlusRule,
    AdamRule,
    AdaptiveRule,
    AMSGradRule,
    IdentityRule,
    RMSPropRule,
)
from damokit.optim.schedules import ConstantMomentum, MomentumSchedule
from damokit.registry import register_optimizer

__all__ = [
    "AdamFamily",
    "Adam",
    "AdamW",
    "AMSGrad",
    "AdaBound",
    "AdaFom",
    "AdamPlus",
    "AdaBelief",
    "RMSPropMomentum",
    "MomentumSGD",
]

_M_INITS = ("zero", "first_grad")


class AdamFamily(torch.optim.Optimizer):
    """Generic Adam-style optimizer: moving-average momentum with a schedule, pluggable bounded factor.

    Args:
        params: parameters or param groups (torch conventions).
        lr: step size ``eta``, >= 0.
        rule: the adaptive factor ``h`` (default ``AdamRule()``); its hyper-parameters become group defaults.
        momentum: paper convention: the NEW-gradient weight ``beta_t`` as a float in (0, 1] or a schedule
            ``(step, group) -> beta_t`` (``damokit.optim.schedules``). Default 0.1 (torch beta1 = 0.9).
        betas: torch-style alias ``(beta1, beta2)``: ``momentum = 1 - beta1`` and ``beta2`` replaces the
            rule's default. Give ``momentum`` or ``betas``, not both.
        weight_decay: L2 coefficient, >= 0.
        decoupled_weight_decay: shrink ``p *= 1 - lr * wd`` before the step (AdamW) instead of adding
            ``wd * p`` to the gradient (Adam).
        m_init: ``'zero'`` (Adam) or ``'first_grad'`` (``m_1 = g_0``, as torch SGD's momentum buffer; the
            first moment's bias correction is then 1).
        maximize: ascend instead of descend.
        track_bounds: record the observed range of ``h`` per group in ``self.state['h_range']``.
        foreach: update all parameters of a bucket with multi-tensor ops (default: on CUDA only, as torch);
            ``False`` updates one parameter at a time (lower peak memory, torch's single-tensor rounding).

    Raises:
        ValueError: an argument out of range (the message names it and the fix).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        rule: AdaptiveRule | None = None,
        momentum: float | MomentumSchedule | None = None,
        betas: tuple[float, float] | None = None,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        m_init: str = "zero",
        maximize: bool = False,
        track_bounds: bool = False,
        foreach: bool | None = None,
    ):
        rule = AdamRule() if rule is None else rule
        if not isinstance(rule, AdaptiveRule):
            raise TypeError(f"rule={rule!r} must be an AdaptiveRule instance (see damokit.optim.rules)")
        if isinstance(lr, Tensor) or not lr >= 0.0:
            raise ValueError(f"lr={lr} must be a float >= 0")
        if not weight_decay >= 0.0:
            raise ValueError(f"weight_decay={weight_decay} must be >= 0")
        if m_init not in _M_INITS:
            raise ValueError(f"m_init={m_init!r} must be one of {_M_INITS}")
        if momentum is not None and betas is not None:
            raise ValueError("give momentum= (paper beta, new-gradient weight) or betas= (torch beta1), not both")
        rule_defaults = dict(rule.defaults)
        if betas is not None:
            if len(betas) != 2:
                raise ValueError(f"betas={tuple(betas)} must be a pair (beta1, beta2) (torch convention)")
            momentum = _momentum(betas, None)
            if "beta2" not in rule_defaults:
                raise ValueError(
                    f"betas={tuple(betas)}: rule {rule.name!r} has no beta2; pass momentum={momentum:g} instead"
                )
            if not 0.0 <= betas[1] < 1.0:
                raise ValueError(f"betas={tuple(betas)}: beta2 must lie in [0, 1)")
            rule_defaults["beta2"] = float(betas[1])
        if momentum is None:
            momentum = 0.1
        self.rule = rule
        self.momentum = ConstantMomentum(momentum) if isinstance(momentum, (int, float)) else momentum
        if not callable(self.momentum):
            raise TypeError(f"momentum={momentum!r} must be a float in (0, 1] or a schedule (step, group) -> beta")
        self.track_bounds = track_bounds
        defaults = {
            "lr": float(lr),
            "weight_decay": float(weight_decay),
            "decoupled_weight_decay": bool(decoupled_weight_decay),
            "m_init": m_init,
            "maximize": bool(maximize),
            "foreach": foreach,
            **rule_defaults,
        }
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        # the reference LR of CoupledToLR and AdaBound's bounds; lr_scheduler uses the same key
        self.param_groups[-1].setdefault("initial_lr", self.param_groups[-1]["lr"])

    def factor_bounds(self, G: float) -> list[tuple[float, float]]:
        """``(c_l, c_u)`` of the rule per param group under ``||g||_inf <= G`` (Condition B)."""
        out = []
        for group in self.param_groups:
            bc1_min = 1.0 if group["m_init"] == "first_grad" else self.momentum(1, group)
            out.append(self.rule.bounds(G, group, bc1_min))
        return out

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """One update of every parameter that has a gradient; returns ``closure()``'s loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for index, group in enumerate(self.param_groups):
            buckets: dict[tuple, list[Tensor]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise ValueError("AdamFamily does not support sparse gradients; use torch.optim.SparseAdam")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["prod_one_minus_beta"] = 1.0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state.update(self.rule.init_state(p))
                state["step"] += 1
                key = (state["step"], state["prod_one_minus_beta"], p.device, p.dtype)
                buckets.setdefault(key, []).append(p)
            split = not (group["foreach"] or (group["foreach"] is None and group["params"][0].is_cuda))
            for (step, prod, _, _), bucket in buckets.items():
                if split and not self.rule.whole_group:
                    for p in bucket:
                        self._update(index, group, [p], step, prod)
                else:
                    self._update(index, group, bucket, step, prod)
        return loss

    def _update(self, index: int, group: dict[str, Any], params: list[Tensor], step: int, prod: float) -> None:
        """Spec §3.2 steps 1-8 for parameters sharing ``step`` and ``prod = prod_{s<t}(1 - beta_s)``."""
        lr, wd = float(group["lr"]), group["weight_decay"]
        grads = [p.grad for p in params]
        if group["maximize"]:
            grads = torch._foreach_neg(grads)
        if wd and not group["decoupled_weight_decay"]:
            grads = torch._foreach_add(grads, params, alpha=wd)
        beta = self.momentum(step, group)
        if not 0.0 < beta <= 1.0:
            raise ValueError(
                f"momentum schedule {self.momentum!r} returned beta={beta} at step {step}; it must lie in (0, 1]"
            )
        states = [self.state[p] for p in params]
        ms = [s["exp_avg"] for s in states]
        if step == 1 and group["m_init"] == "first_grad":
            torch._foreach_copy_(ms, grads)
            prod = 0.0  # m_1 = g_0 is unbiased: bias correction 1 from now on
        else:
            torch._foreach_lerp_(ms, grads, beta)  # torch Adam's form of (1 - beta) m + beta g
            prod *= 1.0 - beta
        for s in states:
            s["prod_one_minus_beta"] = prod
        factor = self.rule.precondition(states, grads, ms, step, 1.0 - prod, group)
        if self.track_bounds:
            self._track(index, factor)
        if wd and group["decoupled_weight_decay"]:
            torch._foreach_mul_(params, 1 - lr * wd)
        if factor.denoms is None:
            torch._foreach_add_(params, ms, alpha=-lr / factor.divisor)
        else:
            torch._foreach_addcdiv_(params, ms, factor.denoms, value=-lr / factor.divisor)

    def _track(self, index: int, factor) -> None:
        """Running (min, max) of ``h`` for group ``index`` in ``self.state['h_range']``."""
        if factor.denoms is None:
            lo = hi = 1.0 / factor.divisor
        else:
            lo = 1.0 / (factor.divisor * max(float(d.max()) for d in factor.denoms))
            hi = 1.0 / (factor.divisor * min(float(d.min()) for d in factor.denoms))
        ranges = self.state.setdefault("h_range", [[float("inf"), float("-inf")] for _ in self.param_groups])
        ranges[index][0] = min(ranges[index][0], lo)
        ranges[index][1] = max(ranges[index][1], hi)


def _preset_meta(rule: str, **caps: Any) -> dict[str, Any]:
    """Capability metadata of a registered preset (read by generic code and tests, timm OptimInfo style)."""
    return {
        "source": "damokit",
        "paper": "2112.03459",
        "family": "adam_family",
        "rule": rule,
        "condition_b": True,
        "has_betas": True,
        "has_eps": True,
        "decoupled_weight_decay": False,
        "named_in_abstract": False,
        **caps,
    }


@register_optimizer("family_adam", **_preset_meta("adam", named_in_abstract=True))
def Adam(
    params,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    momentum_schedule: MomentumSchedule | None = None,
    **kwargs: Any,
) -> AdamFamily:
    """Adam as a member of the family (coupled L2 weight decay, torch ``Adam`` semantics).

    ``momentum_schedule`` replaces the constant ``1 - betas[0]``; other keywords go to ``AdamFamily``.
    """
    rule = (AMSGradRule if amsgrad else AdamRule)(beta2=betas[1], eps=eps)
    return AdamFamily(params, lr, rule, _momentum(betas, momentum_schedule), weight_decay=weight_decay, **kwargs)


@register_optimizer("family_adamw", **_preset_meta("adam", decoupled_weight_decay=True))
def AdamW(
    params,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    amsgrad: bool = False,
    momentum_schedule: MomentumSchedule | None = None,
    **kwargs: Any,
) -> AdamFamily:
    """AdamW: Adam with decoupled weight decay (torch ``AdamW`` semantics)."""
    rule = (AMSGradRule if amsgrad else AdamRule)(beta2=betas[1], eps=eps)
    return AdamFamily(
        params,
        lr,
        rule,
        _momentum(betas, momentum_schedule),
        weight_decay=weight_decay,
        decoupled_weight_decay=True,
        **kwargs,
    )


@register_optimizer("amsgrad", **_preset_meta("amsgrad", named_in_abstract=True))
def AMSGrad(params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0, **kwargs):
    """AMSGrad (Reddi et al. 2018): Adam with the running max of the second moment."""
    return Adam(params, lr, betas, eps, weight_decay, amsgrad=True, **kwargs)


@register_optimizer("adabound", **_preset_meta("adabound", named_in_abstract=True))
def AdaBound(
    params,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    final_lr: float = 0.1,
    gamma: float = 1e-3,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    sqrt_t_decay: bool = False,
    momentum_schedule: MomentumSchedule | None = None,
    **kwargs: Any,
) -> AdamFamily:
    """AdaBound (Luo et al. 2019): Adam's step clipped into bounds converging to ``final_lr`` (reference code)."""
    rule = AdaBoundRule(beta2=betas[1], eps=eps, final_lr=final_lr, gamma=gamma, sqrt_t_decay=sqrt_t_decay)
    return AdamFamily(params, lr, rule, _momentum(betas, momentum_schedule), weight_decay=weight_decay, **kwargs)


@register_optimizer("adafom", **_preset_meta("adafom", has_betas=False))
def AdaFom(
    params,
    lr: float = 1e-3,
    momentum: float = 0.9,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum_schedule: MomentumSchedule | None = None,
    **kwargs: Any,
) -> AdamFamily:
    """AdaFom (Chen et al. 2019): AdaGrad's averaged squared gradients with first-order momentum.

    ``momentum`` is torch-style (``beta1``).
    """
    return AdamFamily(
        params,
        lr,
        AdaFomRule(eps=eps),
        _momentum((momentum, 0.0), momentum_schedule),
        weight_decay=weight_decay,
        **kwargs,
    )


@register_optimizer("adamplus", **_preset_meta("adamplus", has_betas=False))
def AdamPlus(
    params,
    lr: float = 1e-3,
    momentum: float = 0.9,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum_schedule: MomentumSchedule | None = None,
    **kwargs: Any,
) -> AdamFamily:
    """Adam+ (Liu et al. 2020), norm-based step: ``h = 1/(sqrt(||m||) + eps)``; ``momentum`` is torch-style."""
    return AdamFamily(
        params,
        lr,
        AdamPlusRule(eps=eps),
        _momentum((momentum, 0.0), momentum_schedule),
        weight_decay=weight_decay,
        **kwargs,
    )


@register_optimizer("adabelief", **_preset_meta("adabelief", decoupled_weight_decay=True))
def AdaBelief(
    params,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-16,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = True,
    momentum_schedule: MomentumSchedule | None = None,
    **kwargs: Any,
) -> AdamFamily:
    """AdaBelief (Zhuang et al. 2020): second moment of ``g - m``; defaults of its official code (v0.2)."""
    rule = AdaBeliefRule(beta2=betas[1], eps=eps)
    return AdamFamily(
        params,
        lr,
        rule,
        _momentum(betas, momentum_schedule),
        weight_decay=weight_decay,
        decoupled_weight_decay=decoupled_weight_decay,
        **kwargs,
    )


@register_optimizer("rmsprop_momentum", **_preset_meta("rmsprop"))
def RMSPropMomentum(
    params,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum_schedule: MomentumSchedule | None = None,
    **kwargs: Any,
) -> AdamFamily:
    """RMSProp factor (no bias corrections) on a moving-average first moment."""
    rule = RMSPropRule(beta2=betas[1], eps=eps)
    return AdamFamily(params, lr, rule, _momentum(betas, momentum_schedule), weight_decay=weight_decay, **kwargs)


@register_optimizer("momentum_sgd", **_preset_meta("identity", has_betas=False, has_eps=False))
def MomentumSGD(
    params,
    lr: float = 1e-2,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    momentum_schedule: MomentumSchedule | None = None,
    **kwargs: Any,
) -> AdamFamily:
    """Momentum SGD as a moving average (``h = 1``); ``momentum`` is torch's ``mu`` (``beta = 1 - mu``).

    With ``m_init='first_grad'`` it equals ``torch.optim.SGD(momentum=mu, dampening=mu)``.
    """
    return AdamFamily(
        params, lr, IdentityRule(), _momentum((momentum, 0.0), momentum_schedule), weight_decay=weight_decay, **kwargs
    )


def _momentum(betas: tuple[float, float], schedule: MomentumSchedule | None) -> float | MomentumSchedule:
    """The paper's ``beta``: the schedule when given, else ``1 - beta1`` (validated)."""
    if schedule is not None:
        return schedule
    if not 0.0 <= betas[0] < 1.0:
        raise ValueError(f"beta1={betas[0]} must lie in [0, 1) (torch convention: momentum = 1 - beta)")
    return 1.0 - betas[0]
