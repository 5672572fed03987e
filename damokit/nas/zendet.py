"""ZenDet / MAE-DET: evolutionary search of detection backbones that maximise the multi-scale entropy.

Paper: "MAE-DET: Revisiting Maximum Entropy Principle in Zero-Shot NAS for Efficient Object Detection",
Sun et al., ICML 2022, arXiv 2111.13336. Official code: alibaba/lightweight-neural-architecture-search
(v1 commit 83ad315 ``nas/search.py``, ``nas/spaces/space_K1KXK1.py``, ``nas/evolutions/population.py``;
v2 ``configs/detection/R50_FLOPs.py``, ``configs/detection/models/maedet_{s,m,l}.txt``).

The search is "random mutation of a random population member + truncation": the population starts as
``population`` copies of a small initial structure; each iteration mutates a uniformly drawn member
(``mutations_per_child`` block mutations, each retried up to ``len(blocks)`` times until the child has at
most ``stages`` down-samplings and ``layers`` conv layers), scores it if it meets every budget and
inserts it; when the population exceeds its size it is deduplicated and truncated to the best.

Deviations:
* single process (the official MPI workers each run this same loop with seeds ``13 + rank`` and merge
  populations); ``iterations`` counts generated children, feasible or not, as the official counter does.
* kernel and depth mutations follow the official code, which redraws at most 2 (kernel) or 4 (depth)
  times to find a different value, so a mutation can leave the block unchanged (spec: "switch").
* no latency budget (the official op-level V100 latency predictor is not available).
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from damokit.nas.structure import Block, Structure, StructureNet, round8
from damokit.nas.zen import DETECTION_STAGE_WEIGHTS, entropy_score, zen_score
from damokit.registry import register_model

__all__ = [
    "MAEDET_STRUCTURES",
    "INITIAL_DETECTION_STRUCTURE",
    "Budget",
    "K1KXK1Space",
    "SearchResult",
    "make_score_fn",
    "search",
    "maedet_s",
    "maedet_m",
    "maedet_l",
    "zendet_tiny",
]

_CONV, _RES = "ConvKXBNRELU", "SuperResK1KXK1"


def _backbone(stem: int, stages: Sequence[tuple[int, int, int, int]], strides: Sequence[int] | None = None):
    """stem conv (3x3, stride 2) + SuperResK1KXK1 blocks given as (cout, btn, k, L)."""
    blocks, cin = [Block(_CONV, 3, stem, 2, 3)], stem
    for j, (cout, btn, k, depth) in enumerate(stages):
        blocks.append(Block(_RES, cin, cout, 2 if strides is None else strides[j], k, btn, depth))
        cin = cout
    return Structure(tuple(blocks))


# The released backbones (configs/detection/models/maedet_{s,m,l}.txt, official v2).
MAEDET_STRUCTURES: dict[str, Structure] = {
    "maedet_s": _backbone(32, [(48, 32, 5, 2), (272, 120, 3, 4), (1024, 80, 5, 10), (2048, 240, 3, 10)]),
    "maedet_m": _backbone(64, [(120, 64, 3, 2), (512, 72, 5, 10), (1632, 112, 5, 10), (2048, 184, 5, 8)]),
    "maedet_l": _backbone(80, [(144, 80, 3, 2), (608, 88, 5, 12), (1912, 136, 5, 12), (2400, 220, 5, 10)]),
}
# The official search's initial structure (configs/detection/R50_FLOPs.py): small, one stride-1 block.
INITIAL_DETECTION_STRUCTURE = Structure(
    (
        Block(_CONV, 3, 32, 2, 3),
        Block(_RES, 32, 256, 2, 3, 64, 1),
        Block(_RES, 256, 512, 2, 3, 128, 1),
        Block(_RES, 512, 768, 2, 3, 256, 1),
        Block(_RES, 768, 1024, 1, 3, 256, 1),
        Block(_RES, 1024, 2048, 2, 3, 512, 1),
    )
)


@dataclass(frozen=True)
class Budget:
    """Search budgets; ``None`` = unconstrained. Defaults: the official R50-FLOPs example (18.8 G @ 480^2).

    Attributes:
        flops: maximum FLOPs at ``resolution`` (official counter, see ``Structure.flops``).
        params: maximum parameter count.
        layers: maximum conv layers (also caps the depth mutation).
        stages: maximum number of stride-2 blocks.
        resolution: ``budget_image_size``: input size for FLOPs and the kernel-size cap.
        flops_extras: count BN/ReLU/pooling terms in FLOPs (TinyNAS) or conv MACs only (NAS-Bench-Macro).
    """

    flops: float | None = 188e8
    params: float | None = None
    layers: int | None = 91
    stages: int | None = 5
    resolution: int = 480
    flops_extras: bool = True

    def __post_init__(self) -> None:
        for name in ("flops", "params", "layers", "stages"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"budget {name} must be > 0 or None (unconstrained), got {value}")
        if self.resolution < 1:
            raise ValueError(f"budget resolution must be a positive int, got {self.resolution}")

    def measure(self, s: Structure) -> dict[str, float]:
        return {
            "flops": s.flops(self.resolution, extras=self.flops_extras),
            "params": s.params(),
            "layers": s.layers(),
            "stages": s.num_downsamples(),
        }

    def violations(self, info: dict[str, float]) -> list[str]:
        """Names of the budgets that ``info`` (from :meth:`measure`) exceeds."""
        return [
            k
            for k in ("flops", "params", "layers", "stages")
            if getattr(self, k) is not None and info[k] > getattr(self, k)
        ]


@dataclass(frozen=True)
class K1KXK1Space:
    """The official ResNet-bottleneck space and its mutation rules (v1 ``space_K1KXK1.py``).

    Attributes:
        channel_scales: factors for channel mutations (result rounded to a multiple of 8, at least 8).
        kernel_sizes: kernel choices of the k x k conv.
        depth_steps: depth changes.
        max_channels: cap on any mutated width (2048).
        stem_max_channels: cap on the stem width (32 in the official file).
        btn_min_ratio: the bottleneck is repaired to at least ``round8(out / btn_min_ratio)``.
        first_block_max_depth: the first super-block has at most this many repeats.
    """

    channel_scales: tuple[float, ...] = (1.5, 1.25, 0.8, 0.6, 0.5)
    kernel_sizes: tuple[int, ...] = (3, 5)
    depth_steps: tuple[int, ...] = (-2, -1, 1, 2)
    max_channels: int = 2048
    stem_max_channels: int = 32
    btn_min_ratio: int = 10
    first_block_max_depth: int = 3

    def _channels(self, c: int, rng: random.Random) -> int:
        return min(self.max_channels, round8(rng.choice(self.channel_scales) * c))

    def mutate_block(
        self, blocks: Sequence[Block], idx: int, rng: random.Random, budget_layers: int | None, minor: bool
    ) -> Block | None:
        """A mutated copy of ``blocks[idx]``, or None when that block cannot mutate (a last conv)."""
        b = blocks[idx]
        if b.kind == _CONV:
            if idx > len(blocks) - 2:
                return None
            return dataclasses.replace(b, cout=min(self.stem_max_channels, self._channels(b.cout, rng)))
        if b.kind != _RES:
            raise ValueError(f"K1KXK1Space mutates only {_CONV} and {_RES} blocks, got {b.kind!r} at {idx}")
        method = rng.choice(("out", "btn") if minor else ("out", "k", "btn", "L"))
        out, k, btn, depth = b.cout, b.k, b.btn, b.L
        if method == "out":
            out = min(4 * b.cin, self._channels(b.cout, rng))  # C_out <= 4 C_in
            if idx < len(blocks) - 1:  # the next block's input must stay >= its output / 4
                out = max(out, round8(blocks[idx + 1].cout / 4))
        elif method == "k":
            for _ in self.kernel_sizes:  # official: redraw until different, at most len(choices) times
                k = rng.choice(self.kernel_sizes)
                if k != b.k:
                    break
        elif method == "btn":
            btn = min(b.cout, self._channels(b.btn, rng))
        else:
            for _ in self.depth_steps:
                depth = max(1, b.L + rng.choice(self.depth_steps))
                if depth != b.L:
                    break
            if idx == 1:
                depth = min(self.first_block_max_depth, depth)
            elif budget_layers is not None:
                depth = min(budget_layers // 3 // max(1, len(blocks) - 2), depth)
            depth = max(1, depth)
        if btn < out / self.btn_min_ratio:
            btn = round8(out / self.btn_min_ratio)
        return dataclasses.replace(b, cout=out, k=k, btn=btn, L=depth)

    def mutate(self, s: Structure, rng: random.Random, budget: Budget, mutations: int = 2, minor: bool = False):
        """A child: ``mutations`` block mutations, each retried until stages/layers budgets hold."""
        blocks = list(s.blocks)
        for _ in range(mutations):
            candidate = blocks
            for _ in range(len(blocks)):
                idx = rng.randrange(len(blocks))
                new = self.mutate_block(blocks, idx, rng, budget.layers, minor)
                if new is None:
                    continue
                candidate = _adjust(blocks[:idx] + [new] + blocks[idx + 1 :], budget.resolution)
                if _valid(candidate, budget):
                    break
            blocks = candidate
        return s.replace_blocks(blocks)


def _adjust(blocks: list[Block], resolution: float) -> list[Block]:
    """Re-chain input channels and shrink kernels while ``1.5 k > feature size`` (official adjust)."""
    out, res = [], float(resolution)
    for i, b in enumerate(blocks):
        cin = b.cin if i == 0 else out[-1].cout
        k = b.k
        while k * 1.5 > res and k > 1:
            k -= 2
        out.append(b if (cin, k) == (b.cin, b.k) else dataclasses.replace(b, cin=cin, k=k))
        res /= b.stride
    return out


def _valid(blocks: Sequence[Block], budget: Budget) -> bool:
    stages = sum(b.stride == 2 for b in blocks)
    layers = sum(b.layers() for b in blocks)
    return (budget.stages is None or stages <= budget.stages) and (budget.layers is None or layers <= budget.layers)


def make_score_fn(
    score: str = "entropy_closed",
    *,
    stage_weights: Sequence[float] | None = DETECTION_STAGE_WEIGHTS,
    resolution: int = 480,
    batch: int = 8,
    seed: int = 0,
) -> Callable[[Structure], float]:
    """Structure -> score for ``search``: "entropy_closed" (default), "entropy_forward" or "zen"."""
    if score == "entropy_closed":
        return lambda s: entropy_score(s, stage_weights=stage_weights)
    if score == "entropy_forward":
        return lambda s: entropy_score(
            s, stage_weights=stage_weights, mode="forward", resolution=resolution, batch=batch, seed=seed
        )
    if score == "zen":
        return lambda s: zen_score(s, resolution=resolution, batch=batch, seed=seed)
    raise ValueError(f"score must be 'entropy_closed', 'entropy_forward' or 'zen', got {score!r}")


@dataclass
class SearchResult:
    """Best structure, its measurements and the search log (one history row per ``log_every`` children)."""

    best: Structure
    best_score: float
    best_info: dict[str, float]
    population: list[tuple[float, Structure]]
    history: list[dict[str, float]] = field(default_factory=list)
    config: dict = field(default_factory=dict)

    def save(self, out_dir: Path) -> Path:
        """Write ``best_structure.json``, ``best_structure.txt`` (official format) and ``search_log.json``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "best_structure.json").write_text(self.best.to_json() + "\n")
        (out_dir / "best_structure.txt").write_text(
            repr({"best_structures": [self.best.to_dicts()], "space_arch": "CnnNet"}) + "\n"
        )
        log = {
            "config": self.config,
            "best": {"score": self.best_score, **self.best_info, "structure": self.best.to_dicts()},
            "history": self.history,
            "top_population": [{"score": sc, "structure": s.to_dicts()} for sc, s in self.population[:10]],
        }
        path = out_dir / "search_log.json"
        path.write_text(json.dumps(log, indent=1) + "\n")
        return path


def search(
    init: Structure = INITIAL_DETECTION_STRUCTURE,
    *,
    budget: Budget | None = None,
    score: str | Callable[[Structure], float] = "entropy_closed",
    stage_weights: Sequence[float] | None = DETECTION_STAGE_WEIGHTS,
    population: int = 256,
    iterations: int = 100_000,
    mutations_per_child: int = 2,
    minor_after: int | None = None,
    mutate: Callable[[Structure, random.Random], Structure] | None = None,
    space: K1KXK1Space | None = None,
    seed: int = 0,
    log_every: int = 1000,
    progress: bool = True,
) -> SearchResult:
    """Evolutionary MAE-DET search (official population 256, 100,000 children, 2 mutations per child).

    Args:
        init: initial structure; it must meet the budget (the search refuses to start otherwise).
        budget: FLOPs/params/layers/stages budgets (default: official R50-FLOPs example).
        score: "entropy_closed" / "entropy_forward" / "zen" or any ``Structure -> float``.
        stage_weights: MSEP weights for the entropy scores; None = final stage only.
        minor_after: after this many children only widths mutate (coarse-to-fine); None = never.
        mutate: custom ``(structure, rng) -> child`` for other spaces (default: ``space.mutate``).
        seed: seeds the ``random.Random`` that drives parent choice and mutations.
    """
    budget = Budget() if budget is None else budget
    space = K1KXK1Space() if space is None else space
    for name, value in (("population", population), ("iterations", iterations), ("log_every", log_every)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if mutations_per_child < 1:
        raise ValueError(f"mutations_per_child must be >= 1, got {mutations_per_child}")
    score_fn = make_score_fn(score, stage_weights=stage_weights) if isinstance(score, str) else score
    init_info = budget.measure(init)
    broken = budget.violations(init_info)
    if broken:
        detail = ", ".join(f"{k}={init_info[k]:.4g} > {getattr(budget, k):.4g}" for k in broken)
        raise ValueError(
            f"the initial structure does not meet the budget ({detail}); start from a smaller structure "
            "or raise the budget (the official advice: start at about 1/4 of the budget)"
        )
    rng = random.Random(seed)
    cache: dict[Structure, tuple[float, dict[str, float]] | None] = {}  # None = over budget

    def evaluate(s: Structure) -> tuple[float, dict[str, float]] | None:
        if s not in cache:
            info = budget.measure(s)
            cache[s] = None if budget.violations(info) else (score_fn(s), info)
        return cache[s]

    init_score = evaluate(init)[0]
    # The population as a list sorted by descending score (``neg`` holds the negated scores for bisect)
    # plus a set of its structures. Inserting a new structure and dropping the worst one when the list is
    # too long is what the official "append, then dedupe + sort + truncate" does, without re-sorting.
    members, neg, present = [(init_score, init)], [-init_score], {init}
    best_score, best = init_score, init
    history, n_feasible, start = [], 0, time.perf_counter()
    bar = tqdm(range(1, iterations + 1), desc="zendet search", disable=not progress, mininterval=1.0)
    for it in bar:
        parent = rng.choice(members)[1]
        minor = minor_after is not None and it > minor_after
        if mutate is None:
            child = space.mutate(parent, rng, budget, mutations_per_child, minor)
        else:
            child = mutate(parent, rng)
        result = evaluate(child)
        if result is not None:
            n_feasible += 1
            if child not in present:
                pos = bisect.bisect_right(neg, -result[0])  # after equal scores: the older member ranks first
                neg.insert(pos, -result[0])
                members.insert(pos, (result[0], child))
                present.add(child)
                if len(members) > population:
                    neg.pop()
                    present.discard(members.pop()[1])
            if result[0] > best_score:
                best_score, best = result[0], child
        if it % log_every == 0 or it == iterations:
            history.append(
                {
                    "iteration": it,
                    "best": best_score,
                    "population_min": members[-1][0],
                    "population_mean": sum(m[0] for m in members) / len(members),
                    "population_size": len(members),
                    "feasible": n_feasible,
                    "unique_evaluated": len(cache),
                    "seconds": time.perf_counter() - start,
                }
            )
            bar.set_postfix(best=f"{best_score:.4g}", refresh=False)
    config = {
        "budget": dataclasses.asdict(budget),
        "score": score if isinstance(score, str) else getattr(score, "__name__", "custom"),
        "stage_weights": None if stage_weights is None else list(stage_weights),
        "population": population,
        "iterations": iterations,
        "mutations_per_child": mutations_per_child,
        "minor_after": minor_after,
        "seed": seed,
    }
    return SearchResult(best, best_score, evaluate(best)[1], members, history, config)


# ---- registered backbones (Kaiming init; forward returns C2..C5) -------------------------------------------
def _example_inputs(size: int) -> Callable[[torch.Generator], tuple[torch.Tensor]]:
    return lambda g: (torch.randn(2, 3, size, size, generator=g),)


_META = dict(task="detection_backbone", paper="2111.13336", input_layout="(B, 3, H, W) -> [C2, C3, C4, C5]")


@register_model(**_META, example_inputs=_example_inputs(64))
def maedet_s() -> StructureNet:
    """MAE-DET-S backbone (released structure; 21.2 M params, 11.0 GFLOPs at 480^2)."""
    return MAEDET_STRUCTURES["maedet_s"].build()


@register_model(**_META, example_inputs=_example_inputs(64))
def maedet_m() -> StructureNet:
    """MAE-DET-M backbone (released structure; 25.8 M params, 20.3 GFLOPs at 480^2)."""
    return MAEDET_STRUCTURES["maedet_m"].build()


@register_model(**_META, example_inputs=_example_inputs(64))
def maedet_l() -> StructureNet:
    """MAE-DET-L backbone (released structure; 43.9 M params, 34.5 GFLOPs at 480^2)."""
    return MAEDET_STRUCTURES["maedet_l"].build()


@register_model(**_META, example_inputs=_example_inputs(32), per_sample=True)
def zendet_tiny() -> StructureNet:
    """A tiny 5-stage bottleneck backbone for tests."""
    return _backbone(8, [(16, 8, 3, 1), (24, 8, 5, 2), (32, 16, 3, 1), (48, 16, 3, 1)]).build()
