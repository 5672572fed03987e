"""Loading real DINO ViT weights for TransFGU (spec §7): both public formats, strict key report.

Backbone-only files and full training checkpoints (``teacher`` preferred, ``module.``/``backbone.`` prefixes
stripped, ``head.*`` dropped) are handled by ``damokit.nn.vit.load_vit_checkpoint``; the position embedding
is interpolated bicubically to the requested working size, as DINO does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from damokit.nn.vit import LoadReport, VisionTransformer, load_vit_checkpoint
from damokit.registry import create_model

__all__ = ["load_dino_vit"]

_ARCHS = {
    ("vit_small", 8): "vit_small_patch8",
    ("vit_small", 16): "vit_small_patch16",
    ("vit_base", 8): "vit_base_patch8",
    ("vit_base", 16): "vit_base_patch16",
}


def load_dino_vit(
    source: str | os.PathLike | Mapping[str, Any], *, arch: str = "vit_small", patch_size: int = 8, img_size: int = 320
) -> tuple[VisionTransformer, LoadReport]:
    """A frozen-ready DINO ViT with its weights loaded strictly, position embedding sized for ``img_size``.

    Raises:
        ValueError: unknown ``arch``/``patch_size`` pair.
        CheckpointError: missing, unexpected or mis-shaped keys (all listed).
    """
    if (arch, patch_size) not in _ARCHS:
        raise ValueError(f"unknown DINO architecture {arch!r} with patch {patch_size}; choose from {sorted(_ARCHS)}")
    vit = create_model(_ARCHS[(arch, patch_size)], img_size=img_size)
    report = load_vit_checkpoint(source, vit, pos_embed_mode="bicubic")
    return vit.eval(), report
