"""IQNAS search-space encoding: one-hot op choices per active layer plus a one-hot depth per stage.

Paper: "IQNAS: Interpretable Integer Quadratic Programming Neural Architecture Search" (arXiv 2110.12399;
later "BINAS"), official code github Alibaba-MIIL/BINAS. Spec: ``specs/iqnas.md`` §2.

A space is a sequence of stages; stage ``s`` has the allowed depths ``depths[s]`` and every layer picks one
of ``ops``. The encoding of one architecture is ``x = [z ; beta]``:

* ``z[s, l, c] = 1`` iff layer ``l`` of stage ``s`` exists (``l <= depth_s``) and uses op ``c``: one-hot
  over ops for a present layer, all zero for an absent one. (The spec's ``alpha`` holds an op for every
  layer, present or not; ``z = alpha * y`` with ``y[s, l] = sum_{d >= l} beta[s, d]`` is exactly its
  product variable of §5.1, so the spec's bilinear forms ``p'alpha + alpha'Q beta`` are *linear* in z.)
* ``beta[s, d] = 1`` iff stage ``s`` has depth ``depths[s][d]``; stages with a single allowed depth have no
  beta entries.

Deviation from the official code: there every sampled subnet carries an op for its absent layers too (the
supernet's alpha is defined everywhere); here absent layers encode as zeros, so every distinct network has
exactly one encoding and FLOPs, params and table latencies are linear in ``x`` (spec §3).

Example:
    >>> space = OneHotSpace(depths=((1, 2),), ops=("a", "b"))
    >>> space.encode(np.array([[[1, -1]]]), np.array([[1]])).tolist()
    [[0.0, 1.0, 0.0, 0.0, 1.0, 0.0]]
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from damokit.nas.bench_macro import MACRO_OPS, MACRO_STAGES

__all__ = [
    "OneHotSpace",
    "QuadraticForm",
    "macro_encode",
    "macro_rows",
    "macro_space",
    "mobilenet_space",
    "MOBILENET_OPS",
    "MOBILENET_OP_SPECS",
    "ENUMERATE_LIMIT",
]

# spaces up to this many distinct architectures may be enumerated (brute force, tests)
ENUMERATE_LIMIT = 2_000_000

# HardCoRe-NAS / BINAS op set (spec §2): (depthwise kernel, expansion, squeeze-excitation) of each op
MOBILENET_OP_SPECS = tuple((k, e, se) for se in (False, True) for k in (3, 5) for e in (3, 4, 6))
MOBILENET_OPS = tuple(f"ir_k{k}_e{e}{'_se' if se else ''}" for k, e, se in MOBILENET_OP_SPECS)


@dataclass(frozen=True)
class OneHotSpace:
    """A stage-wise space of depths and per-layer ops, with the one-hot encoding the IQP works on.

    Args:
        depths: allowed depths of each stage, e.g. ``((2, 3, 4),) * 5``; sorted, positive.
        ops: names of the per-layer op choices (at least two).

    Shapes (``S`` stages, ``D`` = largest depth, ``n`` architectures): an architecture batch is
    ``op_ids (n, S, D)`` int with ``-1`` at absent layers and ``depth (n, S)`` int (actual depths);
    its encoding is ``X (n, dim)`` float with ``dim = num_layers * num_ops + num_beta``.
    """

    depths: tuple[tuple[int, ...], ...]
    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.depths or any(not d for d in self.depths):
            raise ValueError(f"depths must list at least one allowed depth per stage; got {self.depths!r}")
        for d in self.depths:
            if any(v < 1 for v in d) or list(d) != sorted(set(d)):
                raise ValueError(f"each stage's depths must be sorted, distinct and >= 1; got {d!r}")
        if len(self.ops) < 2:
            raise ValueError(f"ops must name at least two choices; got {self.ops!r}")
        object.__setattr__(self, "depths", tuple(tuple(int(v) for v in d) for d in self.depths))
        object.__setattr__(self, "ops", tuple(self.ops))

    # ---- sizes and index maps -------------------------------------------------------------------------
    @property
    def num_stages(self) -> int:
        return len(self.depths)

    @property
    def num_ops(self) -> int:
        return len(self.ops)

    @property
    def max_depth(self) -> int:
        return max(d[-1] for d in self.depths)

    @cached_property
    def layers(self) -> tuple[tuple[int, int], ...]:
        """(stage, layer) pairs, 0-based, of every layer that some depth makes present."""
        return tuple((s, l) for s, d in enumerate(self.depths) for l in range(d[-1]))

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def num_beta(self) -> int:
        return sum(len(d) for d in self.depths if len(d) > 1)

    @property
    def dim(self) -> int:
        return self.num_layers * self.num_ops + self.num_beta

    @cached_property
    def optional(self) -> np.ndarray:
        """(num_layers,) bool: the layer is absent at the stage's smallest depth."""
        return np.array([l >= self.depths[s][0] for s, l in self.layers])

    @cached_property
    def beta_offsets(self) -> tuple[int | None, ...]:
        """Per stage, index of its first beta entry in ``x`` (None for a fixed-depth stage)."""
        out, pos = [], self.num_layers * self.num_ops
        for d in self.depths:
            out.append(pos if len(d) > 1 else None)
            pos += len(d) if len(d) > 1 else 0
        return tuple(out)

    @cached_property
    def blocks(self) -> tuple[np.ndarray, ...]:
        """Index arrays of the one-hot groups of ``x``: one per layer (ops), then one per depth choice."""
        k = self.num_ops
        out = [np.arange(i * k, (i + 1) * k) for i in range(self.num_layers)]
        for s, d in enumerate(self.depths):
            if len(d) > 1:
                out.append(np.arange(self.beta_offsets[s], self.beta_offsets[s] + len(d)))
        return tuple(out)

    @cached_property
    def block_of(self) -> np.ndarray:
        """(dim,) int: the block each entry of ``x`` belongs to."""
        out = np.empty(self.dim, dtype=np.int64)
        for b, idx in enumerate(self.blocks):
            out[idx] = b
        return out

    @cached_property
    def labels(self) -> tuple[str, ...]:
        """Readable name of every entry of ``x``: ``"s2.l3:ir_k5_e6"`` or ``"s2.depth=3"`` (1-based)."""
        out = [f"s{s + 1}.l{l + 1}:{op}" for s, l in self.layers for op in self.ops]
        out += [f"s{s + 1}.depth={v}" for s, d in enumerate(self.depths) if len(d) > 1 for v in d]
        return tuple(out)

    @property
    def size(self) -> int:
        """Number of distinct architectures."""
        return int(np.prod([sum(self.num_ops**v for v in d) for d in self.depths], dtype=object))

    # ---- encode / decode ------------------------------------------------------------------------------
    def _check_arch(self, op_ids: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        op_ids, depth = np.asarray(op_ids), np.asarray(depth)
        S, D = self.num_stages, self.max_depth
        if op_ids.ndim != 3 or op_ids.shape[1:] != (S, D):
            raise ValueError(
                f"op_ids must have shape (n, {S}, {D}) (architectures, stages, layers); got {op_ids.shape}"
            )
        if depth.shape != op_ids.shape[:2]:
            raise ValueError(f"depth must have shape {op_ids.shape[:2]} (architectures, stages); got {depth.shape}")
        for s, allowed in enumerate(self.depths):
            bad = ~np.isin(depth[:, s], allowed)
            if bad.any():
                raise ValueError(f"stage {s + 1} depth {depth[bad, s][0]} is not one of the allowed depths {allowed}")
        present = np.arange(D)[None, None, :] < depth[:, :, None]  # (n, S, D)
        if ((op_ids < 0) | (op_ids >= self.num_ops))[present].any():
            raise ValueError(f"op ids of present layers must lie in [0, {self.num_ops - 1}] (one of {self.ops})")
        return op_ids.astype(np.int64), depth.astype(np.int64)

    def encode(self, op_ids: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """One-hot encodings ``(n, dim)`` of architectures ``op_ids (n, S, D)``, ``depth (n, S)``.

        Ops at absent layers (``l >= depth``) are ignored.
        """
        op_ids, depth = self._check_arch(op_ids, depth)
        n, k = len(op_ids), self.num_ops
        s_idx = np.array([s for s, _ in self.layers])
        l_idx = np.array([l for _, l in self.layers])
        ops = op_ids[:, s_idx, l_idx]  # (n, L)
        present = l_idx[None, :] < depth[:, s_idx]  # (n, L)
        X = np.zeros((n, self.dim))
        rows, layer = np.nonzero(present)
        X[rows, layer * k + ops[rows, layer]] = 1.0
        for s, d in enumerate(self.depths):
            if len(d) > 1:
                X[np.arange(n), self.beta_offsets[s] + np.searchsorted(d, depth[:, s])] = 1.0
        return X

    def decode(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of ``encode``: ``(op_ids (n, S, D) with -1 at absent layers, depth (n, S))``."""
        X = self.check(X)
        n, S, D, k = len(X), self.num_stages, self.max_depth, self.num_ops
        depth = np.empty((n, S), dtype=np.int64)
        for s, d in enumerate(self.depths):
            if len(d) > 1:
                off = self.beta_offsets[s]
                depth[:, s] = np.asarray(d)[X[:, off : off + len(d)].argmax(1)]
            else:
                depth[:, s] = d[0]
        Z = X[:, : self.num_layers * k].reshape(n, self.num_layers, k)
        ops = np.where(Z.sum(2) > 0.5, Z.argmax(2), -1)  # (n, L)
        op_ids = np.full((n, S, D), -1, dtype=np.int64)
        op_ids[:, [s for s, _ in self.layers], [l for _, l in self.layers]] = ops
        return op_ids, depth

    def check(self, X: np.ndarray) -> np.ndarray:
        """Return ``X`` as a float ``(n, dim)`` array if every row is a valid encoding, else raise ValueError."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise ValueError(f"encodings must have shape (n, {self.dim}) for this space; got {X.shape}")
        if not np.isin(X, (0.0, 1.0)).all():
            raise ValueError("encodings must be binary (0/1 entries)")
        n = len(X)
        depth_ok = np.ones(n, dtype=bool)
        present = np.ones((n, self.num_layers), dtype=bool)
        k = self.num_ops
        layer_sums = X[:, : self.num_layers * k].reshape(n, self.num_layers, k).sum(2)  # (n, L)
        for s, d in enumerate(self.depths):
            if len(d) == 1:
                continue
            off = self.beta_offsets[s]
            B = X[:, off : off + len(d)]
            depth_ok &= B.sum(1) == 1
            dep = np.asarray(d)[B.argmax(1)]
            mask = np.array([ls == s for ls, _ in self.layers])
            present[:, mask] = np.array([l for ls, l in self.layers if ls == s])[None, :] < dep[:, None]
        bad = ~depth_ok | (layer_sums != present).any(1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"row {i} is not a valid encoding: each stage needs exactly one depth entry and each layer "
                f"exactly one op if present under that depth, none otherwise (use OneHotSpace.encode)"
            )
        return X

    # ---- sampling / enumeration -----------------------------------------------------------------------
    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` architectures: each stage's depth uniform over its allowed depths, each op uniform.

        This is how the official supernet samples subnets (uniform alpha and beta), not uniform over
        distinct networks (deeper stages hold more of those).
        """
        if n < 0:
            raise ValueError(f"n must be >= 0; got {n}")
        depth = np.stack([rng.choice(np.asarray(d), size=n) for d in self.depths], axis=1)  # (n, S)
        op_ids = rng.integers(0, self.num_ops, size=(n, self.num_stages, self.max_depth))
        op_ids[np.arange(self.max_depth)[None, None, :] >= depth[:, :, None]] = -1
        return op_ids, depth

    def enumerate(self, limit: int = ENUMERATE_LIMIT) -> np.ndarray:
        """Encodings ``(size, dim)`` of all distinct architectures (small spaces only).

        Raises:
            ValueError: the space holds more than ``limit`` architectures.
        """
        if self.size > limit:
            raise ValueError(f"space has {self.size:.3g} architectures, more than limit={limit} to enumerate")
        k = self.num_ops
        per_stage = []  # for each stage: (m_s, stage-part of z) and (m_s, beta part)
        for d in self.depths:
            zs, bs = [], []
            for j, v in enumerate(d):
                combos = np.array(list(itertools.product(range(k), repeat=v)), dtype=np.int64)  # (k^v, v)
                z = np.zeros((len(combos), d[-1] * k))
                z[np.arange(len(combos))[:, None], np.arange(v)[None, :] * k + combos] = 1.0
                zs.append(z)
                b = np.zeros((len(combos), len(d) if len(d) > 1 else 0))
                if len(d) > 1:
                    b[:, j] = 1.0
                bs.append(b)
            per_stage.append((np.concatenate(zs), np.concatenate(bs)))
        # Cartesian product of the stages, stage 0 varying slowest
        counts = [len(z) for z, _ in per_stage]
        grid = np.indices(counts).reshape(len(counts), -1).T  # (size, S)
        z_all = np.concatenate([per_stage[s][0][grid[:, s]] for s in range(self.num_stages)], axis=1)
        b_all = np.concatenate([per_stage[s][1][grid[:, s]] for s in range(self.num_stages)], axis=1)
        return np.concatenate([z_all, b_all], axis=1)


def macro_space() -> OneHotSpace:
    """NAS-Bench-Macro: stages of 2/3/3 fixed layers, each picking identity or one of two inverted residuals."""
    return OneHotSpace(depths=tuple((n,) for n in MACRO_STAGES), ops=MACRO_OPS)


def mobilenet_space() -> OneHotSpace:
    """The HardCoRe-NAS / BINAS space (spec §2): 5 stages of depth 2-4, 12 ops; 240 + 15 binaries."""
    return OneHotSpace(depths=((2, 3, 4),) * 5, ops=MOBILENET_OPS)


def macro_encode(choices: np.ndarray) -> np.ndarray:
    """Encodings ``(n, 24)`` of NAS-Bench-Macro choice rows ``(n, 8)`` (``MacroBench.choices``)."""
    choices = np.asarray(choices)
    if choices.ndim != 2 or choices.shape[1] != sum(MACRO_STAGES):
        raise ValueError(f"choices must have shape (n, {sum(MACRO_STAGES)}); got {choices.shape}")
    space = macro_space()
    n, D = len(choices), space.max_depth
    op_ids = np.full((n, space.num_stages, D), -1, dtype=np.int64)
    start = 0
    for s, k in enumerate(MACRO_STAGES):
        op_ids[:, s, :k] = choices[:, start : start + k]
        start += k
    return space.encode(op_ids, np.tile(np.asarray(MACRO_STAGES), (n, 1)))


def macro_rows(op_ids: np.ndarray) -> np.ndarray:
    """Rows of ``MacroBench`` (sorted choice strings) of architectures ``op_ids (n, 3, 3)`` of ``macro_space``."""
    op_ids = np.asarray(op_ids)
    choices = op_ids.reshape(len(op_ids), -1)
    choices = choices[choices >= 0].reshape(len(op_ids), sum(MACRO_STAGES))  # (n, 8), drop the absent slot
    # the benchmark's rows are the 3^8 choice strings in sorted order = base-3 numbers
    return choices @ (len(MACRO_OPS) ** np.arange(sum(MACRO_STAGES) - 1, -1, -1))


@dataclass(frozen=True)
class QuadraticForm:
    """``f(x) = const + linear @ x + sum_p weights[p] * x[pairs[p, 0]] * x[pairs[p, 1]]`` on encodings.

    Accuracy predictors and resource models are both of this form (spec §3-4); the integer program reads
    the coefficients directly. ``pairs`` is ``(P, 2)`` int with ``i < j``; ``weights`` is ``(P,)``.
    """

    const: float
    linear: np.ndarray
    pairs: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    weights: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        linear = np.asarray(self.linear, dtype=np.float64)
        pairs = np.asarray(self.pairs, dtype=np.int64).reshape(-1, 2)
        weights = np.asarray(self.weights, dtype=np.float64).reshape(-1)
        if linear.ndim != 1:
            raise ValueError(f"linear must be a vector; got shape {linear.shape}")
        if len(pairs) != len(weights):
            raise ValueError(f"pairs ({len(pairs)}) and weights ({len(weights)}) must have the same length")
        if len(pairs) and (pairs.min() < 0 or pairs.max() >= len(linear) or (pairs[:, 0] >= pairs[:, 1]).any()):
            raise ValueError(f"pairs must hold indices i < j in [0, {len(linear) - 1}]")
        if not (np.isfinite(linear).all() and np.isfinite(weights).all() and np.isfinite(self.const)):
            raise ValueError("coefficients must be finite")
        object.__setattr__(self, "const", float(self.const))
        object.__setattr__(self, "linear", linear)
        object.__setattr__(self, "pairs", pairs)
        object.__setattr__(self, "weights", weights)

    @property
    def dim(self) -> int:
        return len(self.linear)

    @property
    def is_linear(self) -> bool:
        return not np.any(self.weights)

    def __call__(self, X: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """Values ``(n,)`` at encodings ``X (n, dim)`` (chunked, so large enumerations fit in memory)."""
        X = np.atleast_2d(np.asarray(X))
        if X.shape[1] != self.dim:
            raise ValueError(f"X must have {self.dim} columns; got shape {X.shape}")
        out = np.empty(len(X))
        i, j = self.pairs[:, 0], self.pairs[:, 1]
        for start in range(0, len(X), chunk):
            xb = np.asarray(X[start : start + chunk], dtype=np.float64)
            out[start : start + chunk] = self.const + xb @ self.linear + (xb[:, i] * xb[:, j]) @ self.weights
        return out

    def canonical(self, space: OneHotSpace) -> QuadraticForm:
        """Same values on every valid encoding of ``space``, with no vanishing or duplicate pairs.

        Products inside one one-hot block are zero and are dropped; duplicate pairs are summed; zero
        weights are dropped. The integer program needs no product variable for what remains.
        """
        if self.dim != space.dim:
            raise ValueError(f"form has dim {self.dim}, space has dim {space.dim}")
        keep = (space.block_of[self.pairs[:, 0]] != space.block_of[self.pairs[:, 1]]) & (self.weights != 0)
        pairs, inv = np.unique(self.pairs[keep], axis=0, return_inverse=True)
        weights = np.bincount(inv.reshape(-1), weights=self.weights[keep], minlength=len(pairs))
        nz = weights != 0
        return QuadraticForm(self.const, self.linear, pairs[nz], weights[nz])
