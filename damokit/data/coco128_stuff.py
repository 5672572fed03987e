"""COCO128 thing+stuff masks (``data/segmentation/coco128_stuff.npz``) as segmentation tensors.

The pack stores COCO *panoptic* category ids per pixel (0 = unlabeled). Unsupervised segmentation evaluates
class indices with ``-1`` for unlabeled pixels (TransFGU maps COCO-Stuff 255 -> -1), so this module builds the
id -> index table: ``level="supercategory"`` gives the 27 coarse classes (12 thing then 15 stuff, each block in
alphabetical order), ``level="category"`` the 133 panoptic categories in id order. The panoptic "merged" stuff
classes are not COCO-Stuff's, so numbers on this pack are not comparable with published COCO-Stuff-27 figures.
Terms: per-image Flickr licences (many NonCommercial/NoDerivs); research and test use only.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from damokit.data.images import to_nchw_float
from damokit.data.packs import load_npz

__all__ = ["SegmentationSet", "coco_index_table", "load_coco128_stuff"]

PACK = "segmentation/coco128_stuff.npz"


class SegmentationSet(NamedTuple):
    """Images (N, 3, H, W) float32 in [0, 1], masks (N, H, W) int64 class indices (-1 = unlabeled), names."""

    images: torch.Tensor
    masks: torch.Tensor
    classes: tuple[str, ...]


def coco_index_table(
    class_id: np.ndarray, class_name: np.ndarray, is_thing: np.ndarray, supercategory: np.ndarray, level: str
) -> tuple[np.ndarray, tuple[str, ...]]:
    """A lookup ``table[panoptic_id] -> class index`` (-1 for id 0 and unknown ids) and the class names.

    Shapes:
        class_id, class_name, is_thing, supercategory: (C,) the pack's class table -> table (max_id + 1,)
    """
    if level not in ("supercategory", "category"):
        raise ValueError(f"level must be 'supercategory' (27 classes) or 'category' (133), got {level!r}")
    labeled = class_id != 0
    if level == "category":
        names = tuple(str(n) for n in class_name[labeled])
        index_of_row = np.full(len(class_id), -1, dtype=np.int64)
        index_of_row[labeled] = np.arange(labeled.sum())
    else:
        things = sorted({str(s) for s in supercategory[labeled & is_thing]})
        stuff = sorted({str(s) for s in supercategory[labeled & ~is_thing]})
        names = tuple(things + stuff)
        position = {name: i for i, name in enumerate(names)}
        index_of_row = np.array([position[str(s)] if ok else -1 for s, ok in zip(supercategory, labeled)])
    table = np.full(int(class_id.max()) + 1, -1, dtype=np.int64)
    table[class_id] = index_of_row
    return table, names


def load_coco128_stuff(split: str = "val", *, level: str = "supercategory") -> SegmentationSet:
    """The 100 ``train`` or 100 ``val`` images (or ``all`` 200) at 128 x 128 with index masks.

    Example:
        >>> data = load_coco128_stuff("val")  # doctest: +SKIP
        >>> data.images.shape, len(data.classes)  # doctest: +SKIP
        (torch.Size([100, 3, 128, 128]), 27)
    """
    if split not in ("train", "val", "all"):
        raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
    pack = load_npz(PACK)
    table, names = coco_index_table(
        pack["class_id"], pack["class_name"], pack["class_isthing"], pack["class_supercategory"], level
    )
    keep = np.ones(len(pack["split"]), dtype=bool) if split == "all" else pack["split"] == split
    masks = torch.from_numpy(table[pack["mask"][keep].astype(np.int64)])  # (N, H, W) ids -> indices
    return SegmentationSet(to_nchw_float(pack["image"][keep]), masks, names)
