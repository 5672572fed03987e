"""Stage 3 of TransFGU: concept -> pixels with a gradient CAM on the last attention map (spec §4).

Official code: ``Segmenter.get_grad_mask``. For concept k with prototype mu_k, ``L_k = 1 - cos(cls, mu_k)`` is
back-propagated to the last block's softmax attention A. Positive evidence is where *raising* the CLS
attention lowers L_k. One forward serves all concepts; each concept's backward only traverses the tail of
the last block (from A to the CLS output), so K concepts cost K cheap backward passes.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from damokit.nn.vit import VisionTransformer

__all__ = ["keep_top_mass", "gradient_cam"]


def keep_top_mass(evidence: torch.Tensor, mass: float = 0.8) -> torch.Tensor:
    """Zero all but the largest values that together hold ``mass`` of each map's total (official rule:
    sort ascending, normalise, cumulative sum, keep where it exceeds ``1 - mass``).

    Shapes:
        evidence: (..., P) non-negative -> (..., P)
    """
    values, order = evidence.sort(dim=-1)
    cum = (values / values.sum(dim=-1, keepdim=True).clamp_min(1e-12)).cumsum(dim=-1)
    keep_sorted = cum > 1.0 - mass
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return evidence * keep


def gradient_cam(vit: VisionTransformer, images: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Soft pseudo labels ``P`` (N, K, h, w): ``CAM_k = A_hat + top-mass(max(-G_k, 0))``, zero where G_k > 0.

    ``A_hat`` is the head-mean CLS->patch attention divided by its max; ``G_k`` is the head-mean of
    dL_k/dA[:, :, 0, 1:]. The backbone is used in eval mode and its weights get no gradient.

    Shapes:
        images: (N, 3, H, W), prototypes: (K, D) -> (N, K, h, w)
    """
    was_training = vit.training
    vit.eval()
    h, w = images.shape[2] // vit.patch_size, images.shape[3] // vit.patch_size
    with torch.enable_grad():
        # the input carries the graph, so a frozen backbone (requires_grad False) still yields dL/dA
        out = vit.forward_with_last_attention(images.detach().requires_grad_(True))
        cls = out.tokens[:, 0]  # (N, D)
        loss = 1.0 - F.cosine_similarity(cls[:, None], prototypes[None].to(cls), dim=-1)  # (N, K)
        grads = [
            torch.autograd.grad(loss[:, k].sum(), out.attention, retain_graph=k + 1 < loss.shape[1])[0]
            for k in range(loss.shape[1])
        ]
    vit.train(was_training)
    attn = out.attention.detach()[:, :, 0, 1:].mean(dim=1)  # (N, h*w)
    base = attn / attn.amax(dim=1, keepdim=True).clamp_min(1e-12)
    g = torch.stack([grad[:, :, 0, 1:].mean(dim=1) for grad in grads], dim=1)  # (N, K, h*w)
    cam = base[:, None] + keep_top_mass((-g).clamp_min(0))
    cam = cam.masked_fill(g > 0, 0.0)
    return cam.view(len(images), -1, h, w)
