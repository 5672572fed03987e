"""IQNAS resource models: FLOPs/params exactly linear in the encoding, measured CPU latency fitted to it.

Paper: IQNAS / BINAS (arXiv 2110.12399), official code github Alibaba-MIIL/BINAS
(``nas/nas_utils/general_purpose.py`` expected latency, ``block_frank_wolfe.py`` latency matrices).
Spec: ``specs/iqnas.md`` §2-3.

On the gated encoding (``iqnas_encoding``) a resource that is a sum over present layers of a per-(layer,
op) cost is linear: ``RES(x) = T_fixed + t @ z``; the spec's bilinear ``p'alpha + alpha'Q beta`` is the same
function. FLOPs and params of the MobileNetV3-like space are exactly of this form because every layer's
input channels, stride and resolution are fixed by its position; the per-op costs come from the shared
counters of ``damokit.nas.structure`` (no second counter here). Latency is measured with real forwards on
this CPU and fitted (linear, or quadratic over chosen pairs) by regression on whole networks.

Deviations (fixed parts only; they shift ``T_fixed``, never the search): the MobileNetV3-like network is
built from ``structure.Block`` kinds, whose stem and 960-channel head convs use ReLU, not h-swish, and
which have no 1280-channel 1x1 conv between pooling and the classifier.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from damokit.nas.iqnas_encoding import MOBILENET_OP_SPECS, OneHotSpace, QuadraticForm, mobilenet_space
from damokit.nas.iqnas_predictors import PairSet, fit_linear, fit_quadratic
from damokit.nas.structure import Block, Structure

__all__ = [
    "MOBILENET_STAGES",
    "mobilenet_structure",
    "mobilenet_resources",
    "fit_resource",
    "measure_latency",
    "measure_lut",
    "calibrate",
]

# (out channels, first stride, activation) of the five searchable stages (spec §2, timm mobilenasnet.py)
MOBILENET_STAGES = ((24, 2, "relu"), (40, 2, "relu"), (80, 2, "hswish"), (112, 1, "hswish"), (192, 2, "hswish"))
_STEM, _DS, _HEAD = 32, 16, 960  # stem conv, depthwise-separable block, last 1x1 conv widths


def _check_mobilenet(space: OneHotSpace) -> None:
    if space != mobilenet_space():
        raise ValueError("this function needs the MobileNetV3-like space of mobilenet_space() (5 stages, 12 ops)")


def _layer_block(s: int, l: int, op: int) -> Block:
    """The inverted-residual block of op ``op`` at layer ``l`` of stage ``s`` (0-based)."""
    cout, stride, act = MOBILENET_STAGES[s]
    cin = (MOBILENET_STAGES[s - 1][0] if s else _DS) if l == 0 else cout
    k, e, se = MOBILENET_OP_SPECS[op]
    return Block("MBConv", cin, cout, stride if l == 0 else 1, k, btn=round(cin * e), se=se, act=act)


def mobilenet_structure(op_ids: np.ndarray, depth: np.ndarray, num_classes: int | None = 1000) -> Structure:
    """The network of one architecture of ``mobilenet_space()``: ``op_ids (5, 4)``, ``depth (5,)``."""
    op_ids, depth = np.asarray(op_ids), np.asarray(depth)
    mobilenet_space().encode(op_ids[None], depth[None])  # validates
    blocks = [
        Block("ConvKXBNRELU", 3, _STEM, stride=2, k=3),
        Block("MBConv", _STEM, _DS, k=3, btn=_STEM),  # depthwise separable: no expansion conv
    ]
    blocks += [_layer_block(s, l, int(op_ids[s, l])) for s in range(len(MOBILENET_STAGES)) for l in range(depth[s])]
    blocks.append(Block("ConvKXBNRELU", MOBILENET_STAGES[-1][0], _HEAD, k=1))
    return Structure(tuple(blocks), num_classes=num_classes)


def mobilenet_resources(
    space: OneHotSpace, resolution: int = 224, num_classes: int | None = 1000
) -> dict[str, QuadraticForm]:
    """Exact FLOPs (``"mflops"``, plain conv + linear MACs, millions) and params (``"mparams"``) forms.

    Per-op costs are the ``structure`` counters of each block at its position; ``T_fixed`` is the rest of
    the network. Exact on every architecture (tested against ``Structure.flops`` of whole networks).
    """
    _check_mobilenet(space)
    k = space.num_ops
    flops, params = np.zeros(space.dim), np.zeros(space.dim)
    res_in = resolution / 2.0  # after the stride-2 stem
    for layer, (s, l) in enumerate(space.layers):
        if l == 0 and s:
            res_in /= MOBILENET_STAGES[s - 1][1]
        r = res_in if l == 0 else res_in / MOBILENET_STAGES[s][1]
        for op in range(k):
            block = _layer_block(s, l, op)
            flops[layer * k + op] = block.flops(r, extras=False)
            params[layer * k + op] = block.params()
    # fixed part = a whole network minus its searchable layers
    op_ids, depth = np.zeros((5, 4), dtype=np.int64), np.full(5, 2)
    x = space.encode(op_ids[None], depth[None])[0]
    net = mobilenet_structure(op_ids, depth, num_classes)
    fixed_flops = net.flops(resolution, extras=False) - flops @ x
    fixed_params = net.params() - params @ x
    return {
        "mflops": QuadraticForm(fixed_flops / 1e6, flops / 1e6),
        "mparams": QuadraticForm(fixed_params / 1e6, params / 1e6),
    }


def fit_resource(
    space: OneHotSpace,
    X: np.ndarray,
    values: np.ndarray,
    *,
    pairs: PairSet | None = None,
    ridge: float = 0.0,
) -> tuple[QuadraticForm, float]:
    """Fit a resource form to measured ``values (n,)`` of encodings ``X (n, dim)``.

    ``pairs=None`` fits a linear form; with ``ridge == 0`` it is the minimum-norm least-squares solution,
    which reproduces an exactly linear resource to rounding error (the one-hot collinearity only makes
    the coefficients non-unique, not the values). With ``pairs`` a quadratic form is fitted by ridge.

    Returns:
        The form and the largest absolute fitting error on ``X``.
    """
    X = space.check(X)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(values) != len(X):
        raise ValueError(f"X has {len(X)} rows but values has {len(values)} entries")
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0; got {ridge}")
    if pairs is not None:
        form = fit_quadratic(space, X, values, ridge=ridge if ridge > 0 else 1e-6, pairs=pairs)
    elif ridge > 0:
        form = fit_linear(space, X, values, ridge=ridge)
    else:
        coef, *_ = np.linalg.lstsq(np.c_[np.ones(len(X)), X], values, rcond=None)
        form = QuadraticForm(coef[0], coef[1:])
    return form, float(np.abs(form(X) - values).max())


_CLOCKS = {"cpu": time.thread_time, "wall": time.perf_counter}


def _time_round_robin(
    modules: list[torch.nn.Module],
    inputs: list[torch.Tensor],
    rounds: int,
    warmup: int,
    threads: int,
    clock: str,
) -> np.ndarray:
    """Fastest of ``rounds`` forwards of each module on its input, timed round-robin (see ``measure_latency``)."""
    if rounds < 1 or warmup < 0 or threads < 1:
        raise ValueError(f"need rounds >= 1, warmup >= 0, threads >= 1; got {rounds}, {warmup}, {threads}")
    if clock not in _CLOCKS:
        raise ValueError(f"clock must be 'cpu' or 'wall'; got {clock!r}")
    if clock == "cpu" and threads != 1:
        raise ValueError(f"clock='cpu' reads this thread's CPU time, so it needs threads=1; got threads={threads}")
    now = _CLOCKS[clock]
    times = np.empty((rounds, len(modules)))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for r in range(warmup + rounds):
                for i, (module, inp) in enumerate(zip(modules, inputs)):
                    start = now()
                    module(inp)
                    if r >= warmup:
                        times[r - warmup, i] = now() - start
    finally:
        torch.set_num_threads(previous)
    return times.min(axis=0)


def measure_latency(
    structures: list[Structure],
    *,
    resolution: int = 224,
    batch: int = 1,
    rounds: int = 5,
    warmup: int = 1,
    threads: int = 1,
    clock: str = "cpu",
) -> np.ndarray:
    """Seconds of one eval-mode forward of each structure's network on this CPU (fastest of rounds).

    The official tables time PyTorch/ONNX wall-clock latency on an Intel Xeon CPU at batch 1 (spec §3).
    This machine is shared by many processes, so by default (``clock="cpu"``, ``threads=1``) the forward's
    *CPU time on the calling thread* is measured: it excludes the time the process waits descheduled,
    which wall time includes (measured: 10-ms scheduler slices on 0.4-ms blocks); on an idle machine with
    one thread the two agree. ``clock="wall"`` gives wall time. Networks are timed round-robin (one forward
    of each per round, ``rounds`` rounds after ``warmup`` untimed ones) so that a change of load hits all
    alike, and each keeps its fastest round. More ``threads`` (wall clock only) spin-wait for each other on
    a loaded machine: forwards measured 10-50x slower and far noisier.
    """
    if batch < 1 or resolution < 8:
        raise ValueError(f"need batch >= 1 and resolution >= 8; got batch={batch}, resolution={resolution}")
    gen = torch.Generator().manual_seed(0)
    inp = torch.randn(batch, 3, resolution, resolution, generator=gen)
    nets = [s.build().eval() for s in structures]
    return _time_round_robin(nets, [inp] * len(nets), rounds, warmup, threads, clock)


def measure_lut(
    space: OneHotSpace,
    *,
    resolution: int = 224,
    rounds: int = 5,
    warmup: int = 1,
    threads: int = 1,
    clock: str = "cpu",
) -> QuadraticForm:
    """Latency lookup table (spec §3): each (layer, op) block timed alone at its position, batch 1.

    ``T_fixed`` is the timed stem + depthwise-separable block + head (1x1 conv, pooling, classifier) of the
    smallest network; timing as in ``measure_latency``. The result is the table-sum latency form (seconds);
    the official search script corrects it with a linear fit ``slope * LAT + intercept`` against whole
    networks (``calibrate``).
    """
    _check_mobilenet(space)
    if resolution < 32:
        raise ValueError(f"resolution must be >= 32 (five stride-2 stages); got {resolution}")
    gen = torch.Generator().manual_seed(0)
    modules, inputs = [], []
    res = resolution // 2
    for s, l in space.layers:
        if l == 0 and s:
            res //= MOBILENET_STAGES[s - 1][1]
        r = res if l == 0 else res // MOBILENET_STAGES[s][1]
        for op in range(space.num_ops):
            block = _layer_block(s, l, op)
            modules.append(Structure((block,), in_channels=block.cin).build().eval())
            inputs.append(torch.randn(1, block.cin, r, r, generator=gen))
    net = mobilenet_structure(np.zeros((5, 4), dtype=np.int64), np.full(5, 2))
    stem = Structure(net.blocks[:2]).build().eval()
    head = Structure(net.blocks[-1:], num_classes=net.num_classes, in_channels=net.blocks[-1].cin).build().eval()
    final = resolution // 2 // int(np.prod([st for _, st, _ in MOBILENET_STAGES]))
    modules += [stem, head]
    inputs += [
        torch.randn(1, 3, resolution, resolution, generator=gen),
        torch.randn(1, net.blocks[-1].cin, final, final, generator=gen),
    ]
    t = _time_round_robin(modules, inputs, rounds, warmup, threads, clock)
    return QuadraticForm(t[-2] + t[-1], np.r_[t[:-2], np.zeros(space.num_beta)])


def calibrate(form: QuadraticForm, X: np.ndarray, measured: np.ndarray) -> tuple[QuadraticForm, float, float]:
    """The official linear correction: fit ``measured ~ slope * form(X) + intercept``; return the corrected form.

    Returns:
        ``(corrected form, slope, intercept)``.
    """
    pred = form(X)
    measured = np.asarray(measured, dtype=np.float64).reshape(-1)
    if len(measured) != len(pred) or len(pred) < 2:
        raise ValueError(f"need >= 2 measured networks matching X's rows; got {len(measured)} for {len(pred)} rows")
    slope, intercept = np.polyfit(pred, measured, 1)
    corrected = QuadraticForm(slope * form.const + intercept, slope * form.linear, form.pairs, slope * form.weights)
    return corrected, float(slope), float(intercept)
