"""Procedural person re-identification data (TransReID-SSL miniature, spec §12), seeded and batched in torch.

A person is drawn as head ellipse + torso + two legs (+ optional bag) on a 64x32 canvas; an identity fixes
upper/lower colour (12 each), upper pattern (solid, horizontal stripes, vertical stripes, checks), bag
(none, left, right), skin tone (3) and body width (3). Each image jitters position (+-3 px), scale
(0.9-1.1) and mirroring, and gets an occluding box with p 0.2. A camera is a style: channel gains, gamma,
brightness offset, blur sigma and background colour. Domain "A" and domain "B" have six cameras each;
B's colour casts are stronger and its backgrounds come from another palette.

Deviations: the spec's irrelevant pool images include texture patches cut from scikit-image samples;
scikit-image is not a dependency, so procedural textures (oriented gratings with noise) replace them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = ["ReIDSplit", "H", "W", "synthetic_reid", "synthetic_reid_pool", "render"]

H, W = 64, 32
_PALETTE = torch.tensor(
    [[0.85, 0.1, 0.1], [0.1, 0.6, 0.15], [0.15, 0.25, 0.85], [0.95, 0.85, 0.1], [0.95, 0.5, 0.05],
     [0.55, 0.15, 0.7], [0.1, 0.75, 0.8], [0.95, 0.95, 0.95], [0.1, 0.1, 0.1], [0.5, 0.5, 0.5],
     [0.55, 0.3, 0.1], [0.95, 0.45, 0.7]]
)  # fmt: skip
_SKIN = torch.tensor([[0.95, 0.8, 0.65], [0.8, 0.6, 0.45], [0.45, 0.3, 0.2]])
_WIDTH = torch.tensor([0.8, 1.0, 1.2])
_BAG = torch.tensor([0.35, 0.22, 0.1])


class ReIDSplit(NamedTuple):
    images: torch.Tensor  # (N, 3, 64, 32) uint8
    pids: torch.Tensor  # (N,) int64
    camids: torch.Tensor  # (N,) int64


def _cameras(domain: str) -> dict[str, torch.Tensor]:
    """Six camera styles of a domain (fixed per domain, independent of the data seed)."""
    g = torch.Generator().manual_seed({"A": 11, "B": 23}[domain])
    spread = 0.4 if domain == "A" else 0.6
    u = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    bg_hi = torch.tensor([0.75, 0.75, 0.7]) if domain == "A" else torch.tensor([0.35, 0.55, 0.35])
    return {
        "gain": 1 - spread + 2 * spread * u(6, 3),
        "gamma": 0.7 + 0.7 * u(6),
        "offset": -0.1 + 0.2 * u(6),
        "sigma": torch.tensor([0.0, 0.7, 1.2])[torch.randint(3, (6,), generator=g)],
        "bg": bg_hi * (0.5 + 0.5 * u(6, 3)),
    }


def _identities(n: int, g: torch.Generator) -> torch.Tensor:
    """Attributes (n, 6): upper, lower, pattern, bag, skin, width."""
    highs = torch.tensor([12, 12, 4, 3, 3, 3])
    return (torch.rand(n, 6, generator=g) * highs).long()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return x
    r = math.ceil(3 * sigma)
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype) / sigma) ** 2)
    k = (k / k.sum()).repeat(3, 1)  # (3, K)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(3, 1, 1, -1), groups=3)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(3, 1, -1, 1), groups=3)


def render(
    attrs: torch.Tensor, camids: torch.Tensor, domain_cams: dict[str, torch.Tensor], g: torch.Generator
) -> torch.Tensor:
    """Draw people with attributes ``attrs (N, 6)`` seen by cameras ``camids (N,)`` -> uint8 (N, 3, 64, 32)."""
    N = attrs.shape[0]
    dx = torch.randint(-3, 4, (N, 1, 1), generator=g).float()
    dy = torch.randint(-3, 4, (N, 1, 1), generator=g).float()
    s = 0.9 + 0.2 * torch.rand(N, 1, 1, generator=g)
    mirror = torch.where(torch.rand(N, 1, 1, generator=g) < 0.5, -1.0, 1.0)
    ys, xs = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    u = (xs - 15.5 - dx) / s * mirror  # (N, H, W) body-centred coordinates
    v = (ys - dy - 2) / s
    wsc = _WIDTH[attrs[:, 5]].view(N, 1, 1)
    head = ((u / 4) ** 2 + ((v - 8) / 5) ** 2) <= 1
    torso = (v >= 14) & (v < 36) & (u.abs() < 7 * wsc)
    legs = (v >= 36) & (v < 60) & (((u - 3 * wsc).abs() < 2.5 * wsc) | ((u + 3 * wsc).abs() < 2.5 * wsc))
    side = torch.tensor([0.0, -1.0, 1.0])[attrs[:, 3]].view(N, 1, 1)
    bag = (side != 0) & (v >= 22) & (v < 34) & ((u * side >= 7 * wsc) & (u * side < 11 * wsc))
    pattern = attrs[:, 2].view(N, 1, 1)
    stripe_h, stripe_v = torch.floor(v / 3) % 2 == 1, torch.floor(u / 2) % 2 == 1
    dark = ((pattern == 1) & stripe_h) | ((pattern == 2) & stripe_v) | ((pattern == 3) & (stripe_h ^ stripe_v))
    upper = _PALETTE[attrs[:, 0]].view(N, 3, 1, 1)
    lower = _PALETTE[attrs[:, 1]].view(N, 3, 1, 1)
    skin = _SKIN[attrs[:, 4]].view(N, 3, 1, 1)
    bg = domain_cams["bg"][camids].view(N, 3, 1, 1)
    ramp = (torch.arange(H).float() / H).view(1, 1, H, 1)
    img = bg * (0.8 + 0.3 * ramp) + 0.04 * torch.randn(N, 3, H, W, generator=g)
    top = torch.where(dark.unsqueeze(1), upper * 0.35, upper)
    img = torch.where(legs.unsqueeze(1), lower, img)
    img = torch.where(torso.unsqueeze(1), top, img)
    img = torch.where(head.unsqueeze(1), skin, img)
    img = torch.where(bag.unsqueeze(1), _BAG.view(1, 3, 1, 1), img)
    # occluder: one box of random colour with p 0.2
    occ = torch.rand(N, generator=g) < 0.2
    oy, ox = torch.randint(0, H - 16, (N, 1, 1), generator=g), torch.randint(0, W - 10, (N, 1, 1), generator=g)
    oh, ow = torch.randint(10, 24, (N, 1, 1), generator=g), torch.randint(6, 14, (N, 1, 1), generator=g)
    box = (ys >= oy) & (ys < oy + oh) & (xs >= ox) & (xs < ox + ow) & occ.view(N, 1, 1)
    img = torch.where(box.unsqueeze(1), torch.rand(N, 3, 1, 1, generator=g), img)
    # camera style: gain * x^gamma + offset, then blur
    img = img.clamp(0, 1) ** domain_cams["gamma"][camids].view(N, 1, 1, 1)
    img = (img * domain_cams["gain"][camids].view(N, 3, 1, 1) + domain_cams["offset"][camids].view(N, 1, 1, 1)).clamp(
        0, 1
    )
    sig = domain_cams["sigma"][camids]
    for value in torch.unique(sig).tolist():  # at most three blur levels
        sel = sig == value
        img[sel] = _blur(img[sel], value)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


def _render_chunked(attrs, camids, cams, g, chunk: int = 2048) -> torch.Tensor:
    return torch.cat(
        [render(attrs[s : s + chunk], camids[s : s + chunk], cams, g) for s in range(0, len(attrs), chunk)]
    )


def _views(n_ids: int, g: torch.Generator, min_cams: int = 2, max_cams: int = 4, min_per: int = 4, max_per: int = 8):
    """(identity, camera) pairs: each identity in 2-4 of the 6 cameras with 4-8 images each."""
    n_cams = torch.randint(min_cams, max_cams + 1, (n_ids,), generator=g)
    cam_sets = torch.argsort(torch.rand(n_ids, 6, generator=g), dim=1)  # random camera order per identity
    ids, cams = [], []
    pair_id = torch.arange(n_ids).repeat_interleave(n_cams)
    pair_cam = torch.cat([cam_sets[i, : n_cams[i]] for i in range(n_ids)])
    per = torch.randint(min_per, max_per + 1, (len(pair_id),), generator=g)
    ids = pair_id.repeat_interleave(per)
    cams = pair_cam.repeat_interleave(per)
    return ids, cams


def synthetic_reid(
    domain: str = "A", *, n_train_ids: int = 300, n_test_ids: int = 300, seed: int = 0, max_per_camera: int = 8
) -> dict[str, ReIDSplit]:
    """Train / query / gallery splits of one domain; query = one image per (test identity, camera).

    Identities of the two domains and of the pool are disjoint draws; pids are 0-based within each split
    family (train ids ``0..n_train_ids-1``, test ids ``0..n_test_ids-1``).

    Example:
        >>> d = synthetic_reid(n_train_ids=4, n_test_ids=3)
        >>> d["train"].images.shape[1:], d["train"].images.dtype
        (torch.Size([3, 64, 32]), torch.uint8)
    """
    if domain not in ("A", "B"):
        raise ValueError(f"domain must be 'A' or 'B', got {domain!r}")
    if n_train_ids < 1 or n_test_ids < 1:
        raise ValueError(
            f"need at least one identity per split, got n_train_ids={n_train_ids}, n_test_ids={n_test_ids}"
        )
    g = torch.Generator().manual_seed(seed * 1000 + {"A": 1, "B": 2}[domain])
    cams = _cameras(domain)
    out = {}
    for split, n in (("train", n_train_ids), ("test", n_test_ids)):
        attrs = _identities(n, g)
        ids, camids = _views(n, g, max_per=max(4, max_per_camera), min_per=min(4, max_per_camera))
        images = _render_chunked(attrs[ids], camids, cams, g)
        out[split] = ReIDSplit(images, ids, camids)
    test = out.pop("test")
    key = test.pids * 6 + test.camids
    first = torch.ones_like(key, dtype=torch.bool)
    first[1:] = key[1:] != key[:-1]  # one query per (identity, camera): its first image
    out["query"] = ReIDSplit(test.images[first], test.pids[first], test.camids[first])
    out["gallery"] = ReIDSplit(test.images[~first], test.pids[~first], test.camids[~first])
    return out


def synthetic_reid_pool(n: int = 10_000, *, n_ids: int = 2000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Unlabelled pre-training pool: ``(images uint8 (n, 3, 64, 32), relevant bool (n,))``.

    Half are renders of ``n_ids`` further identities under random cameras of both domains (relevant);
    the other half, in equal thirds, background-only frames, procedural textures and renders rotated by
    90 degrees (irrelevant). The order is shuffled.
    """
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    g = torch.Generator().manual_seed(seed * 1000 + 7)
    n_rel = n // 2
    cams = {k: torch.cat([_cameras("A")[k], _cameras("B")[k]]) for k in _cameras("A")}
    attrs = _identities(n_ids, g)[torch.randint(n_ids, (n_rel,), generator=g)]
    rel = _render_chunked(attrs, torch.randint(12, (n_rel,), generator=g), cams, g)
    n_irr = n - n_rel
    n_bg, n_tex = n_irr // 3, n_irr // 3
    n_rot = n_irr - n_bg - n_tex
    cam_bg = torch.randint(12, (n_bg,), generator=g)
    ramp = (torch.arange(H).float() / H).view(1, 1, H, 1)
    bg = cams["bg"][cam_bg].view(-1, 3, 1, 1) * (0.8 + 0.3 * ramp) + 0.04 * torch.randn(n_bg, 3, H, W, generator=g)
    bg = (bg.clamp(0, 1) * 255).round().to(torch.uint8)
    ys, xs = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    angle = torch.rand(n_tex, 1, 1, generator=g) * math.pi
    freq = 0.2 + 0.8 * torch.rand(n_tex, 1, 1, generator=g)
    wave = torch.sin(freq * (xs * torch.cos(angle) + ys * torch.sin(angle)))  # (n_tex, H, W)
    c1, c2 = torch.rand(n_tex, 3, 1, 1, generator=g), torch.rand(n_tex, 3, 1, 1, generator=g)
    tex = c1 + (c2 - c1) * (wave.unsqueeze(1) + 1) / 2 + 0.08 * torch.randn(n_tex, 3, H, W, generator=g)
    tex = (tex.clamp(0, 1) * 255).round().to(torch.uint8)
    rot_src = _render_chunked(
        _identities(n_rot, g), torch.randint(12, (n_rot,), generator=g), cams, g
    ).float()  # (n_rot, 3, 64, 32)
    rot = F.interpolate(rot_src.rot90(1, dims=(2, 3)), size=(H, W), mode="bilinear", align_corners=False)
    rot = rot.round().clamp(0, 255).to(torch.uint8)
    images = torch.cat([rel, bg, tex, rot])
    relevant = torch.cat([torch.ones(n_rel, dtype=torch.bool), torch.zeros(n_irr, dtype=torch.bool)])
    order = torch.randperm(n, generator=g)
    return images[order], relevant[order]
