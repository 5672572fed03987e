"""The ten papers damokit implements, keyed by the name used on the command line."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Paper", "PAPERS"]


@dataclass(frozen=True)
class Paper:
    key: str
    title: str
    arxiv: str


PAPERS: dict[str, Paper] = {
    p.key: p
    for p in (
        Paper("fedformer", "FEDformer: Frequency Enhanced Decomposed Transformer", "2201.12740"),
        Paper("elsa", "ELSA: Enhanced Local Self-Attention for Vision Transformer", "2112.12786"),
        Paper("motion_rgbd", "Decoupling and Recoupling Spatiotemporal Representation for RGB-D", "2112.09129"),
        Paper("adam_family", "A Simple and Generic Convergence Proof for a Family of Adam-style Methods", "2112.03459"),
        Paper("transfgu", "TransFGU: Top-down Unsupervised Semantic Segmentation", "2112.01515"),
        Paper("zendet", "MAE-DET: Revisiting Maximum Entropy Principle in Zero-Shot NAS for Detection", "2111.13336"),
        Paper("finetune_selection", "Improved Fine-Tuning by Better Leveraging Pre-Training Data", "2111.12292"),
        Paper(
            "transreid_ssl", "Self-Supervised Pre-Training for Transformer-Based Person Re-Identification", "2111.12084"
        ),
        Paper("iqnas", "IQNAS: Interpretable Integer Quadratic Programming Neural Architecture Search", "2110.12399"),
        Paper("look", "Rethinking Supervised Pre-training for Better Downstream Transferring", "2110.06014"),
    )
}
