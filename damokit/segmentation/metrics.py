"""Unsupervised segmentation metrics: confusion matrix, Hungarian matching, mIoU and pixel accuracy.

Predicted cluster ids carry no class meaning, so predictions are matched one-to-one to ground-truth classes
by the assignment that maximises matched pixels (``scipy.optimize.linear_sum_assignment``), as TransFGU's
``utils/metric.py`` and every bottom-up baseline do. Pixels labelled ``-1`` are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

__all__ = ["confusion_matrix", "hungarian_match", "SegmentationScores", "segmentation_scores"]


def confusion_matrix(target: torch.Tensor, pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(num_classes, num_classes)`` int64 counts, rows = ground truth, columns = prediction.

    Shapes:
        target, pred: any equal shapes of integer labels; ``-1`` in ``target`` is ignored.
    """
    if target.shape != pred.shape:
        raise ValueError(f"target and prediction shapes differ: {tuple(target.shape)} vs {tuple(pred.shape)}")
    target, pred = target.reshape(-1).long(), pred.reshape(-1).long()
    keep = target >= 0
    target, pred = target[keep], pred[keep]
    if target.numel() and (target.max() >= num_classes or pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}) (ground truth may use -1 for unlabeled); got ground truth up "
            f"to {int(target.max())} and predictions in [{int(pred.min())}, {int(pred.max())}]"
        )
    return torch.bincount(target * num_classes + pred, minlength=num_classes**2).view(num_classes, num_classes)


def hungarian_match(confusion: torch.Tensor) -> np.ndarray:
    """``mapping[pred_id] = gt_class`` maximising the matched pixel count."""
    counts = confusion.cpu().numpy()
    gt_idx, pred_idx = linear_sum_assignment(counts.max() - counts)
    mapping = np.empty(counts.shape[1], dtype=np.int64)
    mapping[pred_idx] = gt_idx
    return mapping


@dataclass(frozen=True)
class SegmentationScores:
    miou: float  # percent, nanmean over classes of TP / (TP + FP + FN)
    pixel_accuracy: float  # percent
    per_class_iou: tuple[float, ...]
    mapping: tuple[int, ...]  # prediction id -> ground-truth class


def segmentation_scores(confusion: torch.Tensor) -> SegmentationScores:
    """Hungarian-matched mIoU and pixel accuracy from an accumulated confusion matrix."""
    mapping = hungarian_match(confusion)
    matched = torch.zeros_like(confusion)
    matched[:, torch.from_numpy(mapping)] = confusion  # column p moves to its matched class
    tp = matched.diag().double()
    fp = matched.sum(0).double() - tp
    fn = matched.sum(1).double() - tp
    denom = tp + fp + fn
    iou = torch.where(denom > 0, tp / denom, torch.full_like(tp, float("nan")))
    total = matched.sum().item()
    return SegmentationScores(
        miou=100.0 * float(np.nanmean(iou.numpy())),
        pixel_accuracy=100.0 * float(tp.sum() / total) if total else float("nan"),
        per_class_iou=tuple(float(v) for v in iou),
        mapping=tuple(int(m) for m in mapping),
    )
