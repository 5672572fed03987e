"""Zero-shot scores: the MAE-DET entropy (closed form and forward pass) and the Zen-NAS Zen-score.

Papers: "MAE-DET: Revisiting Maximum Entropy Principle in Zero-Shot NAS for Efficient Object Detection"
(Sun et al., ICML 2022, arXiv 2111.13336); "Zen-NAS: A Zero-Shot NAS for High-Performance Image Recognition"
(Lin et al., ICCV 2021, arXiv 2102.01063). Official code: alibaba/lightweight-neural-architecture-search
(v1 ``nas/scores/compute_entropy.py``; v2 ``tinynas/scores/compute_madnas.py``), idstcv/ZenNAS
(``ZeroShotProxy/compute_zen_score.py``).

MAE-DET entropy of stage i (BN, activations and residual links removed, N(0,1) weights and input):

    E_i = sum_{main-branch convs l up to the end of stage i} log sigma_l + log C_i,   S = sum_i w_i E_i

where sigma_l is the std of conv l's output after the previous output was renormalised to unit std.
In closed form (v2) sigma_l = sqrt(fan_in_l); the forward form (v1) measures it on a Gaussian input.
``stage_weights=None`` means the final stage only (classification); detection uses (0, 0, 1, 1, 6).

Zen-score of a network f (BN kept in training mode, ReLU kept, residual links removed):

    Zen = log E_x || f(x) - f(x + gamma * eps) ||_1  +  sum_{BN j} log sqrt(mean_c var_{j,c})

with f the pre-GAP feature map, the L1 norm summed over (C, H, W) and averaged over the batch.

Deviations:
* The forward entropy takes its per-conv std over the whole tensor as v1 does; with ``init_std != 1``
  the closed form is not defined here (v2 ignores ``init_std`` for unquantised nets too).
* Zen-score: ``bn_stat="batch"`` (default) uses the batch variance of each BN's input on the clean pass
  (the paper's definition); ``bn_stat="running"`` reads ``running_var`` after both passes with momentum
  0.1 from a reset state, i.e. ``0.81 + 0.09 v1 + 0.1 v2`` per channel, as the official function does.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from damokit.nas.structure import ConvSpec, Structure

__all__ = [
    "DETECTION_STAGE_WEIGHTS",
    "stage_entropies",
    "entropy_score",
    "module_convs",
    "zen_score",
]

DETECTION_STAGE_WEIGHTS = (0.0, 0.0, 1.0, 1.0, 6.0)  # MSEP: C3, C4 weight 1, C5 weight 6 (official config)


def _check_weights(stage_weights: Sequence[float] | None, n_stages: int) -> np.ndarray:
    if stage_weights is None:
        w = np.zeros(n_stages)
        w[-1] = 1.0
        return w
    w = np.asarray(stage_weights, dtype=np.float64)
    if w.ndim != 1 or len(w) != n_stages:
        raise ValueError(
            f"stage_weights has {len(w) if w.ndim == 1 else w.shape} entries but the structure has {n_stages} "
            "stages (a stage ends before every stride-2 block); give one weight per stage or None (final stage)"
        )
    return w


def module_convs(module: nn.Module) -> list[ConvSpec]:
    """Main-branch ``nn.Conv2d`` layers of any module, in registration order.

    Convs under a submodule whose name contains ``"shortcut"`` (residual projections of
    :class:`~damokit.nas.structure.StructureNet`) are skipped. Use it on plain conv stacks.
    """
    out = []
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d) and "shortcut" not in name:
            k, s = m.kernel_size, m.stride
            if k[0] != k[1] or s[0] != s[1]:
                raise ValueError(f"conv {name!r}: only square kernels and strides are supported, got {k}, {s}")
            out.append(ConvSpec(m.in_channels, m.out_channels, k[0], s[0], m.groups, 0))
    if not out:
        raise ValueError("the module has no nn.Conv2d outside 'shortcut' submodules; nothing to score")
    return out


@torch.no_grad()
def _forward_log_stds(
    convs: Sequence[ConvSpec], *, batch: int, resolution: int, init_std: float, generator: torch.Generator
) -> np.ndarray:
    """log std of each conv's output on a Gaussian input, renormalising after each conv (v1): (n_convs,)."""
    x = init_std * torch.randn(batch, convs[0].cin, resolution, resolution, generator=generator)
    out = np.empty(len(convs))
    for i, c in enumerate(convs):
        w = init_std * torch.randn(c.cout, c.cin // c.groups, c.k, c.k, generator=generator)
        x = F.conv2d(x, w, stride=c.stride, padding=c.k // 2, groups=c.groups)  # (B, cout, H', W')
        std = x.std()
        out[i] = math.log(std.item())
        x = x / std
    return out


def stage_entropies(
    structure: Structure,
    *,
    mode: str = "closed",
    repeat: int = 4,
    batch: int = 32,
    resolution: int = 480,
    init_std: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """E_i for every stage of ``structure``: (n_stages,). See :func:`entropy_score` for the arguments."""
    if mode == "closed":
        if init_std != 1.0:
            raise ValueError(f"the closed form assumes init_std=1.0, got {init_std}; use mode='forward'")
        out, cum, ends = [], 0.0, structure.stage_ends()
        for i, b in enumerate(structure.blocks):
            cum += 0.5 * b.log_fan_in_sum()  # sum of log sqrt(fan_in) over the block's main-branch convs
            if i == ends[len(out)]:
                out.append(cum + math.log(b.cout))
        return np.array(out)
    if mode != "forward":
        raise ValueError(f"mode must be 'closed' or 'forward', got {mode!r}")
    _check_forward_args(repeat, batch, resolution, init_std)
    convs = structure.convs()
    if not convs:
        raise ValueError("the structure has no convolution; nothing to score")
    # cumulative number of convs at each stage end
    n_at_end = np.array([st.num_convs for st in structure.stages()])
    channels = np.array([st.channels for st in structure.stages()], dtype=np.float64)
    gen = torch.Generator().manual_seed(seed)
    draws = []
    for _ in range(repeat):
        log_std = _forward_log_stds(convs, batch=batch, resolution=resolution, init_std=init_std, generator=gen)
        cum = np.concatenate([[0.0], np.cumsum(log_std)])
        draws.append(cum[n_at_end] + np.log(channels))
    return np.mean(draws, axis=0)


def _check_forward_args(repeat: int, batch: int, resolution: int, init_std: float) -> None:
    for name, value in (("repeat", repeat), ("batch", batch), ("resolution", resolution)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not init_std > 0:
        raise ValueError(f"init_std must be > 0, got {init_std}")


def entropy_score(
    net: Structure | nn.Module,
    *,
    stage_weights: Sequence[float] | None = None,
    mode: str = "closed",
    repeat: int = 4,
    batch: int = 32,
    resolution: int = 480,
    init_std: float = 1.0,
    seed: int = 0,
) -> float:
    """MAE-DET entropy score ``S = sum_i w_i E_i`` of a structure (or of a module's conv stack).

    Args:
        net: a :class:`Structure`, or an ``nn.Module`` whose ``nn.Conv2d`` layers form the main branch in
            registration order (forward mode only, final stage only).
        stage_weights: one weight per stage; ``None`` = final stage only. Detection: (0, 0, 1, 1, 6).
        mode: ``"closed"`` (v2, exact, O(#blocks)) or ``"forward"`` (v1, Gaussian forward pass).
        repeat, batch, resolution, init_std, seed: forward mode only (v1 defaults 4, 32, 480, 1.0).
    """
    if isinstance(net, Structure):
        e = stage_entropies(
            net, mode=mode, repeat=repeat, batch=batch, resolution=resolution, init_std=init_std, seed=seed
        )
        return float(_check_weights(stage_weights, len(e)) @ e)
    if not isinstance(net, nn.Module):
        raise TypeError(f"net must be a Structure or an nn.Module, got {type(net).__name__}")
    if mode != "forward" or stage_weights is not None:
        raise ValueError(
            "an nn.Module is scored by its conv stack: use mode='forward' and stage_weights=None "
            "(stages are only known for a Structure)"
        )
    _check_forward_args(repeat, batch, resolution, init_std)
    convs = module_convs(net)
    gen = torch.Generator().manual_seed(seed)
    draws = [
        _forward_log_stds(convs, batch=batch, resolution=resolution, init_std=init_std, generator=gen).sum()
        for _ in range(repeat)
    ]
    return float(np.mean(draws) + math.log(convs[-1].cout))


@torch.no_grad()
def zen_score(
    net: Structure | nn.Module,
    *,
    gamma: float = 1e-2,
    batch: int = 16,
    resolution: int = 32,
    repeat: int = 1,
    bn_stat: str = "batch",
    seed: int = 0,
) -> float:
    """Zen-NAS Zen-score of a structure (built without residual links) or of a module.

    A module is deep-copied and re-initialised (Gaussian N(0, 1) weights, BN weight 1 / bias 0, BN in
    training mode); its ``forward_pre_gap(x)`` is used when it has one, else ``forward(x)``, which must
    return a (B, C, H, W) map. Residual links of a :class:`Structure` are removed as in Zen-NAS.
    """
    _check_forward_args(repeat, batch, resolution, 1.0)
    if bn_stat not in ("batch", "running"):
        raise ValueError(f"bn_stat must be 'batch' (paper) or 'running' (official code), got {bn_stat!r}")
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    if isinstance(net, Structure):
        model, in_ch = net.build().set_residual(False), net.in_channels
    elif isinstance(net, nn.Module):
        model = copy.deepcopy(net)
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        if first is None:
            raise ValueError("the module has no nn.Conv2d; the Zen-score needs a conv network")
        in_ch = first.in_channels
    else:
        raise TypeError(f"net must be a Structure or an nn.Module, got {type(net).__name__}")
    features = getattr(model, "forward_pre_gap", model)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    gen = torch.Generator().manual_seed(seed)
    scores, batch_vars = [], []  # batch_vars: per-channel variance of each BN input on the clean pass

    def record(_m: nn.Module, inp: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        batch_vars.append(_channel_var(inp[0]))

    for _ in range(repeat):
        _gaussian_init(model, gen)
        model.train()
        x = torch.randn(batch, in_ch, resolution, resolution, generator=gen)
        x_mix = x + gamma * torch.randn(x.shape, generator=gen)
        batch_vars.clear()
        hooks = [bn.register_forward_hook(record) for bn in bns]
        out = features(x)
        for h in hooks:
            h.remove()
        out_mix = features(x_mix)
        if out.dim() != 4:
            raise ValueError(f"the feature map must be (B, C, H, W), got shape {tuple(out.shape)}")
        expressivity = (out - out_mix).abs().sum(dim=(1, 2, 3)).mean()  # L1 over (C, H, W), mean over B
        variances = batch_vars if bn_stat == "batch" else [bn.running_var for bn in bns]
        log_bn = sum(0.5 * math.log(v.mean().item()) for v in variances)
        scores.append(math.log(expressivity.item()) + log_bn)
    return float(np.mean(scores))


def _channel_var(x: torch.Tensor) -> torch.Tensor:
    """Unbiased per-channel variance of a (B, C, H, W) map: (C,)."""
    return x.transpose(0, 1).flatten(1).var(dim=1)


def _gaussian_init(model: nn.Module, gen: torch.Generator) -> None:
    """Zen-NAS ``network_weight_gaussian_init``: N(0, 1) conv/linear weights, BN 1/0, BN stats reset."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.copy_(torch.randn(m.weight.shape, generator=gen))
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.fill_(1.0)
            m.bias.zero_()
            m.reset_running_stats()
            m.momentum = 0.1
