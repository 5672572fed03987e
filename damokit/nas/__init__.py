"""Zero-shot neural architecture search: ZenDet / MAE-DET (entropy scores, evolutionary search) and IQNAS.

Modules: ``bench_macro`` (the NAS-Bench-Macro ground truth), ``structure`` (backbone descriptions with
exact FLOPs/params/layer counters), ``zen`` (MAE-DET entropy and Zen-score), ``zendet`` (the search),
``zendet_detect`` (FCOS-style detector, COCO mAP, BCCD), ``iqnas*`` (IQNAS).
"""

from damokit.nas.bench_macro import MacroBench, check_macro_arch, load_bench_macro, macro_structure
from damokit.nas.iqnas import search_macro
from damokit.nas.iqnas_encoding import OneHotSpace, QuadraticForm
from damokit.nas.iqnas_predictors import contribution_estimator, fit_linear, fit_quadratic
from damokit.nas.iqnas_program import solve
from damokit.nas.structure import Block, Structure, StructureNet
from damokit.nas.zen import DETECTION_STAGE_WEIGHTS, entropy_score, stage_entropies, zen_score
from damokit.nas.zendet import INITIAL_DETECTION_STRUCTURE, MAEDET_STRUCTURES, Budget, K1KXK1Space, search

__all__ = [
    "Block",
    "Budget",
    "DETECTION_STAGE_WEIGHTS",
    "INITIAL_DETECTION_STRUCTURE",
    "K1KXK1Space",
    "MAEDET_STRUCTURES",
    "MacroBench",
    "Structure",
    "StructureNet",
    "check_macro_arch",
    "entropy_score",
    "load_bench_macro",
    "macro_structure",
    "search",
    "stage_entropies",
    "zen_score",
    "OneHotSpace",
    "QuadraticForm",
    "contribution_estimator",
    "fit_linear",
    "fit_quadratic",
    "search_macro",
    "solve",
]
