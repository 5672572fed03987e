"""Fine-tuning with selected pre-training data: UOT class selection and the joint two-head fine-tuner.

Paper: Liu, Xu, Xu, Qian, Li, Ji, Chan, Jin, "Improved Fine-Tuning by Better Leveraging Pre-Training Data",
NeurIPS 2022 (arXiv 2111.12292). Official code: ziquanliu/NeurIPS2022_UOT_fine_tuning (normative, spec §2-3).

Selection (spec §2): class means of pre-training (source) and target features from the pre-trained model,
cost ``M = (1 - cos) / p_m``, unbalanced entropic OT between unit masses with (eps, tau_s, tau_t) = (1, 1, 100),
importance of source class i = its row sum of the plan; keep the top-k classes with all their images.
Fine-tuning (spec §3): backbone + target head + source head, ``CE_t + lam * CE_s`` on one concatenated batch.

Deviations:
- The Sinkhorn runs in the log domain (same iterates as the official scaling ``u = (a / Kv)^(tau/(tau+eps))``,
  computed as log-sum-exps), so it never overflows; the stopping rule is POT's (mean of the sup-norm relative
  changes of u and v), evaluated stably. It returns a convergence report.
- ``JointFineTuner`` with ``lam = 0`` skips the source forward, so it equals plain fine-tuning step for step
  (with the source batch in the forward, shared BatchNorm statistics would differ).
- The source stream's position is not checkpointed: a resumed run redraws source batches from its seed.
- An "epoch" is one pass over the target set, as in the official script; the source stream cycles independently.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset, TensorDataset

from damokit.engine import FitResult, TrainConfig, build_optimizer, fit
from damokit.engine.probes import accuracy, extract_features

__all__ = [
    "METHODS",
    "extract_features",
    "class_means",
    "SinkhornResult",
    "unbalanced_sinkhorn",
    "uot_class_importance",
    "class_scores",
    "select_classes",
    "SubsetByClass",
    "JointModel",
    "JointFineTuner",
]

METHODS = ("uot", "nn_max_cos", "mean_cos", "random")


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain per-class means of unnormalised features (spec §7: normalise only inside the cost) and counts.

    Shapes:
        features: (N, D); labels: (N,) -> means (K, D) float64 (zero rows for empty classes), counts (K,)
    """
    features = torch.as_tensor(features)
    labels = torch.as_tensor(labels).long()
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(
            f"features must be (N, D) and labels (N,), got {tuple(features.shape)} and {tuple(labels.shape)}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]")
    counts = torch.bincount(labels, minlength=num_classes)
    sums = torch.zeros(num_classes, features.shape[1], dtype=torch.float64)
    sums.index_add_(0, labels, features.to(torch.float64))  # (K, D)
    return sums / counts.clamp(min=1)[:, None], counts


class SinkhornResult(NamedTuple):
    """Transport plan and the convergence report of ``unbalanced_sinkhorn``.

    Shapes: plan (K_s, K_t); log_u (K_s,); log_v (K_t,)
    """

    plan: torch.Tensor
    log_u: torch.Tensor
    log_v: torch.Tensor
    n_iter: int
    err: float
    converged: bool


def _sup_rel_change(log_new: torch.Tensor, log_old: torch.Tensor) -> float:
    """POT's ``max|u - u_old| / max(max|u|, max|u_old|, 1)`` from logs, without exponentiating large values."""
    m = torch.maximum(torch.maximum(log_new.max(), log_old.max()), log_new.new_zeros(()))
    return float((torch.exp(log_new - m) - torch.exp(log_old - m)).abs().max())


def _log_matvec(k_shift: torch.Tensor, shift: torch.Tensor, log_k: torch.Tensor, log_x: torch.Tensor) -> torch.Tensor:
    """``log sum_j exp(log_k[i, j] + log_x[j])`` via ``k_shift = exp(log_k - shift[:, None])`` and one mat-vec.

    Rows whose shifted sum is tiny (where float64 could underflow) are recomputed with an exact logsumexp.

    Shapes:
        k_shift, log_k: (R, C); shift: (R,); log_x: (C,) -> (R,)
    """
    m = log_x.max()
    total = k_shift @ torch.exp(log_x - m)  # (R,), terms in (0, 1]
    out = shift + m + torch.log(total)
    bad = total < 1e-200
    if bad.any():
        out[bad] = torch.logsumexp(log_k[bad] + log_x[None, :], dim=1)
    return out


def unbalanced_sinkhorn(
    a,
    b,
    M,
    *,
    reg: float = 1.0,
    reg_src: float = 1.0,
    reg_tgt: float = 100.0,
    max_iter: int = 1000,
    tol: float = 1e-6,
) -> SinkhornResult:
    """Entropic unbalanced OT by generalised Sinkhorn scaling, float64 and log-domain (spec §2).

    Solves ``min_T <T, M> + reg sum T log T + reg_src KL(T 1 | a) + reg_tgt KL(T^T 1 | b)``; iterates
    ``u = (a / K v)^(reg_src / (reg_src + reg))``, ``v = (b / K^T u)^(reg_tgt / (reg_tgt + reg))`` with
    ``K = exp(-M / reg)`` from ``u = 1/K_s, v = 1/K_t`` until the mean relative change of (u, v) < ``tol``.

    Args:
        a, b: positive source / target masses (torch or numpy); M: cost (K_s, K_t).

    Raises:
        ValueError: shapes disagree, masses are not positive, or a regulariser is not positive.
    """
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    M = torch.as_tensor(M, dtype=torch.float64)
    if M.ndim != 2 or a.shape != (M.shape[0],) or b.shape != (M.shape[1],):
        raise ValueError(
            f"M must be (K_s, K_t) with a (K_s,) and b (K_t,); got M {tuple(M.shape)}, a {tuple(a.shape)}, "
            f"b {tuple(b.shape)}"
        )
    if (a <= 0).any() or (b <= 0).any():
        raise ValueError("masses a and b must be strictly positive")
    if min(reg, reg_src, reg_tgt) <= 0:
        raise ValueError(f"reg, reg_src and reg_tgt must be > 0, got {reg}, {reg_src}, {reg_tgt}")
    if max_iter < 1 or tol <= 0:
        raise ValueError(f"max_iter must be >= 1 and tol > 0, got {max_iter}, {tol}")
    log_k = -M / reg  # (K_s, K_t)
    # row- / column-shifted kernels in (0, 1]: the log-sum-exps below become mat-vecs (fast) without overflow
    row_max, col_max = log_k.max(1).values, log_k.max(0).values
    k_rows, k_cols = torch.exp(log_k - row_max[:, None]), torch.exp(log_k - col_max[None, :])
    log_a, log_b = a.log(), b.log()
    fi_s, fi_t = reg_src / (reg_src + reg), reg_tgt / (reg_tgt + reg)
    log_u = torch.full_like(log_a, -math.log(len(a)))
    log_v = torch.full_like(log_b, -math.log(len(b)))
    err, n_iter = float("inf"), 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 (n_iter is reported)
        log_kv = _log_matvec(k_rows, row_max, log_k, log_v)  # log(K v), (K_s,)
        log_u_new = fi_s * (log_a - log_kv)  # log (a / K v)^fi_s
        log_ktu = _log_matvec(k_cols.T, col_max, log_k.T, log_u_new)  # log(K^T u), (K_t,)
        log_v_new = fi_t * (log_b - log_ktu)  # log (b / K^T u)^fi_t
        err = 0.5 * (_sup_rel_change(log_u_new, log_u) + _sup_rel_change(log_v_new, log_v))
        log_u, log_v = log_u_new, log_v_new
        if err < tol:
            break
    plan = torch.exp(log_u[:, None] + log_k + log_v[None, :])  # diag(u) K diag(v)
    return SinkhornResult(plan, log_u, log_v, n_iter, err, err < tol)


def _cosine(src_means: torch.Tensor, tgt_means: torch.Tensor) -> torch.Tensor:
    src = torch.as_tensor(src_means, dtype=torch.float64)
    tgt = torch.as_tensor(tgt_means, dtype=torch.float64)
    if src.ndim != 2 or tgt.ndim != 2 or src.shape[1] != tgt.shape[1]:
        raise ValueError(
            f"src_means (K_s, D) and tgt_means (K_t, D) must share D; got {tuple(src.shape)} and {tuple(tgt.shape)}"
        )
    return F.normalize(src, dim=1) @ F.normalize(tgt, dim=1).T  # (K_s, K_t)


def uot_class_importance(
    src_means: torch.Tensor, tgt_means: torch.Tensor, *, p_m: float = 0.1, **sinkhorn_kw: Any
) -> tuple[torch.Tensor, SinkhornResult]:
    """Importance of each source class: its row sum of the UOT plan with cost ``(1 - cos) / p_m`` (spec §2).

    Shapes:
        src_means: (K_s, D); tgt_means: (K_t, D) -> importance (K_s,) float64
    """
    if p_m <= 0:
        raise ValueError(f"p_m must be > 0, got {p_m}")
    cost = (1.0 - _cosine(src_means, tgt_means)) / p_m  # (K_s, K_t), in [0, 2 / p_m]
    a = torch.ones(cost.shape[0], dtype=torch.float64)
    b = torch.ones(cost.shape[1], dtype=torch.float64)
    result = unbalanced_sinkhorn(a, b, cost, **sinkhorn_kw)
    return result.plan.sum(1), result


def class_scores(
    src_means: torch.Tensor, tgt_means: torch.Tensor, method: str = "uot", *, seed: int = 0, **uot_kw: Any
) -> torch.Tensor:
    """Score of each source class under ``method`` (higher = selected first).

    "uot": UOT importance; "nn_max_cos": best cosine to any target class; "mean_cos": mean cosine over target
    classes; "random": a seeded random score.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "uot":
        return uot_class_importance(src_means, tgt_means, **uot_kw)[0]
    cos = _cosine(src_means, tgt_means)
    if method == "nn_max_cos":
        return cos.max(1).values
    if method == "mean_cos":
        return cos.mean(1)
    return torch.rand(cos.shape[0], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def select_classes(
    src_means: torch.Tensor, tgt_means: torch.Tensor, k: int, *, method: str = "uot", seed: int = 0, **uot_kw: Any
) -> torch.Tensor:
    """The ``k`` source classes with the highest score, best first (spec §2, §4).

    Shapes:
        src_means: (K_s, D); tgt_means: (K_t, D) -> (k,) int64
    """
    n_src = torch.as_tensor(src_means).shape[0]
    if not 1 <= k <= n_src:
        raise ValueError(f"k must be in [1, {n_src}] (the number of source classes), got {k}")
    scores = class_scores(src_means, tgt_means, method, seed=seed, **uot_kw)
    return torch.argsort(scores, descending=True, stable=True)[:k]


class SubsetByClass(Dataset):
    """The items of ``dataset`` whose label is in ``class_ids``, with their original (source) labels.

    Args:
        dataset: a map-style dataset of ``(x, y, ...)`` items.
        class_ids: the classes to keep.
        labels: every item's label (default: ``dataset.tensors[1]`` of a ``TensorDataset``).
    """

    def __init__(self, dataset: Dataset, class_ids: Sequence[int] | torch.Tensor, labels: torch.Tensor | None = None):
        if labels is None:
            if not isinstance(dataset, TensorDataset) or len(dataset.tensors) < 2:
                raise ValueError("labels are required unless dataset is a TensorDataset of (x, y, ...)")
            labels = dataset.tensors[1]
        labels = torch.as_tensor(labels)
        if len(labels) != len(dataset):
            raise ValueError(f"labels has {len(labels)} entries but the dataset has {len(dataset)} items")
        self.dataset = dataset
        self.class_ids = torch.as_tensor(class_ids, dtype=torch.long)
        self.indices = torch.nonzero(torch.isin(labels, self.class_ids)).flatten()  # (n_kept,)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.dataset[int(self.indices[i])]

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The kept items as stacked tensors (for ``JointFineTuner``'s source stream)."""
        if isinstance(self.dataset, TensorDataset):
            return tuple(t[self.indices] for t in self.dataset.tensors)
        items = [self[i] for i in range(len(self))]
        return tuple(torch.stack([torch.as_tensor(item[j]) for item in items]) for j in range(len(items[0])))


class JointModel(nn.Module):
    """Backbone with a target head ``fc_down`` and a source head ``fc_up`` on its pooled feature (spec §3).

    Shapes:
        x: (B, ...) -> features (B, feat_dim) -> target logits (B, n_tgt) / source logits (B, n_src)
    """

    def __init__(self, backbone: nn.Module, feat_dim: int, n_src: int, n_tgt: int):
        super().__init__()
        self.backbone = backbone
        self.fc_down = nn.Linear(feat_dim, n_tgt)
        self.fc_up = nn.Linear(feat_dim, n_src) if n_src > 0 else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        fn = getattr(self.backbone, "forward_features", None)
        return fn(x) if callable(fn) else self.backbone(x)

    def forward(
        self, x: torch.Tensor, x_src: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Target logits of ``x``; with ``x_src``, one pass over both (shared BatchNorm statistics) returning
        (target logits of x, source-head logits of x_src; the target head when there is no source head)."""
        if x_src is None:
            return self.fc_down(self.features(x))
        feats = self.features(torch.cat([x, x_src]))  # (B_t + B_s, feat_dim)
        head_s = self.fc_up if self.fc_up is not None else self.fc_down
        return self.fc_down(feats[: len(x)]), head_s(feats[len(x) :])


class _SourceStream:
    """Endless seeded shuffled batches of the source tensors; restarts (reshuffled) when exhausted."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, seed: int):
        self.tensors, self.batch_size = tensors, batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(tensors[0]), generator=self.gen)
        self.pos, self.restarts = 0, 0

    def next(self) -> tuple[torch.Tensor, ...]:
        if self.pos + self.batch_size > len(self.order):  # drop the ragged tail, reshuffle, start over
            self.order = torch.randperm(len(self.order), generator=self.gen)
            self.pos, self.restarts = 0, self.restarts + 1
        idx = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return tuple(t[idx] for t in self.tensors)


class JointFineTuner:
    """Fine-tune a backbone on target data plus selected source data: ``CE_t + lam * CE_s`` (spec §3).

    Args:
        backbone: the pre-trained model (``forward_features`` when it has one).
        feat_dim: its feature size; n_src / n_tgt: classes of the source / target heads.
        lam: weight of the source loss (official scripts: 0.3 supervised, 1.0 MoCo).
        mu: source batch = ``mu`` x target batch.
        head_lr_mult: heads' learning rate over the backbone's (official: 10).
        source_labels: "given" (source head, own labels) or "pseudo" (the FixMatch variant: the target head's
            soft prediction on the source image is the label of its ``strong_augment`` view).
        augment: applied to both streams' training batches; strong_augment: the "pseudo" strong view.

    Example:
        >>> bb = nn.Sequential(nn.Flatten(), nn.Linear(4, 8))
        >>> tuner = JointFineTuner(bb, 8, n_src=3, n_tgt=2, lam=0.5)
        >>> xt, yt = torch.randn(16, 4), torch.randint(0, 2, (16,))
        >>> xs, ys = torch.randn(20, 4), torch.randint(0, 3, (20,))
        >>> res = tuner.fit((xt, yt), (xs, ys), TrainConfig(epochs=1, batch_size=8, progress=False))
        >>> res.steps
        2
    """

    def __init__(
        self,
        backbone: nn.Module,
        feat_dim: int,
        n_src: int,
        n_tgt: int,
        *,
        lam: float = 1.0,
        mu: float = 1.0,
        head_lr_mult: float = 10.0,
        source_labels: str = "given",
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        strong_augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        if lam < 0 or mu <= 0 or head_lr_mult <= 0:
            raise ValueError(f"need lam >= 0, mu > 0 and head_lr_mult > 0; got {lam}, {mu}, {head_lr_mult}")
        if source_labels not in ("given", "pseudo"):
            raise ValueError(f"source_labels must be 'given' or 'pseudo', got {source_labels!r}")
        self.model = JointModel(backbone, feat_dim, n_src if source_labels == "given" else 0, n_tgt)
        self.lam, self.mu, self.head_lr_mult, self.source_labels = lam, mu, head_lr_mult, source_labels
        self.augment = augment or (lambda x: x)
        self.strong_augment = strong_augment or self.augment
        self.stream: _SourceStream | None = None

    def _optimizer(self, config: TrainConfig) -> torch.optim.Optimizer:
        heads = [p for n, p in self.model.named_parameters() if n.startswith("fc_")]
        body = [p for n, p in self.model.named_parameters() if not n.startswith("fc_")]
        groups = [{"params": body, "lr": config.lr}, {"params": heads, "lr": config.lr * self.head_lr_mult}]
        return build_optimizer(
            config.optimizer, groups, config.lr, config.weight_decay, **dict(config.optimizer_kwargs)
        )

    def fit(
        self,
        target: tuple[torch.Tensor, torch.Tensor],
        source: tuple[torch.Tensor, torch.Tensor] | None,
        config: TrainConfig,
        *,
        out_dir=None,
        resume: bool = False,
    ) -> FitResult:
        """Train on the target set (one epoch = one pass over it) with source batches cycling alongside."""
        use_source = source is not None and len(source[0]) > 0 and self.lam > 0
        if use_source:
            n_src_batch = max(1, round(self.mu * config.batch_size))
            if len(source[0]) < n_src_batch:
                raise ValueError(
                    f"the source set has {len(source[0])} samples, fewer than one source batch ({n_src_batch} = "
                    f"mu x batch_size); lower mu or select more classes"
                )
            self.stream = _SourceStream(tuple(source), n_src_batch, config.seed)
        model = self.model

        def loss_fn(m: nn.Module, batch) -> torch.Tensor | tuple[torch.Tensor, dict[str, float]]:
            xt, yt = batch
            if not use_source:
                return F.cross_entropy(m(self.augment(xt)), yt)
            xs, ys = (t.to(xt.device) for t in self.stream.next())
            if self.source_labels == "pseudo":
                with torch.no_grad():  # soft pseudo-label from the weak view (temperature 1)
                    soft = F.softmax(model(self.augment(xs)), dim=1)
                xs = self.strong_augment(xs)
            else:
                xs = self.augment(xs)
            logits_t, logits_s = m(self.augment(xt), xs)  # through the DDP wrapper when there is one
            loss_t = F.cross_entropy(logits_t, yt)
            if self.source_labels == "given":
                loss_s = F.cross_entropy(logits_s, ys)  # source labels only meet the source head
            else:
                loss_s = torch.sum(-soft * F.log_softmax(logits_s, dim=1), dim=1).mean()
            return loss_t + self.lam * loss_s, {"loss_t": float(loss_t.detach()), "loss_s": float(loss_s.detach())}

        return fit(
            model, target, loss_fn=loss_fn, config=config, optimizer=self._optimizer(config), out_dir=out_dir,
            resume=resume,
        )  # fmt: skip

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Top-1 accuracy of the target head."""
        return accuracy(self.model, x, y)
