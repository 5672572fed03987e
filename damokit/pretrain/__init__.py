"""Supervised pre-training methods: LOOK (leave-one-out kNN)."""

from damokit.pretrain.look import LOOKLoss, LOOKModel, LOOKRecipe, NeighborBank, bank_topk, look_loss, pretrain

__all__ = ["LOOKLoss", "LOOKModel", "LOOKRecipe", "NeighborBank", "bank_topk", "look_loss", "pretrain"]
