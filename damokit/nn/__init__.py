"""Layers shared by several methods (decomposition, attention, embeddings, ViT parts)."""
