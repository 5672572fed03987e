"""damokit: ten published deep-learning methods as reusable, tested, fast PyTorch components.

``import damokit`` is cheap: it imports neither torch nor any method module. The public names below
are resolved on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "list_models", "model_info", "register_model"]

_LAZY = {name: "damokit.registry" for name in ("create_model", "list_models", "model_info", "register_model")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'damokit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
