"""Benchmark plumbing: timing helper, result table, discovery of ``benchmarks/bench_*.py``.

Benchmarks compare a baseline and a candidate in the same process on the same inputs and report the
ratio of medians; absolute times on a shared 2-core machine mean little, ratios from one run do.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from damokit import registry

__all__ = [
    "BenchResult",
    "machine_conditions",
    "time_callable",
    "saved_bytes",
    "load_benchmarks",
    "run_benchmarks",
    "benchmarks_dir",
]


@dataclass
class BenchResult:
    """A benchmark's table: one dict per row, the run's conditions and notes (deviations, caveats)."""

    name: str
    title: str
    rows: list[dict[str, Any]]
    conditions: dict[str, Any] = field(default_factory=dict)
    notes: str = ""

    def format(self) -> str:
        if not self.rows:
            return f"{self.name}: no rows"
        columns = list(self.rows[0])
        cells = [[_fmt(row.get(c)) for c in columns] for row in self.rows]
        widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
        lines = [
            f"## {self.name}: {self.title}",
            "conditions: " + ", ".join(f"{k}={v}" for k, v in self.conditions.items()),
            "  ".join(c.ljust(w) for c, w in zip(columns, widths)),
        ]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
        if self.notes:
            lines.append(self.notes)
        return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def machine_conditions(**extra: Any) -> dict[str, Any]:
    """The machine facts every benchmark and report states (threads, versions, CPU), then ``extra``."""
    import torch

    return {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        **extra,
    }


def time_callable(fn: Callable[[], Any], min_run_time: float = 0.3) -> float:
    """Median seconds per call of ``fn`` after warm-up (``torch.utils.benchmark``)."""
    from torch.utils.benchmark import Timer

    fn()  # warm-up
    return Timer(stmt="fn()", globals={"fn": fn}).blocked_autorange(min_run_time=min_run_time).median


def saved_bytes(fn: Callable[[], Any]) -> int:
    """Bytes of the distinct storages autograd keeps for the backward of ``fn()``: activation memory on a CPU,
    where no allocator statistics exist."""
    import torch

    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


def benchmarks_dir() -> Path:
    """The ``benchmarks/`` folder of the source checkout (benchmarks are not part of the wheel)."""
    return Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmarks() -> None:
    """Import every ``benchmarks/bench_*.py`` so that their ``@register_benchmark`` decorators run."""
    folder = benchmarks_dir()
    if not folder.is_dir():
        raise FileNotFoundError(f"benchmarks live in the source checkout; {folder} does not exist")
    for path in sorted(folder.glob("bench_*.py")):
        mod_name = f"damokit_benchmarks.{path.stem}"
        if mod_name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        spec.loader.exec_module(module)


def run_benchmarks(names: Sequence[str] | None, *, quick: bool, out_dir: Path) -> list[BenchResult]:
    """Run the named benchmarks (all when empty); write ``<name>.json`` for each into ``out_dir``."""
    load_benchmarks()
    selected = list(names) if names else registry.names("benchmark")
    entries = [registry.get("benchmark", n) for n in selected]  # unknown names fail before anything runs
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for entry in entries:
        # the load before the run tells whether the machine was idle; the benchmark's own values come last
        machine = machine_conditions(load_average_1min=round(os.getloadavg()[0], 2))
        result = entry.fn(quick=quick)
        result.conditions = {**machine, **result.conditions}
        (out_dir / f"{entry.name}.json").write_text(json.dumps(asdict(result), indent=2, default=str))
        results.append(result)
    return results
