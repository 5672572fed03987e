"""Benchmark plumbing: every result states the machine it ran on, and a benchmark's own values win."""

import json
import os

import torch

from damokit import benchmarking, registry
from damokit.benchmarking import BenchResult


def test_run_benchmarks_adds_machine_conditions(monkeypatch, tmp_path):
    monkeypatch.setattr(benchmarking, "load_benchmarks", lambda: None)
    monkeypatch.setitem(registry._REGISTRY, "benchmark", {})

    @registry.register_benchmark("scratch")
    def scratch(quick: bool) -> BenchResult:
        return BenchResult("scratch", "a scratch benchmark", [{"ratio": 2.0}], {"threads": "1 and 2", "k": 5})

    (result,) = benchmarking.run_benchmarks(["scratch"], quick=True, out_dir=tmp_path)

    assert result.conditions["threads"] == "1 and 2"  # the benchmark's own value overrides the machine's
    assert result.conditions["k"] == 5
    assert result.conditions["torch"] == torch.__version__
    assert result.conditions["cores"] == os.cpu_count()
    assert result.conditions["load_average_1min"] >= 0
    saved = json.loads((tmp_path / "scratch.json").read_text())
    assert saved["conditions"] == json.loads(json.dumps(result.conditions))
