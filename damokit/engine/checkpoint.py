"""Checkpoints: one safetensors file per checkpoint, written atomically, never unpickled.

Tensors (weights, optimizer moments, RNG states) go into the safetensors body; everything else (step,
epoch, optimizer hyper-parameters, early-stopping state, the run's config) is JSON stored in the
safetensors header under the key ``"damokit"``. One file means one atomic ``os.replace``: a reader never
sees weights from one step beside metadata from another, which a pair of files cannot promise.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from damokit.errors import DamokitError

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "load_weights", "flatten_state", "unflatten_state"]

_META_KEY = "damokit"
_TENSOR_TAG = "__tensor__"


class CheckpointError(DamokitError, RuntimeError):
    """A checkpoint is missing, corrupt, or does not fit the model it is loaded into."""


def flatten_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Move every tensor of a nested dict/list into ``tensors`` and return a JSON-able skeleton."""
    if isinstance(obj, torch.Tensor):
        key = prefix.rstrip(".")
        # clone: safetensors refuses tensors that share storage (tied weights, views)
        tensors[key] = obj.detach().to("cpu").clone().contiguous()
        return {_TENSOR_TAG: key}
    if isinstance(obj, Mapping):
        # JSON keys are strings; remember int keys (optimizer state is keyed by param index)
        return {"__dict__": [[k, flatten_state(v, f"{prefix}{k}.", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {
            "__list__": [flatten_state(v, f"{prefix}{i}.", tensors) for i, v in enumerate(obj)],
            "tuple": isinstance(obj, tuple),
        }
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    where = prefix.rstrip(".")
    raise TypeError(
        f"cannot store {type(obj).__name__} at {where!r} in a checkpoint (tensors, numbers, "
        "strings, lists and dicts only)"
    )


def unflatten_state(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Inverse of ``flatten_state``."""
    if isinstance(obj, dict):
        if _TENSOR_TAG in obj:
            return tensors[obj[_TENSOR_TAG]]
        if "__dict__" in obj:
            return {k: unflatten_state(v, tensors) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            items = [unflatten_state(v, tensors) for v in obj["__list__"]]
            return tuple(items) if obj.get("tuple") else items
    return obj


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Write ``state`` (nested dicts of tensors and JSON values) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = flatten_state(dict(state), "", tensors)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={_META_KEY: json.dumps(skeleton)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``.

    Raises:
        CheckpointError: the file is missing, truncated or not a damokit checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a safetensors file: {err}") from err
    if _META_KEY not in meta:
        raise CheckpointError(f"checkpoint {path} has no damokit metadata; was it written by save_checkpoint?")
    try:
        skeleton = json.loads(meta[_META_KEY])
        return unflatten_state(skeleton, tensors)
    except (json.JSONDecodeError, KeyError) as err:
        raise CheckpointError(f"checkpoint {path} has corrupt metadata: {err}") from err


def load_weights(
    module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str = "state_dict", strict: bool = True
) -> None:
    """Load ``state_dict`` into ``module``; on a mismatch raise one error listing every problem key.

    Raises:
        CheckpointError: with the missing, unexpected and mis-shaped keys (when ``strict``).
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    misshaped = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if own[k].shape != state_dict[k].shape
    )
    if misshaped or (strict and (missing or unexpected)):
        problems = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if keys:
                shown = ", ".join(keys[:10]) + (f", ... ({len(keys)} in all)" if len(keys) > 10 else "")
                problems.append(f"{label}: {shown}")
        raise CheckpointError(f"{source} does not fit {type(module).__name__}: " + "; ".join(problems))
    module.load_state_dict(dict(state_dict), strict=strict)
