"""Optimizers: torch's basics under registry names, and the Adam-style family of the paper."""

from damokit.optim.adam_family import (
    AdaBelief,
    AdaBound,
    AdaFom,
    Adam,
    AdamFamily,
    AdamPlus,
    AdamW,
    AMSGrad,
    MomentumSGD,
    RMSPropMomentum,
)
from damokit.optim.bilevel import BilevelSEMA
from damokit.optim.builtin import list_optimizers
from damokit.optim.compositional import MovingAverage, compositional_surrogate, kl_dro_surrogate
from damokit.optim.minimax import PrimalDualAdam, box_projection, simplex_projection
from damokit.optim.rules import (
    AdaBeliefRule,
    AdaBoundRule,
    AdaFomRule,
    AdamPlusRule,
    AdamRule,
    AdaptiveRule,
    AMSGradRule,
    Factor,
    IdentityRule,
    RMSPropRule,
)
from damokit.optim.schedules import (
    ConstantMomentum,
    CoupledToLR,
    InverseSqrtMomentum,
    KingmaDecay,
    MomentumSchedule,
    StagewiseMomentum,
)

__all__ = [
    "list_optimizers",
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
    "AdaptiveRule",
    "Factor",
    "IdentityRule",
    "AdamRule",
    "AMSGradRule",
    "AdaBoundRule",
    "AdaFomRule",
    "AdamPlusRule",
    "AdaBeliefRule",
    "RMSPropRule",
    "MomentumSchedule",
    "ConstantMomentum",
    "InverseSqrtMomentum",
    "StagewiseMomentum",
    "CoupledToLR",
    "KingmaDecay",
    "PrimalDualAdam",
    "simplex_projection",
    "box_projection",
    "MovingAverage",
    "compositional_surrogate",
    "kl_dro_surrogate",
    "BilevelSEMA",
]
