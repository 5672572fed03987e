"""Zero-shot neural architecture search: ZenDet / MAE-DET (entropy scores, evolutionary search) and IQNAS.

Modules: ``bench_macro`` (the NAS-Bench-Macro ground truth), ``structure`` (backbone descriptions with
exact FLOPs/params/layer counters), ``zen`` (MAE-DET entropy and Zen-score), ``zendet`` (the search).
"""

from damokit.nas.bench_macro import MacroBench, check_macro_arch, load_bench_macro

__all__ = ["MacroBench", "check_macro_arch", "load_bench_macro"]
