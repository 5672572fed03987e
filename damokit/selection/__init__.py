"""Fine-tuning data selection: UOT class selection and the joint two-head fine-tuner (arXiv 2111.12292)."""

from damokit.selection.finetune_selection import (
    JointFineTuner,
    SubsetByClass,
    class_means,
    select_classes,
    unbalanced_sinkhorn,
    uot_class_importance,
)

__all__ = [
    "JointFineTuner",
    "SubsetByClass",
    "class_means",
    "select_classes",
    "unbalanced_sinkhorn",
    "uot_class_importance",
]
