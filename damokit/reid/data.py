"""ReID data: the bundled PKU-Reid mini pack and image folders named as Market-1501 (``PPPP_cC...``).

Every loader returns ``ReIDSplit`` tuples of uint8 images ``(N, 3, H, W)`` resized to the model's input,
int64 ``pids`` and 0-based ``camids``. Market-1501 conventions (spec §8): ``pid == -1`` (junk) is dropped,
``pid == 0`` (distractors) is kept.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from damokit.data import load_npz
from damokit.data.reid_synth import ReIDSplit

__all__ = ["resize_images", "load_pku_reid", "parse_market_name", "load_image_folder", "relabel"]

_MARKET = re.compile(r"^(-?\d+)_c(\d+)")
_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


def resize_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize uint8 ``(N, 3, H, W)`` images (bilinear with antialias, as the test transform)."""
    if tuple(images.shape[2:]) == tuple(size):
        return images
    out = F.interpolate(images.float(), size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    return out.round().clamp(0, 255).to(torch.uint8)


def relabel(pids: torch.Tensor) -> torch.Tensor:
    """Map identity numbers to 0..C-1 in sorted order (classifier targets)."""
    return torch.unique(pids, return_inverse=True)[1]


def load_pku_reid(size: tuple[int, int] = (64, 32), query_camera: int = 0) -> dict[str, ReIDSplit]:
    """PKU-Reid mini: ``train`` (62 identities, both cameras, labels 0..61) and a cross-camera test split.

    ``query`` holds the val identities' images of camera ``query_camera`` (0 or 1) and ``gallery`` those
    of the other camera (the pack's own query/gallery flags cover only 28 queries; the cross-camera split
    uses all 12 x 8 images per side). Camera ids are 0-based.
    """
    if query_camera not in (0, 1):
        raise ValueError(f"query_camera must be 0 or 1, got {query_camera}")
    pack = load_npz("reid/pku_reid_mini/pku_reid_mini.npz")
    images = resize_images(torch.from_numpy(np.ascontiguousarray(pack["images"])).permute(0, 3, 1, 2), size)
    pids = torch.from_numpy(pack["person_id"]).long()
    cams = torch.from_numpy(pack["camera_id"]).long() - 1
    train = torch.from_numpy(pack["split"] == "train")
    val = ~train
    q = val & (cams == query_camera)
    g = val & (cams != query_camera)
    return {
        "train": ReIDSplit(images[train], relabel(pids[train]), cams[train]),
        "query": ReIDSplit(images[q], pids[q], cams[q]),
        "gallery": ReIDSplit(images[g], pids[g], cams[g]),
    }


def parse_market_name(name: str) -> tuple[int, int]:
    """``(pid, camid)`` from a Market-1501 file name ``PPPP_cC...`` (camid 0-based).

    Raises:
        ValueError: the name does not start with ``<pid>_c<camera>``.
    """
    m = _MARKET.match(Path(name).name)
    if m is None:
        raise ValueError(
            f"cannot read identity and camera from {name!r}; expected Market-1501 naming '<pid>_c<camera>...', "
            "e.g. 0002_c1s1_000451_03.jpg"
        )
    return int(m.group(1)), int(m.group(2)) - 1


def load_image_folder(folder: str | os.PathLike, size: tuple[int, int] = (256, 128)) -> ReIDSplit:
    """Every image of ``folder`` (Market-1501 naming), resized to ``size``; junk (pid -1) dropped.

    Raises:
        FileNotFoundError: the folder does not exist or holds no images.
        ValueError: a file name the parser cannot read.
    """
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _EXTS)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(_EXTS)}) in {folder}")
    labels = [parse_market_name(p.name) for p in files]
    kept = [(p, pid, cam) for p, (pid, cam) in zip(files, labels) if pid != -1]
    if not kept:
        raise FileNotFoundError(f"every image in {folder} is junk (pid -1)")
    arrays = []
    for p, _, _ in kept:
        with Image.open(p) as im:
            arrays.append(torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1))
    images = torch.stack([resize_images(a[None], size)[0] for a in arrays])
    pids = torch.tensor([pid for _, pid, _ in kept])
    cams = torch.tensor([cam for _, _, cam in kept])
    return ReIDSplit(images, pids, cams)
