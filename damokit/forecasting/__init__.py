"""Long-horizon forecasting: FEDformer and its baselines, simple baselines, and the fit/predict API.

Models register themselves by import (``damokit.create_model("dlinear", input_size=96, horizon=24, enc_in=7)``);
``Forecaster`` wraps any of them over pandas DataFrames. Public names resolve lazily, so importing the
package for model registration does not import pandas.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Forecaster": "damokit.forecasting.forecaster",
    "FEDformer": "damokit.forecasting.fedformer",
    "load_official_fedformer": "damokit.forecasting.fedformer",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'damokit.forecasting' has no attribute {name!r}")
