"""Optimizers: torch's basics under registry names, and the Adam-style family of the paper."""

from damokit.optim.builtin import list_optimizers

__all__ = ["list_optimizers"]
