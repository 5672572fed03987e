"""One registry for everything that is looked up by name: models, reproductions, benchmarks, optimizers.

Entries are filed by decorators (``@register_model``, ``@register_reproduction``, ...) when their module
is imported. Lookups import the method packages on first use (``_discover``), so ``import damokit``
stays cheap and a new method module registers itself without editing a central list.

Example:
    >>> import damokit
    >>> names = damokit.list_models("*_tiny")
    >>> model = damokit.create_model(names[0]) if names else None
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import pkgutil
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from damokit.errors import DamokitError

__all__ = [
    "Entry",
    "UnknownNameError",
    "register",
    "register_model",
    "register_reproduction",
    "register_benchmark",
    "register_optimizer",
    "get",
    "unknown_name",
    "names",
    "entries",
    "create_model",
    "list_models",
    "model_info",
]

KINDS = ("model", "reproduction", "benchmark", "optimizer")

# Sub-packages whose modules register entries. Every module under them is imported on first lookup.
_PLUGIN_PACKAGES = (
    "nn",
    "forecasting",
    "vision",
    "video",
    "segmentation",
    "reid",
    "nas",
    "selection",
    "optim",
    "pretrain",
    "reproduce",
)


class UnknownNameError(DamokitError, KeyError):
    """A name that is not registered; the message suggests close matches."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


@dataclass(frozen=True)
class Entry:
    """A registered object and what generic code needs to know about it.

    Attributes:
        name: lookup name, ``<method>_<variant>`` in snake case for models.
        kind: one of ``KINDS``.
        fn: the builder (models, optimizers) or runner (reproductions, benchmarks).
        meta: free metadata: ``task``, ``paper`` (arXiv id), ``input_layout``, ``recipe``,
            ``example_inputs`` (callable ``(generator) -> tuple`` of tensors, used by conformance tests),
            ``per_sample`` (outputs of sample i depend only on input i in eval mode), ...
        doc: first line of the builder's docstring.
    """

    name: str
    kind: str
    fn: Callable[..., Any]
    meta: dict[str, Any] = field(default_factory=dict)
    doc: str = ""


_REGISTRY: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
_discovered = False


def register(kind: str, name: str | None = None, **meta: Any) -> Callable[[Callable], Callable]:
    """Decorator filing ``fn`` under ``kind`` and ``name`` (default: the function's name)."""
    if kind not in _REGISTRY:
        raise ValueError(f"unknown registry kind {kind!r}; expected one of {KINDS}")

    def decorator(fn: Callable) -> Callable:
        key = name or fn.__name__
        table = _REGISTRY[kind]
        if key in table and table[key].fn is not fn:
            warnings.warn(f"{kind} {key!r} registered twice; the later one wins", stacklevel=2)
        doc = (fn.__doc__ or "").strip().splitlines()
        table[key] = Entry(key, kind, fn, dict(meta), doc[0] if doc else "")
        return fn

    return decorator


def register_model(fn: Callable | None = None, /, **meta: Any) -> Callable:
    """Register a model builder; usable bare (``@register_model``) or with metadata."""
    if fn is not None:
        return register("model")(fn)
    return register("model", **meta)


def register_reproduction(name: str, **meta: Any) -> Callable[[Callable], Callable]:
    """Register a paper's miniature reproduction ``fn(quick: bool, out_dir: Path) -> ReproResult``."""
    return register("reproduction", name, **meta)


def register_benchmark(name: str, **meta: Any) -> Callable[[Callable], Callable]:
    """Register a benchmark ``fn(quick: bool) -> BenchResult``."""
    return register("benchmark", name, **meta)


def register_optimizer(name: str, **meta: Any) -> Callable[[Callable], Callable]:
    """Register an optimizer factory ``fn(params, lr, **kwargs) -> torch.optim.Optimizer``."""
    return register("optimizer", name, **meta)


def _discover() -> None:
    """Import every module of the method packages once, so that their decorators run."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for pkg_name in _PLUGIN_PACKAGES:
        try:
            pkg = importlib.import_module(f"damokit.{pkg_name}")
        except ModuleNotFoundError as err:
            if err.name == f"damokit.{pkg_name}":
                continue  # package not written yet
            raise
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg.__name__}."):
            importlib.import_module(info.name)


def _table(kind: str) -> dict[str, Entry]:
    if kind not in _REGISTRY:
        raise ValueError(f"unknown registry kind {kind!r}; expected one of {KINDS}")
    _discover()
    return _REGISTRY[kind]


def get(kind: str, name: str) -> Entry:
    """The entry ``name`` of ``kind``; an unknown name raises with close matches."""
    table = _table(kind)
    if name not in table:
        raise unknown_name(kind, name, table)
    return table[name]


def unknown_name(kind: str, name: str, known: Iterable[str]) -> UnknownNameError:
    """The error for an unknown ``name`` of ``kind``, suggesting close matches among ``known``."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return UnknownNameError(f"unknown {kind} {name!r}.{hint} Known: {len(known)}; run `damokit list {kind}s`.")


def names(kind: str, pattern: str = "*") -> list[str]:
    """Sorted names of ``kind`` matching the shell-style ``pattern``."""
    return sorted(n for n in _table(kind) if fnmatch.fnmatchcase(n, pattern))


def entries(kind: str, pattern: str = "*") -> list[Entry]:
    """Entries of ``kind`` matching ``pattern``, sorted by name."""
    table = _table(kind)
    return [table[n] for n in names(kind, pattern)]


def create_model(name: str, **overrides: Any):
    """Build the registered model ``name``; overrides set to ``None`` are dropped (CLI "unset").

    Example:
        >>> import damokit
        >>> m = damokit.create_model("repeat_last", horizon=4)  # doctest: +SKIP
    """
    entry = get("model", name)
    return entry.fn(**{k: v for k, v in overrides.items() if v is not None})


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a wildcard pattern, e.g. ``list_models("fedformer*")``."""
    return names("model", pattern)


def model_info(name: str) -> dict[str, Any]:
    """Metadata of a registered model (task, paper, input layout, default recipe, ...)."""
    entry = get("model", name)
    return {"name": entry.name, "doc": entry.doc, **entry.meta}
