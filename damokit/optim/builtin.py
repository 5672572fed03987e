"""torch's own SGD, Adam and AdamW, registered so that ``TrainConfig(optimizer=...)`` can name them."""

from __future__ import annotations

import torch

from damokit.registry import names, register_optimizer

__all__ = ["list_optimizers"]


@register_optimizer("sgd", source="torch")
def sgd(params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9, **kwargs) -> torch.optim.Optimizer:
    """torch.optim.SGD with momentum 0.9 by default."""
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum, **kwargs)


@register_optimizer("adam", source="torch")
def adam(params, lr: float, weight_decay: float = 0.0, **kwargs) -> torch.optim.Optimizer:
    """torch.optim.Adam."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **kwargs)


@register_optimizer("adamw", source="torch")
def adamw(params, lr: float, weight_decay: float = 0.01, **kwargs) -> torch.optim.Optimizer:
    """torch.optim.AdamW."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **kwargs)


def list_optimizers(pattern: str = "*") -> list[str]:
    """Registered optimizer names matching ``pattern``."""
    return names("optimizer", pattern)
