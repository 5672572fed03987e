"""A small FCOS-style detector for searched backbones, COCO-style mAP, and the BCCD data.

The paper trains GFLV2 (mmdetection) on COCO with the found backbones; on a 2-core CPU we use a small
single-stage anchor-free detector instead (FCOS, Tian et al., ICCV 2019, arXiv 1904.01355): an FPN on
the backbone's C3..C5, a shared head of ``head_convs`` 3x3 conv + GroupNorm + ReLU towers, per level a
classification map (sigmoid focal loss), a centerness map (BCE, on the regression tower) and l/t/r/b
distances (GIoU loss weighted by the centerness target), with center sampling (radius 1.5 strides) and
the smallest-area rule for ambiguous points.

``coco_map`` is COCO's box AP: greedy score-ordered matching per IoU threshold 0.50:0.05:0.95, 101-point
interpolated precision, all areas, at most ``max_dets`` detections per image, averaged over classes that
have ground truth. (pycocotools / torchmetrics do not install here; the routine is tested on
hand-computed cases.)

Deviations from the paper's detector: FCOS instead of GFLV2, 3 levels (P3..P5) instead of 5, no
multi-scale training, Adam-style optimiser settings given by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from damokit.data import load_npz
from damokit.nas.structure import Structure, StructureNet

__all__ = [
    "BCCD_CLASSES",
    "Detections",
    "FCOSOutput",
    "FCOSDetector",
    "box_iou",
    "nms",
    "coco_map",
    "fcos_loss",
    "load_bccd",
    "BCCDDataset",
    "collate_detection",
]

BCCD_CLASSES = ("RBC", "WBC", "Platelets")


# ---- boxes -------------------------------------------------------------------------------------------
def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of every pair: a (N, 4), b (M, 4) in x1, y1, x2, y2 -> (N, M)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou: float = 0.6) -> Tensor:
    """Class-wise greedy NMS; returns kept indices sorted by descending score."""
    order = scores.argsort(descending=True)
    boxes, labels = boxes[order], labels[order]
    # same-class overlaps only: (K, K)
    overlap = (box_iou(boxes, boxes) > iou) & (labels[:, None] == labels[None, :])
    keep = torch.ones(len(order), dtype=torch.bool)
    for i in range(len(order)):  # sequential by nature; K <= a few hundred
        if keep[i]:
            keep[i + 1 :] &= ~overlap[i, i + 1 :]
    return order[keep]


# ---- mAP ---------------------------------------------------------------------------------------------
class Detections(NamedTuple):
    """One image's detections: boxes (K, 4) x1y1x2y2, scores (K,), labels (K,)."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor


def coco_map(
    detections: Sequence[Detections],
    ground_truth: Sequence[tuple[Tensor, Tensor]],
    num_classes: int,
    *,
    iou_thresholds: Sequence[float] | None = None,
    max_dets: int = 100,
) -> dict[str, float]:
    """COCO box AP: ``{"map": AP@[.5:.95], "map50": AP@.5, "map75": AP@.75, "ap_class<c>": ...}``.

    Args:
        detections: per image, :class:`Detections`.
        ground_truth: per image, (boxes (M, 4), labels (M,)).
        num_classes: classes are 0..num_classes-1; classes without ground truth are left out of the mean.
    """
    if len(detections) != len(ground_truth):
        raise ValueError(f"got {len(detections)} detection lists for {len(ground_truth)} ground-truth images")
    thr = np.asarray(np.linspace(0.5, 0.95, 10) if iou_thresholds is None else iou_thresholds)  # (T,)
    T = len(thr)
    recall_points = np.linspace(0.0, 1.0, 101)
    ap = np.full((num_classes, T), np.nan)
    for c in range(num_classes):
        scores_all, tp_all, n_gt = [], [], 0
        for det, (gt_boxes, gt_labels) in zip(detections, ground_truth):
            g = gt_boxes[gt_labels == c]
            n_gt += len(g)
            keep = det.labels == c
            d_boxes, d_scores = det.boxes[keep], det.scores[keep]
            order = d_scores.argsort(descending=True, stable=True)[:max_dets]
            d_boxes, d_scores = d_boxes[order], d_scores[order]
            tp = np.zeros((T, len(d_boxes)), dtype=bool)
            if len(g) and len(d_boxes):
                ious = box_iou(d_boxes, g).numpy()  # (D, G)
                matched = np.zeros((T, len(g)), dtype=bool)
                for i in range(len(d_boxes)):  # score order; all thresholds at once
                    cand = np.where(matched, -1.0, ious[i][None, :])  # (T, G)
                    best = cand.argmax(axis=1)
                    ok = cand[np.arange(T), best] >= thr
                    tp[ok, i] = True
                    matched[np.arange(T)[ok], best[ok]] = True
            scores_all.append(d_scores.numpy())
            tp_all.append(tp)
        if n_gt == 0:
            continue
        scores = np.concatenate(scores_all) if scores_all else np.zeros(0)
        tp = np.concatenate(tp_all, axis=1) if tp_all else np.zeros((T, 0), dtype=bool)
        order = np.argsort(-scores, kind="mergesort")
        tp = tp[:, order]
        tp_cum = np.cumsum(tp, axis=1)
        fp_cum = np.cumsum(~tp, axis=1)
        recall = tp_cum / n_gt  # (T, D)
        precision = tp_cum / np.maximum(tp_cum + fp_cum, 1)
        precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # monotone envelope
        if tp.shape[1] == 0:  # no detection of this class: AP 0
            ap[c] = 0.0
            continue
        for t in range(T):
            idx = np.searchsorted(recall[t], recall_points, side="left")
            ok = idx < recall.shape[1]
            ap[c, t] = np.where(ok, precision[t][np.minimum(idx, recall.shape[1] - 1)], 0.0).mean()
    present = ~np.isnan(ap[:, 0])
    if not present.any():
        raise ValueError("no ground-truth boxes in any image; mAP is undefined")
    out = {"map": float(ap[present].mean())}
    for name, value in (("map50", 0.5), ("map75", 0.75)):
        hit = np.isclose(thr, value)
        if hit.any():
            out[name] = float(ap[present][:, hit].mean())
    out.update({f"ap_class{c}": float(ap[c].mean()) for c in range(num_classes) if present[c]})
    return out


# ---- model -------------------------------------------------------------------------------------------
class FCOSOutput(NamedTuple):
    """Dense predictions over all N points of all levels.

    cls_logits (B, N, K); box_dist (B, N, 4) l, t, r, b in pixels; centerness (B, N) logits;
    points (N, 2) x, y pixel centres; strides (N,).
    """

    cls_logits: Tensor
    box_dist: Tensor
    centerness: Tensor
    points: Tensor
    strides: Tensor


def _tower(width: int, n: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(n):
        layers += [nn.Conv2d(width, width, 3, padding=1), nn.GroupNorm(8, width), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class FCOSDetector(nn.Module):
    """FCOS-style detector on a :class:`Structure` backbone (FPN on its C3..C5 -> P3..P5).

    Shapes: x (B, 3, H, W) -> :class:`FCOSOutput` with N = sum over levels of ceil(H/s) * ceil(W/s).
    """

    def __init__(
        self,
        backbone: Structure,
        num_classes: int,
        *,
        width: int = 64,
        head_convs: int = 2,
        out_indices: Sequence[int] | None = None,
        prior: float = 0.01,
    ) -> None:
        super().__init__()
        stages = backbone.stages()
        if out_indices is None:
            out_indices = tuple(range(max(0, len(stages) - 3), len(stages)))
        if num_classes < 1 or width % 8:
            raise ValueError(f"need num_classes >= 1 and width a multiple of 8, got {num_classes}, {width}")
        self.num_classes = num_classes
        self.backbone = StructureNet(backbone, out_indices=out_indices)
        self.level_strides = [stages[i].reduction for i in out_indices]
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in self.backbone.out_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in out_indices)
        self.cls_tower, self.reg_tower = _tower(width, head_convs), _tower(width, head_convs)
        self.cls_out = nn.Conv2d(width, num_classes, 3, padding=1)
        self.reg_out = nn.Conv2d(width, 4, 3, padding=1)
        self.ctr_out = nn.Conv2d(width, 1, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(len(out_indices)))
        for m in [*self.cls_tower, *self.reg_tower, self.cls_out, self.reg_out, self.ctr_out]:
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        nn.init.constant_(self.cls_out.bias, -math.log((1 - prior) / prior))

    def forward(self, x: Tensor) -> FCOSOutput:
        feats = self.backbone(x)  # [C3, C4, C5]
        laterals = [lat(f) for lat, f in zip(self.lateral, feats)]
        for i in range(len(laterals) - 2, -1, -1):  # top-down pathway
            laterals[i] = laterals[i] + F.interpolate(laterals[i + 1], size=laterals[i].shape[-2:], mode="nearest")
        cls, dist, ctr, points, strides = [], [], [], [], []
        for level, (p, smooth, s) in enumerate(zip(laterals, self.smooth, self.level_strides)):
            p = smooth(p)  # (B, W, h, w)
            h, w = p.shape[-2:]
            c = self.cls_out(self.cls_tower(p))  # (B, K, h, w)
            r = self.reg_tower(p)
            d = torch.exp((self.scales[level] * self.reg_out(r)).clamp(max=8.0)) * s  # (B, 4, h, w), pixels
            cls.append(c.flatten(2).transpose(1, 2))  # (B, h*w, K)
            dist.append(d.flatten(2).transpose(1, 2))  # (B, h*w, 4)
            ctr.append(self.ctr_out(r).flatten(1))  # (B, h*w)
            ys, xs = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
            points.append(torch.stack([xs, ys], -1).reshape(-1, 2).to(x.dtype) * s + s // 2)  # (h*w, 2)
            strides.append(torch.full((h * w,), float(s), device=x.device, dtype=x.dtype))
        return FCOSOutput(
            torch.cat(cls, 1), torch.cat(dist, 1), torch.cat(ctr, 1), torch.cat(points), torch.cat(strides)
        )

    @torch.no_grad()
    def detect(
        self, x: Tensor, *, score_thresh: float = 0.05, nms_iou: float = 0.6, max_dets: int = 100
    ) -> list[Detections]:
        """Boxes per image: score = sqrt(sigmoid(cls) * sigmoid(centerness)), top 1000, class-wise NMS."""
        out = self(x)
        H, W = x.shape[-2:]
        results = []
        for b in range(x.shape[0]):
            prob = (out.cls_logits[b].sigmoid() * out.centerness[b].sigmoid()[:, None]).sqrt()  # (N, K)
            flat = prob.flatten()
            top = flat.topk(min(1000, flat.numel())).indices
            top = top[flat[top] > score_thresh]
            pts, lab = top // self.num_classes, top % self.num_classes
            p, d = out.points[pts], out.box_dist[b, pts]
            boxes = torch.cat([p - d[:, :2], p + d[:, 2:]], 1)  # (K, 4)
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, W)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, H)
            keep = nms(boxes, flat[top], lab, nms_iou)[:max_dets]
            results.append(Detections(boxes[keep], flat[top][keep], lab[keep]))
        return results


# ---- targets and loss -------------------------------------------------------------------------------------
def _level_ranges(strides: Tensor) -> tuple[Tensor, Tensor]:
    """Regression range per point: level l takes max(l,t,r,b) in (2 s_l, 4 s_l] (first: from 0, last: to inf)."""
    levels = torch.unique(strides)
    lo = torch.where(strides == levels[0], torch.zeros_like(strides), 2 * strides)
    hi = torch.where(strides == levels[-1], torch.full_like(strides, float("inf")), 4 * strides)
    return lo, hi


def fcos_targets(
    points: Tensor, strides: Tensor, boxes: Tensor, labels: Tensor, num_classes: int, radius: float = 1.5
) -> tuple[Tensor, Tensor]:
    """Per point: label (N,) with ``num_classes`` = background, and l/t/r/b targets (N, 4)."""
    N = len(points)
    if len(boxes) == 0:
        return torch.full((N,), num_classes, dtype=torch.long), torch.zeros(N, 4)
    x, y = points[:, 0:1], points[:, 1:2]  # (N, 1)
    ltrb = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], -1)  # (N, M, 4)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # (M, 2)
    r = strides[:, None] * radius  # (N, 1)
    near = ((x - centre[:, 0]).abs() < r) & ((y - centre[:, 1]).abs() < r)  # center sampling (N, M)
    inside = ltrb.min(-1).values > 0
    lo, hi = _level_ranges(strides)
    reach = ltrb.max(-1).values
    ok = inside & near & (reach > lo[:, None]) & (reach <= hi[:, None])
    area = (boxes[:, 2:] - boxes[:, :2]).prod(-1).expand(N, -1)  # (N, M)
    area = torch.where(ok, area, torch.full_like(area, float("inf")))
    best_area, best = area.min(1)
    label = torch.where(torch.isinf(best_area), torch.full_like(best, num_classes), labels[best])
    return label, ltrb[torch.arange(N), best]


def _giou_loss(pred: Tensor, target: Tensor) -> Tensor:
    """GIoU loss of l/t/r/b distances from the same points: (P, 4), (P, 4) -> (P,)."""
    pa = (pred[:, 0] + pred[:, 2]) * (pred[:, 1] + pred[:, 3])
    ta = (target[:, 0] + target[:, 2]) * (target[:, 1] + target[:, 3])
    wi = torch.minimum(pred[:, 0], target[:, 0]) + torch.minimum(pred[:, 2], target[:, 2])
    hi = torch.minimum(pred[:, 1], target[:, 1]) + torch.minimum(pred[:, 3], target[:, 3])
    inter = wi * hi
    union = pa + ta - inter
    wc = torch.maximum(pred[:, 0], target[:, 0]) + torch.maximum(pred[:, 2], target[:, 2])
    hc = torch.maximum(pred[:, 1], target[:, 1]) + torch.maximum(pred[:, 3], target[:, 3])
    enclose = wc * hc + 1e-7
    return 1 - inter / union.clamp(min=1e-7) + (enclose - union) / enclose


def fcos_loss(out: FCOSOutput, targets: Sequence[tuple[Tensor, Tensor]], num_classes: int) -> tuple[Tensor, dict]:
    """Focal (alpha 0.25, gamma 2) + centerness-weighted GIoU + centerness BCE, normalised by positives."""
    labels, regs = zip(*(fcos_targets(out.points, out.strides, b, lab, num_classes) for b, lab in targets))
    labels, regs = torch.stack(labels), torch.stack(regs)  # (B, N), (B, N, 4)
    onehot = F.one_hot(labels, num_classes + 1)[..., :num_classes].to(out.cls_logits.dtype)  # (B, N, K)
    pos = labels < num_classes
    n_pos = max(float(pos.sum()), 1.0)
    cls = _sigmoid_focal(out.cls_logits, onehot).sum() / n_pos
    if pos.any():
        t = regs[pos]
        lr, tb = t[:, [0, 2]], t[:, [1, 3]]
        ctr_t = ((lr.min(1).values / lr.max(1).values) * (tb.min(1).values / tb.max(1).values)).sqrt()
        reg = (_giou_loss(out.box_dist[pos], t) * ctr_t).sum() / ctr_t.sum().clamp(min=1e-6)
        ctr = F.binary_cross_entropy_with_logits(out.centerness[pos], ctr_t, reduction="sum") / n_pos
    else:
        reg = ctr = out.box_dist.sum() * 0.0
    loss = cls + reg + ctr
    return loss, {"cls": cls.detach(), "giou": reg.detach(), "ctr": ctr.detach()}


def _sigmoid_focal(logits: Tensor, target: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    return (alpha * target + (1 - alpha) * (1 - target)) * ce * (1 - p_t) ** gamma


# ---- data --------------------------------------------------------------------------------------------
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def load_bccd(split: str) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
    """BCCD (data/detection/bccd.npz): images (N, 3, 120, 160) normalised, and per image (boxes, labels)."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    d = load_npz("detection/bccd.npz")
    rows = np.flatnonzero(d["split"] == split)
    images = torch.from_numpy(d["images"][rows]).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, H, W)
    images = (images - _MEAN) / _STD
    targets = []
    for r in rows:
        sel = d["box_image_index"] == r
        targets.append((torch.from_numpy(d["boxes"][sel]).float(), torch.from_numpy(d["box_label"][sel]).long()))
    return images, targets


class BCCDDataset(torch.utils.data.Dataset):
    """(image, boxes, labels) with random horizontal/vertical flips when ``augment`` (microscope images)."""

    def __init__(self, images: Tensor, targets: list[tuple[Tensor, Tensor]], augment: bool = False) -> None:
        self.images, self.targets, self.augment = images, targets, augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img, (boxes, labels) = self.images[i], self.targets[i]
        if self.augment:
            H, W = img.shape[-2:]
            if torch.rand(()) < 0.5:
                img, boxes = img.flip(-1), torch.stack([W - boxes[:, 2], boxes[:, 1], W - boxes[:, 0], boxes[:, 3]], 1)
            if torch.rand(()) < 0.5:
                img, boxes = img.flip(-2), torch.stack([boxes[:, 0], H - boxes[:, 3], boxes[:, 2], H - boxes[:, 1]], 1)
        return img, boxes, labels


def collate_detection(items):
    """Stack images; keep per-image (boxes, labels) as a list."""
    images = torch.stack([it[0] for it in items])
    return images, [(it[1], it[2]) for it in items]
