"""TransFGU targets and losses: pseudo-label targets with bootstrapping, and L_cat, L_unc, L_emb (spec §5).

Official code: ``models/loss/thingstuff_bootstrap_loss.py`` and ``things_bootstrap_loss.py``.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["normalise_pseudo_labels", "make_targets", "transfgu_losses", "negative_weight"]

_ALPHAS = (0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.10)


def negative_weight(epochs_since_teacher_update: int) -> float:
    """alpha of the negative CE term: 0.03, 0.04, ... indexed by epochs since the last teacher update, <= 0.10."""
    return _ALPHAS[min(epochs_since_teacher_update, len(_ALPHAS) - 1)]


def normalise_pseudo_labels(pseudo: torch.Tensor, things_only: bool) -> torch.Tensor:
    """Per-image min-max to [0, 1]; things-only adds background channel 0 = max(0, 0.1 - max_k P_k).

    Shapes:
        pseudo: (N, K, h, w) -> (N, K, h, w) or (N, K + 1, h, w)
    """
    lo = pseudo.amin(dim=(1, 2, 3), keepdim=True)
    hi = pseudo.amax(dim=(1, 2, 3), keepdim=True)
    p = (pseudo - lo) / (hi - lo).clamp_min(1e-12)
    if things_only:
        background = (0.1 - p.amax(dim=1, keepdim=True)).clamp_min(0)
        p = torch.cat([background, p], dim=1)
    return p


def make_targets(
    p_hat: torch.Tensor, teacher_logits: torch.Tensor | None, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Hard targets ``y`` (N, h, w) and, while bootstrapping, negative targets from permuted channels.

    Before bootstrapping ``y = argmax P_hat``. With a teacher: ``P~ = 0.5 softmax(teacher) + 0.5 P_hat``,
    ``y = argmax P~`` and ``y- = argmax`` of P~ with its class channels randomly permuted.
    """
    if teacher_logits is None:
        return p_hat.argmax(dim=1), None
    mixed = 0.5 * teacher_logits.softmax(dim=1) + 0.5 * p_hat
    perm = torch.randperm(mixed.shape[1], generator=generator).to(mixed.device)
    return mixed.argmax(dim=1), mixed[:, perm].argmax(dim=1)


def transfgu_losses(
    logits: torch.Tensor,
    class_emb: torch.Tensor,
    target: torch.Tensor,
    negative: torch.Tensor | None,
    alpha: float,
    *,
    things_only: bool,
    p_hat: torch.Tensor,
    weights: tuple[float, float, float] = (1.0, 0.3, 1.0),
) -> tuple[torch.Tensor, dict[str, float]]:
    """``L = L_cat + 0.3 L_unc + L_emb``.

    - ``L_cat = CE(M, y) - alpha CE(M, y-)`` (negative term only while bootstrapping);
    - ``L_unc`` = mean of ``1 - (p_1 - p_2)`` (top-two softmax margin); things-only: over the non-background
      channels and only on pixels where some pseudo label exceeds 0.1;
    - ``L_emb`` = mean over class pairs i < j of ``1 + e_i . e_j``.

    Shapes:
        logits: (N, C, h, w), class_emb: (N, C, d), target/negative: (N, h, w), p_hat: (N, C, h, w)
    """
    l_cat = F.cross_entropy(logits, target)
    if negative is not None:
        l_cat = l_cat - alpha * F.cross_entropy(logits, negative)
    probs = (logits[:, 1:] if things_only else logits).softmax(dim=1)
    top2 = probs.topk(2, dim=1).values  # (N, 2, h, w)
    margin = 1.0 - (top2[:, 0] - top2[:, 1])
    if things_only:
        valid = (p_hat[:, 1:] > 0.1).any(dim=1)
        l_unc = margin[valid].mean() if valid.any() else margin.sum() * 0.0
    else:
        l_unc = margin.mean()
    sim = torch.einsum("nid,njd->nij", class_emb, class_emb)
    i, j = torch.triu_indices(sim.shape[1], sim.shape[1], offset=1)
    l_emb = (1.0 + sim[:, i, j]).mean()
    w_cat, w_unc, w_emb = weights
    loss = w_cat * l_cat + w_unc * l_unc + w_emb * l_emb
    return loss, {"cat": float(l_cat.detach()), "unc": float(l_unc.detach()), "emb": float(l_emb.detach())}
