"""NAS-Bench-Macro: 6,561 CIFAR-10-trained networks of an 8-layer macro space, as numpy arrays.

Source: Su et al., "Prioritized Architecture Sampling with Monte-Carlo Tree Search" (CVPR 2021),
github xiusu/NAS-Bench-Macro, ``data/nas-bench-macro_cifar10.json`` (bundled unmodified under
``data/nas/``; see its README). Each architecture is an 8-character string of choice ids, one per
searchable layer: ``'0'`` identity, ``'1'`` MobileNetV2 block kernel 3 expansion 3, ``'2'`` MobileNetV2
block kernel 5 expansion 6. The network around the layers (``MACRO_*`` constants below) is the
benchmark's ``train/model.py``: stem 3x3 conv 32 at stride 1, three stages of 2/3/3 layers whose first
layer has stride 2 and doubles the width (64/128/256), head 1x1 conv 1280 + GAP + linear.

Both zero-shot NAS methods use it: ZenDet (rank correlation of scores with accuracy) and IQNAS (fit a
quadratic accuracy predictor on a few hundred nets).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import numpy as np

from damokit.data import pack_path
from damokit.nas.structure import Block, Structure

__all__ = [
    "BENCH_MACRO_FILE",
    "MACRO_OPS",
    "MACRO_STAGES",
    "MACRO_STEM_CHANNELS",
    "MACRO_HEAD_CHANNELS",
    "MACRO_NUM_LAYERS",
    "MacroBench",
    "load_bench_macro",
    "check_macro_arch",
    "macro_structure",
]

BENCH_MACRO_FILE = "nas/nas-bench-macro_cifar10.json"
# choice id -> op name, as in the benchmark's train/model.py (`candidate_OP`)
MACRO_OPS = ("id", "ir_3x3_t3", "ir_5x5_t6")
MACRO_STAGES = (2, 3, 3)  # searchable layers per stage; each stage's first layer has stride 2
MACRO_STEM_CHANNELS = 32  # stage widths are 64, 128, 256 (doubling at each stage)
MACRO_HEAD_CHANNELS = 1280
MACRO_NUM_LAYERS = sum(MACRO_STAGES)
_MACRO_EXPANSION_KERNEL = {1: (3, 3), 2: (6, 5)}  # choice id -> (expansion t, kernel k)


def check_macro_arch(arch: str) -> str:
    """Return ``arch`` if it is a valid 8-character choice string, else raise a ValueError saying why."""
    if not isinstance(arch, str) or len(arch) != MACRO_NUM_LAYERS or set(arch) - set("012"):
        raise ValueError(
            f"NAS-Bench-Macro architecture must be a string of {MACRO_NUM_LAYERS} choice ids from "
            f"'0' (id), '1' (ir_3x3_t3), '2' (ir_5x5_t6); got {arch!r}"
        )
    return arch


def macro_structure(arch: str, num_classes: int | None = 10) -> Structure:
    """The network of a NAS-Bench-Macro architecture string as a :class:`Structure`.

    Stem 3x3 conv 32 (stride 1, CIFAR), the 8 chosen layers (Identity / MBConv), head 1x1 conv 1280 + BN +
    ReLU, then GAP + linear when ``num_classes`` is set. Its ``params()`` and ``flops(32, extras=False)``
    equal the benchmark's ``params`` and ``flops`` fields (checked in the tests).
    """
    check_macro_arch(arch)
    blocks = [Block("ConvKXBNRELU", 3, MACRO_STEM_CHANNELS, 1, 3)]
    channels, layer = MACRO_STEM_CHANNELS, 0
    for stage_len in MACRO_STAGES:
        for j in range(stage_len):
            stride, cout = (2, channels * 2) if j == 0 else (1, channels)
            choice = int(arch[layer])
            if choice == 0:
                blocks.append(Block("Identity", channels, cout, stride, 1))
            else:
                t, k = _MACRO_EXPANSION_KERNEL[choice]
                blocks.append(Block("MBConv", channels, cout, stride, k, btn=channels * t))
            channels, layer = cout, layer + 1
    blocks.append(Block("ConvKXBNRELU", channels, MACRO_HEAD_CHANNELS, 1, 1))
    return Structure(tuple(blocks), num_classes=num_classes)


@dataclass(frozen=True)
class MacroBench:
    """The whole benchmark, one row per architecture (rows sorted by architecture string).

    Attributes:
        archs: (N,) architecture strings, e.g. ``"02012100"``.
        choices: (N, 8) int8 choice ids (the same strings as integers).
        test_acc: (N, 3) CIFAR-10 test accuracy (%) of the three training runs.
        mean_acc: (N,) mean of ``test_acc`` (%); the benchmark's target.
        std: (N,) the benchmark's std of the three runs.
        params: (N,) parameter count (the benchmark's own counter, classifier included).
        flops: (N,) FLOPs (multiply-accumulates at 32x32, the benchmark's own counter).
    """

    archs: tuple[str, ...]
    choices: np.ndarray
    test_acc: np.ndarray
    mean_acc: np.ndarray
    std: np.ndarray
    params: np.ndarray
    flops: np.ndarray

    def __len__(self) -> int:
        return len(self.archs)

    def index(self, arch: str) -> int:
        """Row of ``arch``; ValueError if it is not a valid architecture string."""
        check_macro_arch(arch)
        # 3^8 strings sorted lexicographically = base-3 numbers in order, and the benchmark holds all of them
        row = int(arch, 3)
        assert self.archs[row] == arch, "benchmark rows are not the complete sorted space"
        return row


@functools.lru_cache(maxsize=1)
def load_bench_macro() -> MacroBench:
    """Load the bundled benchmark (checksum-verified; cached, arrays read-only).

    Raises:
        DataPackError: the JSON file is missing or modified (the message says where to put it).
    """
    with open(pack_path(BENCH_MACRO_FILE), encoding="utf-8") as fh:
        raw = json.load(fh)
    archs = tuple(sorted(raw))
    for arch in archs[:1] + archs[-1:]:
        check_macro_arch(arch)
    rows = [raw[a] for a in archs]
    out = MacroBench(
        archs=archs,
        choices=np.array([[int(c) for c in a] for a in archs], dtype=np.int8),  # (N, 8)
        test_acc=np.array([r["test_acc"] for r in rows], dtype=np.float64),  # (N, 3)
        mean_acc=np.array([r["mean_acc"] for r in rows], dtype=np.float64),
        std=np.array([r["std"] for r in rows], dtype=np.float64),
        params=np.array([r["params"] for r in rows], dtype=np.int64),
        flops=np.array([r["flops"] for r in rows], dtype=np.int64),
    )
    for value in vars(out).values():
        if isinstance(value, np.ndarray):
            value.setflags(write=False)
    return out
