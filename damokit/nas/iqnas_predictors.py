"""IQNAS accuracy predictors: fitted linear / quadratic forms, the accuracy-contribution estimator, tables.

Paper: IQNAS / BINAS (arXiv 2110.12399), official code github Alibaba-MIIL/BINAS (``fit_predictors.py``,
``nas/nas_utils/predictor.py``, ``accuracy_contribution.py``). Spec: ``specs/iqnas.md`` §4 and §6.

All predictors are ``QuadraticForm``s of the one-hot encoding (``iqnas_encoding``), so the integer program
reads their coefficients and the contribution tables print them.

Deviations:
* Fit: ridge least squares with an unpenalised intercept (closed form, primal or dual by shape) is the
  default; the official truncated-SVD least squares (drop singular directions with 1/s > 10) is the
  ``method="svd"`` option. The one-hot blocks make plain least squares singular, so one of the two is needed.
* Pairs: the official quadratic predictor uses all pairs of ``[alpha; beta]``; on our gated encoding
  (absent layers all-zero) products inside one block vanish, so "all" means all pairs of different blocks.
* Contribution estimator: ``variant="pure"`` (default) measures an optional layer's op effect against the
  base ops *at the same depth*; ``variant="official"`` subtracts the global base accuracy as the official
  code does, so a deeper layer's depth gain enters again in each of its op coefficients (spec §4.1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from damokit.nas.iqnas_encoding import OneHotSpace, QuadraticForm

__all__ = [
    "pair_index",
    "fit_linear",
    "fit_quadratic",
    "contribution_estimator",
    "contribution_table",
    "rank_correlation",
]

PairSet = Literal["all", "within_stage", "adjacent", "bilinear"]


def pair_index(space: OneHotSpace, pairs: PairSet = "all") -> np.ndarray:
    """Index pairs ``(P, 2)`` (``i < j``) of the encoding that a quadratic predictor may couple.

    ``"all"``: every pair of entries from different one-hot blocks. ``"within_stage"``: both entries belong
    to the same stage (its layers' ops and its depth). ``"adjacent"``: ops of consecutive layers (in network
    order, across stage borders) and each stage's depth with the ops of that stage's layers.
    ``"bilinear"``: every (op, depth) pair, the BINAS predictor ``alpha' W beta`` (spec §4.2).
    """
    block = space.block_of
    stage_of_layer = np.array([s for s, _ in space.layers])
    k, L = space.num_ops, space.num_layers
    # stage of every entry, and a "layer position" (-1 for depth entries)
    stage = np.empty(space.dim, dtype=np.int64)
    pos = np.full(space.dim, -1, dtype=np.int64)
    stage[: L * k] = np.repeat(stage_of_layer, k)
    pos[: L * k] = np.repeat(np.arange(L), k)
    for s, off in enumerate(space.beta_offsets):
        if off is not None:
            stage[off : off + len(space.depths[s])] = s
    i, j = np.triu_indices(space.dim, k=1)
    keep = block[i] != block[j]
    if pairs == "within_stage":
        keep &= stage[i] == stage[j]
    elif pairs == "adjacent":
        ops_ops = (pos[i] >= 0) & (pos[j] >= 0) & (np.abs(pos[i] - pos[j]) == 1)
        depth_ops = ((pos[i] < 0) ^ (pos[j] < 0)) & (stage[i] == stage[j])
        keep &= ops_ops | depth_ops
    elif pairs == "bilinear":
        keep &= (pos[i] >= 0) & (pos[j] < 0)
    elif pairs != "all":
        raise ValueError(f"pairs must be 'all', 'within_stage', 'adjacent' or 'bilinear'; got {pairs!r}")
    return np.stack([i[keep], j[keep]], axis=1)


def _check_xy(space: OneHotSpace, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = space.check(X)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if len(y) != len(X):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)} targets")
    if len(X) < 2:
        raise ValueError(f"need at least 2 measured architectures to fit a predictor; got {len(X)}")
    if not np.isfinite(y).all():
        raise ValueError("targets y must be finite")
    return X, y


def _solve_centered(F: np.ndarray, y: np.ndarray, ridge: float, method: str) -> tuple[np.ndarray, float]:
    """Least squares ``y ~ b + F w`` with the intercept unpenalised; returns ``(w, b)``.

    Shapes: ``F (n, p)``, ``y (n,)``, ``w (p,)``.
    """
    f_mean, y_mean = F.mean(0), y.mean()
    Fc, yc = F - f_mean, y - y_mean
    if method == "ridge":
        if ridge <= 0:
            raise ValueError(f"ridge must be > 0 (one-hot blocks make the normal equations singular); got {ridge}")
        n, p = Fc.shape
        if p <= n:  # primal: (Fc'Fc + lam I) w = Fc'y
            w = np.linalg.solve(Fc.T @ Fc + ridge * np.eye(p), Fc.T @ yc)
        else:  # dual: w = Fc'(Fc Fc' + lam I)^-1 y, cheaper when features outnumber samples
            w = Fc.T @ np.linalg.solve(Fc @ Fc.T + ridge * np.eye(n), yc)
    elif method == "svd":
        # official fit_predictors.py: SVD least squares, zeroing directions whose inverse singular value > 10
        U, s, Vt = np.linalg.svd(Fc, full_matrices=False)
        inv = np.where(s > 0.1, 1.0 / np.where(s > 0.1, s, 1.0), 0.0)
        w = Vt.T @ (inv * (U.T @ yc))
    else:
        raise ValueError(f"method must be 'ridge' or 'svd'; got {method!r}")
    return w, float(y_mean - f_mean @ w)


def fit_linear(
    space: OneHotSpace, X: np.ndarray, y: np.ndarray, *, ridge: float = 1.0, method: str = "ridge"
) -> QuadraticForm:
    """The ablation: ``b + w'x`` fitted to measured accuracies ``y (n,)`` of encodings ``X (n, dim)``."""
    X, y = _check_xy(space, X, y)
    w, b = _solve_centered(X, y, ridge, method)
    return QuadraticForm(b, w)


def fit_quadratic(
    space: OneHotSpace,
    X: np.ndarray,
    y: np.ndarray,
    *,
    ridge: float = 10.0,
    pairs: PairSet = "all",
    method: str = "ridge",
) -> QuadraticForm:
    """The IQNAS predictor ``b + w'x + sum_(i<j) W_ij x_i x_j`` fitted to accuracies ``y`` of ``X``.

    Args:
        ridge: L2 penalty on ``w`` and ``W`` (not the intercept); ``10`` is the spec's measured default.
        pairs: which products enter (see ``pair_index``); fewer pairs give an easier integer program.
        method: ``"ridge"`` or the official ``"svd"`` (truncated pseudo-inverse).

    Example:
        >>> from damokit.nas.iqnas_encoding import macro_space
        >>> space = macro_space(); rng = np.random.default_rng(0)
        >>> X = space.encode(*space.sample(50, rng)); y = X @ rng.normal(size=space.dim)
        >>> fit_quadratic(space, X, y).pairs.shape
        (252, 2)
    """
    X, y = _check_xy(space, X, y)
    P = pair_index(space, pairs)
    F = np.concatenate([X, X[:, P[:, 0]] * X[:, P[:, 1]]], axis=1)  # (n, dim + num_pairs)
    w, b = _solve_centered(F, y, ridge, method)
    return QuadraticForm(b, w[: space.dim], P, w[space.dim :])


def rank_correlation(pred: np.ndarray, true: np.ndarray) -> float:
    """Kendall tau (tau-b) between predicted and measured accuracies, the paper's predictor metric."""
    return float(kendalltau(pred, true).statistic)


def contribution_estimator(
    space: OneHotSpace,
    evaluate: Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    base_op: int = 0,
    base_depth: np.ndarray | None = None,
    variant: Literal["pure", "official"] = "pure",
) -> tuple[QuadraticForm, int]:
    """The constructed (no regression) estimator of spec §4.1 from single-choice switches of a base net.

    Args:
        evaluate: ``(op_ids (n, S, D), depth (n, S)) -> accuracy (n,)``; called once on a batch of the
            distinct architectures needed (base; base at every other depth; every other op at every layer).
        base_op: the op of every layer of the base architecture.
        base_depth: ``(S,)`` depths of the base (default: every stage's smallest depth).
        variant: ``"pure"`` or ``"official"`` bookkeeping (module docstring).

    Returns:
        The estimator as a linear ``QuadraticForm`` and the number of evaluations it cost.
    """
    if not 0 <= base_op < space.num_ops:
        raise ValueError(f"base_op must lie in [0, {space.num_ops - 1}]; got {base_op}")
    if variant not in ("pure", "official"):
        raise ValueError(f"variant must be 'pure' or 'official'; got {variant!r}")
    S, D, k = space.num_stages, space.max_depth, space.num_ops
    if base_depth is None:
        base_depth = np.array([d[0] for d in space.depths])
    base_depth = np.asarray(base_depth, dtype=np.int64)
    base_ops = np.full((S, D), base_op, dtype=np.int64)
    space.encode(base_ops[None], base_depth[None])  # validates base_depth

    # every distinct architecture to evaluate; depth_q / op_q map a switch to its query row
    queries: list[tuple[np.ndarray, np.ndarray]] = [(base_ops, base_depth)]
    depth_q: dict[tuple[int, int], int] = {}
    op_q: dict[tuple[int, int, int], tuple[int, int]] = {}  # -> (query with op c, query with base ops)

    for s, allowed in enumerate(space.depths):
        depth_q[(s, int(base_depth[s]))] = 0
        for v in allowed:
            if (s, v) not in depth_q:
                dep = base_depth.copy()
                dep[s] = v
                queries.append((base_ops, dep))
                depth_q[(s, v)] = len(queries) - 1
    for s, l in space.layers:
        # the smallest allowed depth (not below the base's) at which layer l exists
        v = min(d for d in space.depths[s] if d >= max(int(base_depth[s]), l + 1))
        ref = depth_q[(s, v)]
        for c in range(k):
            if c == base_op:
                op_q[(s, l, c)] = (ref, ref)
                continue
            ops = base_ops.copy()
            ops[s, l] = c
            dep = base_depth.copy()
            dep[s] = v
            queries.append((ops, dep))
            op_q[(s, l, c)] = (len(queries) - 1, ref)
    op_ids = np.stack([q[0] for q in queries])  # (m, S, D)
    depths = np.stack([q[1] for q in queries])  # (m, S)
    op_ids[np.arange(D)[None, None, :] >= depths[:, :, None]] = -1  # absent layers carry no op
    acc = np.asarray(evaluate(op_ids, depths), dtype=float)
    if acc.shape != (len(queries),):
        raise ValueError(f"evaluate must return shape ({len(queries)},); got {acc.shape}")
    a_base = acc[0]
    linear = np.zeros(space.dim)
    for (s, l, c), (qi, ref) in op_q.items():
        layer = space.layers.index((s, l))
        linear[layer * k + c] = acc[qi] - (acc[ref] if variant == "pure" else a_base)
    for s, allowed in enumerate(space.depths):
        if len(allowed) > 1:
            for j, v in enumerate(allowed):
                linear[space.beta_offsets[s] + j] = acc[depth_q[(s, v)]] - a_base
    return QuadraticForm(a_base, linear), len(queries)


def contribution_table(
    space: OneHotSpace,
    accuracy: QuadraticForm,
    resources: dict[str, QuadraticForm] | None = None,
    *,
    reference_op: int = 0,
    X_mean: np.ndarray | None = None,
) -> pd.DataFrame:
    """Per-choice effects (spec §6): what switching one choice away from the reference does, on average.

    Rows are every (layer, op) and every (stage, depth). The effect of entry ``e`` against the reference
    entry ``r`` of its block is ``(w_e - w_r) + sum_j (W_ej - W_rj) * m_j``, with ``m`` the mean encoding
    (``X_mean``, default: the uniform mixture, ``1/len(block)`` per entry); for a linear form it is the
    coefficient difference exactly. The reference is ``reference_op`` for ops and the smallest depth.
    Columns: ``stage, layer, choice, kind, accuracy`` and per resource ``<name>`` and ``accuracy_per_<name>``.
    """
    resources = resources or {}
    m = np.asarray(X_mean, dtype=float) if X_mean is not None else np.zeros(space.dim)
    if X_mean is None:
        for idx in space.blocks:
            m[idx] = 1.0 / len(idx)
    if m.shape != (space.dim,):
        raise ValueError(f"X_mean must have shape ({space.dim},); got {m.shape}")

    def effects(form: QuadraticForm) -> np.ndarray:
        grad = form.linear.copy()  # d f / d x_e at m, treating other blocks as fixed
        np.add.at(grad, form.pairs[:, 0], form.weights * m[form.pairs[:, 1]])
        np.add.at(grad, form.pairs[:, 1], form.weights * m[form.pairs[:, 0]])
        ref = np.empty(space.dim, dtype=np.int64)
        for b, idx in enumerate(space.blocks):
            ref[idx] = idx[0] + (reference_op if b < space.num_layers else 0)
        return grad - grad[ref]

    k = space.num_ops
    rows = [(s + 1, l + 1, op, "op") for s, l in space.layers for op in space.ops]
    rows += [(s + 1, None, f"depth={v}", "depth") for s, d in enumerate(space.depths) if len(d) > 1 for v in d]
    table = pd.DataFrame(rows, columns=["stage", "layer", "choice", "kind"])
    table["accuracy"] = effects(accuracy)
    for name, form in resources.items():
        table[name] = effects(form)
        with np.errstate(divide="ignore", invalid="ignore"):
            table[f"accuracy_per_{name}"] = table["accuracy"] / table[name].where(table[name] != 0)
    assert len(table) == space.num_layers * k + space.num_beta
    return table
