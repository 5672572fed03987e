"""TransReID-SSL person re-identification: ViT(+ICS) with BNNeck, supervised and cluster-contrast training,
Market-1501 evaluation. Importing this package also registers the shared ``vit_*`` models."""

import damokit.nn.vit  # noqa: F401  (registers vit_small_patch16, ..., vit_tiny)
from damokit.reid.metrics import ReIDScores, evaluate, evaluate_features
from damokit.reid.model import IBN, ICSStem, ReIDModel, load_official, reid_vit

__all__ = ["IBN", "ICSStem", "ReIDModel", "ReIDScores", "evaluate", "evaluate_features", "load_official", "reid_vit"]
