"""Unsupervised semantic segmentation: TransFGU and the metrics shared by every method."""

from damokit.segmentation.metrics import SegmentationScores, confusion_matrix, hungarian_match, segmentation_scores

__all__ = ["SegmentationScores", "confusion_matrix", "hungarian_match", "segmentation_scores"]
