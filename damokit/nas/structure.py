"""Backbone descriptions for zero-shot NAS: a serializable chain of blocks with exact counters.

A :class:`Structure` is an immutable, hashable tuple of :class:`Block` s (plus an optional classifier).
It builds a real ``nn.Module`` (:meth:`Structure.build`), counts FLOPs, params and conv layers without
building anything, lists its main-branch convolutions (what the entropy scores see) and keeps the stage
bookkeeping of TinyNAS (a stage ends before every stride-2 block other than the first block).

Block kinds (``Block.kind``; the first two use the class names of the official TinyNAS structure files,
``alibaba/lightweight-neural-architecture-search`` ``configs/detection/models/maedet_*.txt``):

* ``"ConvKXBNRELU"``: k x k conv (stride ``stride``) + BN + ReLU. 1 conv layer.
* ``"SuperResK1KXK1"``: ``L`` ResNet bottlenecks (1x1 ``cin->btn``, k x k ``btn->btn`` with the stride on
  the first repeat, 1x1 ``btn->cout``; BN after each conv, ReLU after the first two and after the add).
  Shortcut: 2x2 average pooling when the repeat has stride 2, then a 1x1 conv + BN projection on the
  first repeat (TinyNAS ``force_resproj``) or when channels differ; identity otherwise. 3 conv layers
  per repeat.
* ``"MBConv"``: ``L`` MobileNetV2 inverted residuals (1x1 ``cin->btn`` expansion, skipped when
  ``btn == cin``; k x k depthwise with the stride on the first repeat; optional squeeze-excitation on
  the expanded map; linear 1x1 ``btn->cout``), residual add when shape is kept. ``btn`` is the hidden
  width (``round(cin * expansion)``), ``act`` the activation ("relu" or "hswish"). As in NAS-Bench-Macro's
  ``train/model.py`` (and MobileNetV3 with ``se=True, act="hswish"``).
* ``"Identity"``: NAS-Bench-Macro's skip op: nothing, or a 1x1 conv + BN (no activation) when the stride
  or the width changes. Cannot repeat (``L == 1``).

Counters (per block, then summed along the chain with the resolution divided by each block's stride, as
TinyNAS ``CnnNet.get_flops`` does, in floating point):

* ``params()``: conv weights + 2 per BN channel + classifier; equals the built module's parameter count.
* ``flops(resolution)``: multiply-accumulates of convs (and of the classifier), plus, with
  ``extras=True`` (default), TinyNAS's small terms: 2 per BN output element, 1 per ReLU output element,
  ``cin`` per stride-2 average pooling and ``cout`` per projected residual add. With ``extras=False`` it
  is the plain conv + linear MAC count used by NAS-Bench-Macro's ``flops`` field. For ``MBConv`` and
  ``Identity`` (not TinyNAS blocks) the extras follow the same rules (BN and activation outputs).
* ``layers()``: main-branch conv layers: 1 per ConvKXBNRELU, 3 per bottleneck repeat (TinyNAS), the
  actual main-branch convs for MBConv (2 or 3 per repeat, SE excluded) and Identity (0 or 1).

Deviations: none for the TinyNAS kinds (counters checked against the released MAE-DET backbones in the
tests). SE and hswish follow MobileNetV3 (SE width ``round8(btn / 4)``); they are extras for IQNAS.
"""

from __future__ import annotations

import ast
import functools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BLOCK_KINDS",
    "Block",
    "ConvSpec",
    "StageInfo",
    "Structure",
    "StructureNet",
    "round8",
]

BLOCK_KINDS = ("ConvKXBNRELU", "SuperResK1KXK1", "MBConv", "Identity")
_KIND_ALIASES = {"SuperResConvK1KXK1": "SuperResK1KXK1"}  # TinyNAS v1 name of the same block
_ACTIVATIONS = ("relu", "hswish")


def round8(x: float) -> int:
    """Round to the nearest multiple of 8, at least 8 (TinyNAS ``smart_round`` with base 8)."""
    return max(8, int(round(x / 8.0)) * 8)


def _se_width(btn: int) -> int:
    return round8(btn / 4)


class ConvSpec(NamedTuple):
    """One main-branch convolution: what the entropy scores see. ``block`` is the index in the chain."""

    cin: int
    cout: int
    k: int
    stride: int
    groups: int
    block: int

    @property
    def fan_in(self) -> int:
        """``(cin / groups) * k^2``: the output variance of a N(0,1) conv on a unit-variance input."""
        return self.cin // self.groups * self.k * self.k


class StageInfo(NamedTuple):
    """A stage: blocks ``[first_block, end_block]`` at one resolution; ``channels`` = C_i at its end."""

    first_block: int
    end_block: int
    channels: int
    num_convs: int  # main-branch convs from the stem up to the end of this stage (cumulative)
    layers: int  # conv layers (``layers()`` convention) up to the end of this stage (cumulative)
    reduction: int  # input resolution / this stage's resolution


@dataclass(frozen=True)
class Block:
    """One block of the chain (see the module docstring for the kinds).

    Attributes:
        kind: one of ``BLOCK_KINDS``.
        cin, cout: input / output channels (``cin`` must equal the previous block's ``cout``).
        stride: 1 or 2; for repeated blocks it applies to the first repeat.
        k: kernel size of the spatial conv (odd).
        btn: bottleneck (SuperResK1KXK1) or hidden (MBConv) width; unused otherwise (0).
        L: number of repeats (SuperResK1KXK1, MBConv); 1 otherwise.
        se: squeeze-excitation in MBConv.
        act: activation of MBConv ("relu" or "hswish").
    """

    kind: str
    cin: int
    cout: int
    stride: int = 1
    k: int = 3
    btn: int = 0
    L: int = 1
    se: bool = False
    act: str = "relu"

    def __post_init__(self) -> None:
        kind = _KIND_ALIASES.get(self.kind, self.kind)
        object.__setattr__(self, "kind", kind)
        if kind not in BLOCK_KINDS:
            raise ValueError(f"unknown block kind {self.kind!r}; choose one of {BLOCK_KINDS}")
        for name in ("cin", "cout"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{kind}: {name} must be a positive int (channels), got {value!r}")
        if self.stride not in (1, 2):
            raise ValueError(f"{kind}: stride must be 1 or 2, got {self.stride!r}")
        if not isinstance(self.k, int) or self.k < 1 or self.k % 2 == 0:
            raise ValueError(f"{kind}: kernel size k must be a positive odd int, got {self.k!r}")
        if not isinstance(self.L, int) or self.L < 1:
            raise ValueError(f"{kind}: number of repeats L must be an int >= 1, got {self.L!r}")
        if kind in ("SuperResK1KXK1", "MBConv") and (not isinstance(self.btn, int) or self.btn <= 0):
            raise ValueError(f"{kind}: bottleneck/hidden width btn must be a positive int, got {self.btn!r}")
        if kind in ("ConvKXBNRELU", "Identity") and self.L != 1:
            raise ValueError(f"{kind} does not repeat: L must be 1, got {self.L}")
        if self.act not in _ACTIVATIONS:
            raise ValueError(f"{kind}: act must be one of {_ACTIVATIONS}, got {self.act!r}")
        object.__setattr__(self, "_hash", hash(tuple(getattr(self, f.name) for f in fields(self))))

    def __hash__(self) -> int:  # cached: structures are hashed millions of times during a search
        return self._hash

    # ---- per-repeat view -------------------------------------------------------------------------
    def repeats(self) -> list[tuple[int, int]]:
        """(cin, stride) of each repeat: the first takes the block's input and stride, the rest keep shape."""
        return [(self.cin, self.stride)] + [(self.cout, 1)] * (self.L - 1)

    def convs(self, index: int = 0) -> list[ConvSpec]:
        """Main-branch convolutions in forward order (residual projections and SE excluded)."""
        if self.kind == "ConvKXBNRELU":
            return [ConvSpec(self.cin, self.cout, self.k, self.stride, 1, index)]
        if self.kind == "Identity":
            keeps = self.stride == 1 and self.cin == self.cout
            return [] if keeps else [ConvSpec(self.cin, self.cout, 1, self.stride, 1, index)]
        out = []
        for cin, stride in self.repeats():
            if self.kind == "SuperResK1KXK1":
                out += [
                    ConvSpec(cin, self.btn, 1, 1, 1, index),
                    ConvSpec(self.btn, self.btn, self.k, stride, 1, index),
                    ConvSpec(self.btn, self.cout, 1, 1, 1, index),
                ]
            else:  # MBConv
                if self.btn != cin:
                    out.append(ConvSpec(cin, self.btn, 1, 1, 1, index))
                out += [ConvSpec(self.btn, self.btn, self.k, stride, self.btn, index)]
                out += [ConvSpec(self.btn, self.cout, 1, 1, 1, index)]
        return out

    def log_fan_in_sum(self) -> float:
        """``sum(log fan_in)`` over :meth:`convs` in O(1) (the closed-form entropy's per-block term)."""
        if self.kind == "SuperResK1KXK1":
            # first repeat: cin, btn k^2, btn; the L-1 others: cout, btn k^2, btn
            return math.log(self.cin) + (self.L - 1) * math.log(self.cout) + self.L * math.log(self.btn**2 * self.k**2)
        return sum(math.log(c.fan_in) for c in self.convs())

    def layers(self) -> int:
        """Conv layers by the official counter (3 per bottleneck repeat; main-branch convs otherwise)."""
        if self.kind == "SuperResK1KXK1":
            return 3 * self.L
        if self.kind == "ConvKXBNRELU":
            return 1
        return len(self.convs())

    # ---- counters -----------------------------------------------------------------------------------
    def params(self) -> int:
        """Trainable parameters: conv weights + BN weight and bias (2 per channel)."""

        def conv(cin: int, cout: int, k: int, groups: int = 1) -> int:
            return cin * cout * k * k // groups + 2 * cout

        if self.kind == "ConvKXBNRELU":
            return conv(self.cin, self.cout, self.k)
        if self.kind == "Identity":
            return sum(conv(c.cin, c.cout, 1) for c in self.convs())
        total = 0
        for i, (cin, _) in enumerate(self.repeats()):
            if self.kind == "SuperResK1KXK1":
                total += conv(cin, self.btn, 1) + conv(self.btn, self.btn, self.k) + conv(self.btn, self.cout, 1)
                if i == 0 or cin != self.cout:  # projection on the first repeat (TinyNAS force_resproj)
                    total += conv(cin, self.cout, 1)
            else:
                total += conv(cin, self.btn, 1) if self.btn != cin else 0
                total += conv(self.btn, self.btn, self.k, groups=self.btn) + conv(self.btn, self.cout, 1)
                if self.se:  # two 1x1 convs with bias (no BN)
                    se = _se_width(self.btn)
                    total += self.btn * se + se + se * self.btn + self.btn
        return total

    def flops(self, resolution: float, extras: bool = True) -> float:
        """FLOPs of this block at an input of ``resolution`` x ``resolution`` (TinyNAS ``get_flops``).

        Multiply-accumulates of the convs, plus (``extras``) 2 per BN output, 1 per activation output,
        ``cin`` per pooled input pixel of a stride-2 shortcut and ``cout`` per projected residual add.
        """
        e = 1.0 if extras else 0.0
        r2 = float(resolution) ** 2  # squared input resolution of the current repeat
        if self.kind == "ConvKXBNRELU":
            s2 = self.stride**2
            return r2 * (self.cin * self.cout * self.k**2 + e * 3 * self.cout) / s2  # conv, BN (2), ReLU (1)
        if self.kind == "Identity":
            return sum(r2 * (c.cin * c.cout + e * 2 * c.cout) / c.stride**2 for c in self.convs())
        total = 0.0
        b, o, k2 = self.btn, self.cout, self.k**2
        for i, (cin, stride) in enumerate(self.repeats()):
            s2 = stride**2
            if self.kind == "SuperResK1KXK1":
                proj = i == 0 or cin != o
                macs = cin * b + b * b * k2 / s2 + b * o / s2 + (cin * o / s2 if proj else 0.0)
                bn = 2 * b + 2 * b / s2 + 2 * o / s2 + (2 * o / s2 if proj else 0.0)
                other = b + b / s2 + o / s2  # ReLU after conv1, conv2 and the add
                other += (cin if stride == 2 else 0.0) + (o / s2 if proj else 0.0)  # pooling, projected add
                total += r2 * (macs + e * (bn + other))
            else:
                expand = b != cin
                macs = (cin * b if expand else 0.0) + b * k2 / s2 + b * o / s2
                bn_act = (3 * b if expand else 0.0) + 3 * b / s2 + 2 * o / s2
                total += r2 * (macs + e * bn_act)
                if self.se:  # the two 1x1 convs run on a 1x1 map; pooling and gating touch every element
                    se = _se_width(b)
                    total += 2 * b * se + e * (2 * r2 * b / s2 + se + b)
            r2 /= s2
        return total


# ---- the whole chain -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Structure:
    """An immutable chain of blocks, optionally followed by GAP + a linear classifier.

    ``Structure.from_dicts(official_list)`` reads the TinyNAS structure format; :meth:`to_dicts` writes it.
    Equal structures compare and hash equal, so they can be deduplicated in a population.
    """

    blocks: tuple[Block, ...]
    num_classes: int | None = None
    in_channels: int = field(default=3)

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))
        if not self.blocks:
            raise ValueError("a Structure needs at least one block, got an empty list")
        if self.blocks[0].cin != self.in_channels:
            raise ValueError(
                f"block 0 has cin={self.blocks[0].cin} but the input has in_channels={self.in_channels}; "
                "set in_channels or fix the first block"
            )
        for i in range(1, len(self.blocks)):
            prev, cur = self.blocks[i - 1], self.blocks[i]
            if cur.cin != prev.cout:
                raise ValueError(
                    f"channels are not chained: block {i} ({cur.kind}) has cin={cur.cin} but block {i - 1} "
                    f"outputs cout={prev.cout}; set cin={prev.cout}"
                )
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 or None (no classifier), got {self.num_classes}")
        object.__setattr__(self, "_hash", hash((self.blocks, self.num_classes, self.in_channels)))

    def __hash__(self) -> int:  # cached (see Block.__hash__)
        return self._hash

    # ---- (de)serialization ----
    @classmethod
    def from_dicts(cls, items: Iterable[dict], **kwargs) -> Structure:
        """From TinyNAS dicts ``{'class', 'in', 'out', 's', 'k', 'L', 'btn'}`` (extra keys ``se``, ``act``)."""
        blocks = []
        for i, d in enumerate(items):
            unknown = set(d) - {"class", "in", "out", "s", "k", "L", "btn", "se", "act"}
            if unknown or not {"class", "in", "out"} <= set(d):
                raise ValueError(
                    f"block {i}: a block dict needs keys 'class', 'in', 'out' (optional 's', 'k', 'L', 'btn', "
                    f"'se', 'act'); got keys {sorted(d)}"
                )
            blocks.append(
                Block(
                    kind=d["class"],
                    cin=d["in"],
                    cout=d["out"],
                    stride=d.get("s", 1),
                    k=d.get("k", 3),
                    btn=d.get("btn", 0),
                    L=d.get("L", 1),
                    se=bool(d.get("se", False)),
                    act=d.get("act", "relu"),
                )
            )
        return cls(tuple(blocks), **kwargs)

    @classmethod
    def from_text(cls, text: str, **kwargs) -> Structure:
        """Parse a JSON list of block dicts, or an official ``best_structure.txt`` / ``maedet_*.txt``."""
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            try:
                obj = ast.literal_eval(text.strip())
            except (ValueError, SyntaxError) as err:
                raise ValueError(f"cannot parse structure text (neither JSON nor a Python literal): {err}") from None
        if isinstance(obj, dict):
            if "blocks" in obj:  # damokit JSON (to_json)
                kwargs = {"num_classes": obj.get("num_classes"), **kwargs}
                obj = obj["blocks"]
            elif "best_structures" in obj:  # TinyNAS structure file
                obj = obj["best_structures"][0]
        if not isinstance(obj, list) or not all(isinstance(d, dict) for d in obj):
            raise ValueError("structure text must hold a list of block dicts")
        return cls.from_dicts(obj, **kwargs)

    def to_dicts(self) -> list[dict]:
        """TinyNAS-style dicts; keys that hold their default are left out except the core ones."""
        out = []
        for b in self.blocks:
            d = {"class": b.kind, "in": b.cin, "out": b.cout, "s": b.stride, "k": b.k}
            if b.kind in ("SuperResK1KXK1", "MBConv"):
                d.update(L=b.L, btn=b.btn)
            if b.se:
                d["se"] = True
            if b.act != "relu":
                d["act"] = b.act
            out.append(d)
        return out

    def to_json(self) -> str:
        return json.dumps({"blocks": self.to_dicts(), "num_classes": self.num_classes})

    def __str__(self) -> str:
        return json.dumps(self.to_dicts())

    def replace_blocks(self, blocks: Sequence[Block]) -> Structure:
        return Structure(tuple(blocks), num_classes=self.num_classes, in_channels=self.in_channels)

    # ---- bookkeeping ----
    def convs(self) -> list[ConvSpec]:
        """All main-branch convolutions in forward order."""
        return [c for i, b in enumerate(self.blocks) for c in b.convs(i)]

    def stage_ends(self) -> list[int]:
        """Index of the last block of each stage (TinyNAS ``get_stage_info``)."""
        ends = [i - 1 for i in range(1, len(self.blocks)) if self.blocks[i].stride == 2]
        return ends + [len(self.blocks) - 1]

    def stages(self) -> list[StageInfo]:
        """Stage bookkeeping: a stage ends before every stride-2 block other than the first block."""
        out, first, convs, layers, reduction = [], 0, 0, 0, 1
        ends = set(self.stage_ends())
        for i, b in enumerate(self.blocks):
            convs += len(b.convs())
            layers += b.layers()
            reduction *= b.stride
            if i in ends:
                out.append(StageInfo(first, i, b.cout, convs, layers, reduction))
                first = i + 1
        return out

    def num_downsamples(self) -> int:
        return sum(b.stride == 2 for b in self.blocks)

    # ---- counters ----
    def layers(self) -> int:
        return sum(b.layers() for b in self.blocks)

    def params(self) -> int:
        head = 0 if self.num_classes is None else self.blocks[-1].cout * self.num_classes + self.num_classes
        return sum(_block_params(b) for b in self.blocks) + head

    def flops(self, resolution: int = 224, extras: bool = True) -> float:
        """FLOPs at a ``resolution`` x ``resolution`` input (see the module docstring for the convention)."""
        if resolution < 1:
            raise ValueError(f"resolution must be a positive int, got {resolution}")
        total, res = 0.0, float(resolution)
        for b in self.blocks:
            total += _block_flops(b, res, extras)
            res /= b.stride
        if self.num_classes is not None:
            total += self.blocks[-1].cout * self.num_classes
        return total

    def build(self) -> StructureNet:
        """A real, trainable ``nn.Module`` (Kaiming-initialised) for this structure."""
        return StructureNet(self)


# A search evaluates ~10^5 children that share most blocks with their parents: memoise per block.
@functools.lru_cache(maxsize=1 << 16)
def _block_flops(block: Block, resolution: float, extras: bool) -> float:
    return block.flops(resolution, extras)


@functools.lru_cache(maxsize=1 << 16)
def _block_params(block: Block) -> int:
    return block.params()


# ---- modules ---------------------------------------------------------------------------------------------
def _act(name: str) -> nn.Module:
    return nn.ReLU(inplace=True) if name == "relu" else nn.Hardswish(inplace=True)


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout))


class _ResidualUnit(nn.Module):
    """main(x) + shortcut(x) followed by ``post`` (ReLU for bottlenecks); ``residual=False`` drops the link."""

    def __init__(self, main: nn.Module, shortcut: nn.Module | None, post: nn.Module | None) -> None:
        super().__init__()
        self.main = main
        self.shortcut = shortcut
        self.post = post if post is not None else nn.Identity()
        self.residual = True

    def forward(self, x: Tensor) -> Tensor:
        out = self.main(x)
        if self.residual and self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.post(out)


class _SqueezeExcite(nn.Module):
    """MobileNetV3 SE: x * hsigmoid(W2 relu(W1 GAP(x)))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = _se_width(channels)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        w = F.adaptive_avg_pool2d(x, 1)  # (B, C, 1, 1)
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(w))))


def _block_module(b: Block) -> nn.Module:
    if b.kind == "ConvKXBNRELU":
        return nn.Sequential(*_conv_bn(b.cin, b.cout, b.k, b.stride), nn.ReLU(inplace=True))
    if b.kind == "Identity":
        return nn.Identity() if not b.convs() else _conv_bn(b.cin, b.cout, 1, b.stride)
    units = []
    for i, (cin, stride) in enumerate(b.repeats()):
        if b.kind == "SuperResK1KXK1":
            main = nn.Sequential(
                *_conv_bn(cin, b.btn, 1),
                nn.ReLU(inplace=True),
                *_conv_bn(b.btn, b.btn, b.k, stride),
                nn.ReLU(inplace=True),
                *_conv_bn(b.btn, b.cout, 1),
            )
            # ceil_mode: odd feature sizes (e.g. 15 -> 8) match the strided conv of the main branch
            pool = [nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)] if stride == 2 else []
            proj = list(_conv_bn(cin, b.cout, 1)) if i == 0 or cin != b.cout else []
            shortcut = nn.Sequential(*pool, *proj) if pool or proj else nn.Identity()
            units.append(_ResidualUnit(main, shortcut, nn.ReLU(inplace=True)))
        else:
            layers: list[nn.Module] = []
            if b.btn != cin:
                layers += [*_conv_bn(cin, b.btn, 1), _act(b.act)]
            layers += [*_conv_bn(b.btn, b.btn, b.k, stride, groups=b.btn), _act(b.act)]
            if b.se:
                layers.append(_SqueezeExcite(b.btn))
            layers += list(_conv_bn(b.btn, b.cout, 1))
            keeps = stride == 1 and cin == b.cout
            units.append(_ResidualUnit(nn.Sequential(*layers), nn.Identity() if keeps else None, None))
    return nn.Sequential(*units)


class StructureNet(nn.Module):
    """The network of a :class:`Structure`.

    ``forward(x)`` returns logits (B, num_classes) when the structure has a classifier, else the list of
    stage-end feature maps selected by ``out_indices`` (default: every stage but the first, i.e. C2..C5
    of a 5-stage detection backbone). ``forward_features(x)`` returns all stage ends; ``forward_pre_gap``
    the last feature map. ``set_residual(False)`` removes every residual link (for the Zen-score).

    Shapes: x (B, in_channels, H, W); stage i output (B, C_i, H / r_i, W / r_i).
    """

    def __init__(self, structure: Structure, out_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        self.structure = structure
        self.blocks = nn.ModuleList(_block_module(b) for b in structure.blocks)
        self.stage_ends = structure.stage_ends()
        n = len(self.stage_ends)
        self.out_indices = tuple(range(1, n) if n > 1 else (0,)) if out_indices is None else tuple(out_indices)
        if any(not 0 <= i < n for i in self.out_indices):
            raise ValueError(f"out_indices {self.out_indices} out of range for a structure with {n} stages")
        self.out_channels = [structure.blocks[self.stage_ends[i]].cout for i in self.out_indices]
        nc = structure.num_classes
        self.classifier = nn.Linear(structure.blocks[-1].cout, nc) if nc is not None else None
        self.apply(_init_weights)

    def set_residual(self, enabled: bool) -> StructureNet:
        for m in self.modules():
            if isinstance(m, _ResidualUnit):
                m.residual = enabled
        return self

    def forward_features(self, x: Tensor) -> list[Tensor]:
        feats, ends = [], set(self.stage_ends)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in ends:
                feats.append(x)
        return feats

    def forward_pre_gap(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        if self.classifier is not None:
            x = self.forward_pre_gap(x).mean(dim=(2, 3))  # (B, C)
            return self.classifier(x)
        feats = self.forward_features(x)
        return [feats[i] for i in self.out_indices]


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, std=0.01)
        nn.init.zeros_(m.bias)
