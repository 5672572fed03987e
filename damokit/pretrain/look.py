"""LOOK: leave-one-out k-nearest-neighbour supervised pre-training.

Paper: Feng, Jiang, Tang, Jin, Gao, "Rethinking supervised pre-training for better downstream transferring",
ICLR 2022 (arXiv 2110.06014). Official code: none found. Only the abstract and Figure 1's caption could be
read, so the loss below is reconstructed from the paper's definition ("a weighted kNN classifier and a
leave-one-out classification error as the loss function"), as the method spec (look.md §2-3) lays out.

Loss (spec §2): for a query embedding z_i (unit norm) with label y_i and a bank of unit embeddings m_j,
``s_ij = z_i . m_j / tau`` over the bank without the query's own entries, N_k(i) = the k largest s_ij, and
``l_i = logsumexp_{j in N_k} s_ij - logsumexp_{j in N_k, y_j = y_i} s_ij`` (= -log of the weighted kNN
posterior of the true class). Gradients reach z_i only; the bank and the top-k choice are constants.

Deviations / design choices (all [design] in the spec, exposed as parameters):
- ``on_no_positive``: "skip" (default; dropped from the mean, counted in ``no_positive_fraction``) or
  "add_nearest_positive" (the most similar same-class bank entry joins N_k(i)).
- Bank modes (``NeighborBank``): "full" (one row per training image, momentum rule
  ``m <- normalize(mu m + (1 - mu) z)``, mu = 0.5, Wu et al. 2018) and "queue" (FIFO of the last Q keys with
  sample ids, MoCo-style, optionally filled by a momentum encoder); passing no bank uses the batch itself.
- The bank update needs no "after backward" hook: similarities with grad are recomputed from the gathered
  neighbour rows ``bank[idx]``, which are copies, so updating the bank in place right after the forward
  leaves the autograd graph and the gradient unchanged (the spec's "detached copy in the product").
- Top-k over a large bank: one (B, d) x (d, chunk) product per chunk, per-chunk top-k merged with the running
  top-k, so memory is B * chunk floats (a 1M x 128 bank needs no B x 1M matrix).
- k = 20 / 50, tau = 0.1: the spec's pilots; the paper's values could not be read.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from damokit.engine import FitResult, TrainConfig, fit
from damokit.engine import distributed as ddp
from damokit.engine.probes import LinearHead, extract_features

__all__ = [
    "ON_NO_POSITIVE",
    "LOOKOutput",
    "bank_topk",
    "look_loss",
    "LOOKLoss",
    "NeighborBank",
    "LOOKModel",
    "LOOKRecipe",
    "PretrainResult",
    "pretrain",
    "within_class_spread",
]

log = logging.getLogger(__name__)

ON_NO_POSITIVE = ("skip", "add_nearest_positive")


class LOOKOutput(NamedTuple):
    """The batch loss (mean over valid queries) and the fraction of queries with no same-class neighbour."""

    loss: torch.Tensor
    no_positive_fraction: float


@torch.no_grad()
def bank_topk(
    queries: torch.Tensor,
    bank: torch.Tensor,
    k: int,
    *,
    query_ids: torch.Tensor | None = None,
    bank_ids: torch.Tensor | None = None,
    query_labels: torch.Tensor | None = None,
    bank_labels: torch.Tensor | None = None,
    chunk_size: int = 65536,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """k most similar bank rows per query by dot product, excluding the query's own entries, chunked over N.

    Bank rows with ``bank_ids == query_ids[b]`` are excluded for query b (leave-one-out); rows with a negative
    id are empty slots and never returned as valid. With labels given, also returns the index of the most
    similar same-class row (the nearest positive, -1 if none).

    Shapes:
        queries: (B, d); bank: (N, d); ids and labels: (B,) / (N,)
        -> values (B, k) (-inf where fewer than k rows are eligible), indices (B, k), nearest positive (B,)
    """
    B, N = queries.shape[0], bank.shape[0]
    if not 1 <= k <= N:
        raise ValueError(f"k must be in [1, {N}] (the bank size), got {k}; lower k or grow the bank")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    want_pos = query_labels is not None and bank_labels is not None
    best_v = queries.new_full((B, 0), float("-inf"))
    best_i = torch.zeros(B, 0, dtype=torch.long, device=queries.device)
    pos_v = queries.new_full((B,), float("-inf"))
    pos_i = torch.full((B,), -1, dtype=torch.long, device=queries.device)
    for start in range(0, N, chunk_size):
        stop = min(start + chunk_size, N)
        sims = queries @ bank[start:stop].T  # (B, d) x (d, c) -> (B, c)
        if bank_ids is not None:
            ids = bank_ids[start:stop]
            drop = (ids < 0)[None, :].expand(B, -1)  # empty slots, (B, c)
            if query_ids is not None:
                drop = drop | (ids[None, :] == query_ids[:, None])  # the query's own entries
            sims = sims.masked_fill(drop, float("-inf"))
        v, i = sims.topk(min(k, stop - start), dim=1)  # (B, <=k)
        best_v, order = torch.cat([best_v, v], 1).topk(min(k, best_v.shape[1] + v.shape[1]), dim=1)
        best_i = torch.cat([best_i, i + start], 1).gather(1, order)
        if want_pos:
            same = bank_labels[start:stop][None, :] == query_labels[:, None]  # (B, c)
            pv, pi = sims.masked_fill(~same, float("-inf")).max(dim=1)  # (B,)
            better = pv > pos_v
            pos_v = torch.where(better, pv, pos_v)
            pos_i = torch.where(better, pi + start, pos_i)
    return best_v, best_i, (pos_i if want_pos else None)


def look_loss(
    z: torch.Tensor,
    labels: torch.Tensor,
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    *,
    k: int,
    tau: float,
    query_ids: torch.Tensor | None = None,
    bank_ids: torch.Tensor | None = None,
    on_no_positive: str = "skip",
    chunk_size: int = 65536,
) -> LOOKOutput:
    """Leave-one-out weighted-kNN loss of queries ``z`` against a bank (spec §2, steps 1-6).

    Args:
        z: query embeddings, unit norm (the loss does not normalise them).
        labels: query labels.
        bank, bank_labels: bank embeddings (unit norm; treated as constants) and their labels.
        k: neighbours per query; tau: temperature.
        query_ids, bank_ids: sample ids; bank rows with the query's id are left out, rows with id < 0 are empty.
        on_no_positive: "skip" or "add_nearest_positive" (see module docstring).
        chunk_size: bank rows per similarity product.

    Shapes:
        z: (B, d); labels: (B,); bank: (N, d); bank_labels: (N,) -> loss ()
    """
    if on_no_positive not in ON_NO_POSITIVE:
        raise ValueError(f"on_no_positive must be one of {ON_NO_POSITIVE}, got {on_no_positive!r}")
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if z.ndim != 2 or bank.ndim != 2 or z.shape[1] != bank.shape[1]:
        raise ValueError(f"z (B, d) and bank (N, d) must share d; got {tuple(z.shape)} and {tuple(bank.shape)}")
    add_pos = on_no_positive == "add_nearest_positive"
    bank = bank.detach()
    vals, idx, pos_idx = bank_topk(
        z.detach(),
        bank,
        k,
        query_ids=query_ids,
        bank_ids=bank_ids,
        query_labels=labels if add_pos else None,
        bank_labels=bank_labels if add_pos else None,
        chunk_size=chunk_size,
    )
    eligible = torch.isfinite(vals)  # (B, k): False where fewer than k rows could be neighbours
    # similarities with grad through z only; bank[idx] is a gathered copy, so later bank updates are safe
    s = torch.einsum("bd,bkd->bk", z, bank[idx]) / tau  # (B, k)
    s = s.masked_fill(~eligible, float("-inf"))
    pos = (bank_labels[idx] == labels[:, None]) & eligible  # (B, k)
    has_pos = pos.any(1)
    valid = has_pos
    if add_pos:
        use_extra = ~has_pos & (pos_idx >= 0)  # (B,)
        s_extra = torch.einsum("bd,bd->b", z, bank[pos_idx.clamp(min=0)]) / tau
        s = torch.cat([s, torch.where(use_extra, s_extra, float("-inf"))[:, None]], 1)  # (B, k + 1)
        pos = torch.cat([pos, use_extra[:, None]], 1)
        valid = has_pos | use_extra
    # rows without a positive count every column as positive (l_i = 0, zero gradient) and are left out below;
    # this keeps logsumexp away from an all -inf row, whose gradient would be NaN
    pos_s = s.masked_fill(~(pos | ~valid[:, None]), float("-inf"))
    per_query = torch.logsumexp(s, 1) - torch.logsumexp(pos_s, 1)  # (B,)
    n_valid = int(valid.sum())
    loss = per_query[valid].mean() if n_valid else (z * 0).sum()  # no valid query: zero loss, graph kept
    return LOOKOutput(loss, 1.0 - n_valid / len(z))


class NeighborBank(nn.Module):
    """Bank of unit embeddings with labels and sample ids (buffers, so checkpoints carry it).

    Modes (spec §3): "full" holds row j for training image j and blends updates with momentum ``mu``;
    "queue" is a FIFO of the last ``size`` entries (ids stored per row; empty slots have id -1).

    Shapes:
        feats: (N, d); labels: (N,); ids: (N,)
    """

    def __init__(self, size: int, dim: int, *, mode: str = "full", mu: float = 0.5):
        super().__init__()
        if mode not in ("full", "queue"):
            raise ValueError(f"mode must be 'full' or 'queue', got {mode!r}")
        if size < 2 or dim < 1:
            raise ValueError(f"size must be >= 2 and dim >= 1, got size={size}, dim={dim}")
        if not 0.0 <= mu < 1.0:
            raise ValueError(f"mu must be in [0, 1), got {mu}")
        self.mode, self.mu = mode, mu
        self.register_buffer("feats", torch.zeros(size, dim))
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ids", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def fill(self, feats: torch.Tensor, labels: torch.Tensor) -> None:
        """Initialise a full bank with every training image's embedding (row j = sample j)."""
        if self.mode != "full" or feats.shape != self.feats.shape:
            raise ValueError(
                f"fill needs a full bank and feats of shape {tuple(self.feats.shape)}, got mode={self.mode!r} "
                f"and {tuple(feats.shape)}"
            )
        self.feats.copy_(F.normalize(feats, dim=1))
        self.labels.copy_(labels)
        self.ids.copy_(torch.arange(len(labels)))

    @torch.no_grad()
    def update(self, z: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor) -> None:
        """Write a batch of embeddings: momentum blend at rows ``ids`` (full) or enqueue (queue)."""
        z = F.normalize(z.detach(), dim=1)
        if self.mode == "full":
            self.feats[ids] = F.normalize(self.mu * self.feats[ids] + (1 - self.mu) * z, dim=1)
            self.labels[ids] = labels
            self.ids[ids] = ids
            return
        size = self.feats.shape[0]
        slots = (self.ptr + torch.arange(len(z), device=z.device)) % size  # FIFO positions, wrapping
        self.feats[slots], self.labels[slots], self.ids[slots] = z, labels, ids
        self.ptr.copy_((self.ptr + len(z)) % size)


class LOOKLoss(nn.Module):
    """LOOK loss over a ``NeighborBank`` (or over the batch itself when no bank is given).

    Example:
        >>> z = F.normalize(torch.randn(8, 4), dim=1); y = torch.arange(8) % 2
        >>> out = LOOKLoss(k=3, tau=0.1)(z, y)  # batch mode: leave-one-out masks the diagonal
        >>> out.loss.ndim
        0
    """

    def __init__(self, *, k: int = 50, tau: float = 0.1, on_no_positive: str = "skip", chunk_size: int = 65536):
        super().__init__()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        if on_no_positive not in ON_NO_POSITIVE:
            raise ValueError(f"on_no_positive must be one of {ON_NO_POSITIVE}, got {on_no_positive!r}")
        self.k, self.tau, self.on_no_positive, self.chunk_size = k, tau, on_no_positive, chunk_size

    def forward(
        self,
        z: torch.Tensor,
        labels: torch.Tensor,
        ids: torch.Tensor | None = None,
        bank: NeighborBank | None = None,
    ) -> LOOKOutput:
        kw = dict(k=self.k, tau=self.tau, on_no_positive=self.on_no_positive, chunk_size=self.chunk_size)
        if bank is None:  # batch mode: neighbours from the batch, the diagonal left out
            own = torch.arange(len(z), device=z.device)
            return look_loss(z, labels, z.detach(), labels, query_ids=own, bank_ids=own, **kw)
        if ids is None:
            raise ValueError("ids (sample indices) are required with a bank, for the leave-one-out mask")
        return look_loss(z, labels, bank.feats, bank.labels, query_ids=ids, bank_ids=bank.ids, **kw)


class LOOKModel(nn.Module):
    """Encoder (+ optional 2-layer MLP projection), L2-normalised output, optional momentum key encoder.

    Shapes:
        x: (B, ...) -> z (B, d), unit norm
    """

    def __init__(
        self, encoder: nn.Module, feat_dim: int, *, projection_dim: int | None = None, key_momentum: float | None
    ):
        super().__init__()
        self.encoder = encoder
        self.projection = (
            nn.Identity()
            if projection_dim is None
            else nn.Sequential(
                nn.Linear(feat_dim, feat_dim), nn.ReLU(inplace=True), nn.Linear(feat_dim, projection_dim)
            )
        )
        self.out_dim = projection_dim or feat_dim
        self.key_momentum = key_momentum
        self.key_model: nn.Module | None = None
        if key_momentum is not None:
            if not 0.0 <= key_momentum < 1.0:
                raise ValueError(f"key_momentum must be in [0, 1), got {key_momentum}")
            self.key_model = copy.deepcopy(nn.ModuleDict({"encoder": encoder, "projection": self.projection}))
            self.key_model.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection(_features(self.encoder, x)), dim=1)

    @torch.no_grad()
    def keys(self, x: torch.Tensor) -> torch.Tensor:
        """Momentum-encoder embeddings after one EMA step ``theta_k <- m theta_k + (1 - m) theta`` (MoCo)."""
        assert self.key_model is not None
        online = list(self.encoder.parameters()) + list(self.projection.parameters())
        torch._foreach_lerp_(list(self.key_model.parameters()), online, 1.0 - self.key_momentum)
        k = self.key_model
        return F.normalize(k["projection"](_features(k["encoder"], x)), dim=1)


def _features(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    fn = getattr(encoder, "forward_features", None)
    return fn(x) if callable(fn) else encoder(x)


def _gather(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` over processes (itself in one process), so every rank updates its bank alike."""
    if not ddp.is_distributed():
        return t
    parts = [torch.empty_like(t) for _ in range(ddp.world_size())]
    torch.distributed.all_gather(parts, t.contiguous())
    return torch.cat(parts)


@dataclass(frozen=True)
class LOOKRecipe:
    """LOOK pre-training settings (spec §2-3; all [design] defaults, the paper's values are unread)."""

    k: int = 50
    """Neighbours per query; keep it well below the smallest class count (spec §2)."""
    tau: float = 0.1
    """Softmax temperature of the weighted kNN."""
    bank: str = "full"
    """"full" (one row per image), "queue" (FIFO of the last ``queue_size``) or "batch" (no bank)."""
    mu: float = 0.5
    """Momentum of the full bank's row update (Wu et al. 2018)."""
    queue_size: int = 65536
    key_momentum: float | None = None
    """EMA of a key encoder that fills the bank (MoCo: 0.999); None: the bank stores the query embeddings."""
    on_no_positive: str = "skip"
    projection_dim: int | None = None
    """Output of a 2-layer MLP head; None: the backbone's pooled features (spec default)."""
    chunk_size: int = 65536


@dataclass
class PretrainResult:
    """The trained model (encoder inside), the fit history and LOOK's no-positive fraction per epoch."""

    model: nn.Module
    fit: FitResult
    no_positive_fraction: list[float] = field(default_factory=list)


def pretrain(
    encoder: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss: str = "look",
    feat_dim: int,
    num_classes: int | None = None,
    recipe: LOOKRecipe = LOOKRecipe(),
    config: TrainConfig | None = None,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    out_dir=None,
    resume: bool = False,
) -> PretrainResult:
    """Supervised pre-training of ``encoder`` on (x, y) with the LOOK loss or cross-entropy, on ``engine.fit``.

    Under torchrun each process gets its share of every batch; embeddings are gathered before the bank
    update so every process holds the same bank. ``encoder`` is trained in place.

    Args:
        loss: "look" or "ce" (cross-entropy with a linear head over ``num_classes``, the baseline).
        feat_dim: the encoder's feature size.
        augment: applied to each training batch (e.g. ``damokit.data.images.random_shift``).
    """
    config = config or TrainConfig()
    if loss not in ("look", "ce"):
        raise ValueError(f"loss must be 'look' or 'ce', got {loss!r}")
    if recipe.bank not in ("full", "queue", "batch"):
        raise ValueError(f"recipe.bank must be 'full', 'queue' or 'batch', got {recipe.bank!r}")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}; they must match")
    aug = augment or (lambda t: t)
    data = (x, y, torch.arange(len(x)))
    if loss == "ce":
        n_cls = num_classes or int(y.max()) + 1
        head = LinearHead(encoder, feat_dim, n_cls)
        res = fit(
            head, data, loss_fn=lambda m, b: F.cross_entropy(m(aug(b[0])), b[1]), config=config, out_dir=out_dir,
            resume=resume,
        )  # fmt: skip
        return PretrainResult(head, res)

    model = LOOKModel(encoder, feat_dim, projection_dim=recipe.projection_dim, key_momentum=recipe.key_momentum)
    criterion = LOOKLoss(k=recipe.k, tau=recipe.tau, on_no_positive=recipe.on_no_positive, chunk_size=recipe.chunk_size)
    bank = None
    if recipe.bank == "full":
        bank = NeighborBank(len(x), model.out_dim, mode="full", mu=recipe.mu)
        bank.fill(extract_features(model, x, layer=lambda m, b: m(b), batch_size=512), y)
    elif recipe.bank == "queue":
        bank = NeighborBank(min(recipe.queue_size, len(x)), model.out_dim, mode="queue")
    if bank is not None:
        model.bank = bank  # a submodule, so checkpoints and resume carry the bank
    step_fractions: list[float] = []

    def loss_fn(m: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
        xb, yb, ib = batch
        xb = aug(xb)
        z = m(xb)  # (B, d), through the DDP wrapper when there is one
        if recipe.bank == "queue" and int((bank.ids >= 0).sum()) <= recipe.k:
            out = LOOKOutput((z * 0).sum(), 1.0)  # queue still filling: no loss yet
        else:
            out = criterion(z, yb, ib, bank)
        if bank is not None:
            keys = model.keys(xb) if model.key_model is not None else z
            bank.update(_gather(keys.detach()), _gather(yb), _gather(ib))
        step_fractions.append(out.no_positive_fraction)
        return out.loss, {"no_pos": out.no_positive_fraction}

    res = fit(model, data, loss_fn=loss_fn, config=config, out_dir=out_dir, resume=resume)
    # fit has no epoch hook: average the per-step fractions over each epoch's steps (drop_last batches)
    per_epoch = max(len(x) // config.batch_size, 1) if config.drop_last else -(-len(x) // config.batch_size)
    fractions = [
        sum(step_fractions[i : i + per_epoch]) / len(step_fractions[i : i + per_epoch])
        for i in range(0, len(step_fractions), per_epoch)
    ]
    return PretrainResult(model, res, fractions)


@torch.no_grad()
def within_class_spread(feats: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean distance of L2-normalised features to their class centroid (spec §5 mechanism check)."""
    feats = F.normalize(feats.float(), dim=1)
    classes, inv = torch.unique(labels, return_inverse=True)
    sums = torch.zeros(len(classes), feats.shape[1]).index_add_(0, inv, feats)  # (K, d)
    centroids = sums / torch.bincount(inv, minlength=len(classes))[:, None]
    return float((feats - centroids[inv]).norm(dim=1).mean())
