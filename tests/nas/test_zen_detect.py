"""ZenDet detection check: COCO-style mAP on hand-computed cases, NMS, FCOS targets, loss, detector shapes."""

import pytest
import torch

from damokit.nas.structure import Block, Structure
from damokit.nas.zendet_detect import (
    BCCDDataset,
    Detections,
    FCOSDetector,
    box_iou,
    coco_map,
    collate_detection,
    fcos_loss,
    fcos_targets,
    load_bccd,
    nms,
)

R = "SuperResK1KXK1"
T = torch.tensor


def _det(boxes, scores, labels):
    return Detections(*(torch.as_tensor(v) for v in (boxes, scores, labels)))


def test_box_iou_hand_values():
    a = T([[0.0, 0.0, 10.0, 10.0]])
    b = T([[5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 10.0]])
    torch.testing.assert_close(box_iou(a, b), T([[50 / 150, 0.0, 1.0]]))


def test_map_hand_cases():
    gt = [(T([[0.0, 0.0, 10.0, 10.0]]), T([0]))]
    # a perfect detection: AP 1 at every threshold
    assert coco_map([_det([[0.0, 0, 10, 10]], [0.9], [0])], gt, 1)["map"] == 1.0
    # no detection: AP 0
    assert coco_map([_det(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long))], gt, 1)["map"] == 0.0
    # a higher-scored false positive, then the true positive: precision 1/2 at recall 1 -> AP 0.5
    out = coco_map([_det([[50.0, 50, 60, 60], [0, 0, 10, 10]], [0.9, 0.8], [0, 0])], gt, 1)
    assert out["map"] == pytest.approx(0.5) and out["map50"] == pytest.approx(0.5)
    # IoU 0.72 (box [0,0,10,7.2]): a hit at thresholds 0.50..0.70 (5 of 10) -> AP@[.5:.95] = 0.5, AP50 = 1
    out = coco_map([_det([[0.0, 0, 10, 7.2]], [0.9], [0])], gt, 1)
    assert out["map"] == pytest.approx(0.5) and out["map50"] == 1.0 and out["map75"] == 0.0
    # one of two objects found (class 1 has no ground truth and is left out): recall 1/2 -> 51/101 points
    gt2 = [(T([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]]), T([0, 0]))]
    out = coco_map([_det([[0.0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8], [0, 1])], gt2, 2)
    assert out["map"] == pytest.approx(51 / 101) and "ap_class1" not in out
    # a duplicate of a matched box is a false positive
    out = coco_map([_det([[0.0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8], [0, 0])], gt, 1)
    assert out["map"] == 1.0  # the duplicate comes after recall 1, so the envelope keeps precision 1


def test_map_errors():
    gt = [(T([[0.0, 0.0, 10.0, 10.0]]), T([0]))]
    with pytest.raises(ValueError, match="got 0 detection lists for 1 ground-truth images"):
        coco_map([], gt, 1)
    with pytest.raises(ValueError, match="no ground-truth boxes"):
        coco_map(
            [_det(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long))], [(torch.zeros(0, 4), T([]))], 1
        )


def test_nms_is_class_wise():
    boxes = T([[0.0, 0, 10, 10], [1, 0, 11, 10], [1, 0, 11, 10], [30, 30, 40, 40]])
    keep = nms(boxes, T([0.9, 0.8, 0.7, 0.6]), T([0, 0, 1, 0]), iou=0.5)
    assert keep.tolist() == [0, 2, 3]


def test_fcos_targets_pick_the_smallest_box_and_level_ranges():
    points = T([[12.0, 12.0], [12.0, 12.0]])
    strides = T([8.0, 16.0])
    boxes = T([[0.0, 0.0, 24.0, 24.0], [8.0, 8.0, 18.0, 18.0]])
    labels, regs = fcos_targets(points, strides, boxes, T([1, 2]), num_classes=3)
    # stride 8 (range 0..16): both boxes reach <= 16; the smaller one (label 2) wins
    assert labels[0] == 2 and regs[0].tolist() == [4.0, 4.0, 6.0, 6.0]
    # stride 16 (range 32..inf, last level): no box reaches beyond 32 -> background
    assert labels[1] == 3


def _tiny_detector():
    s = Structure((Block("ConvKXBNRELU", 3, 8, 2), *[Block(R, c, 2 * c, 2, 3, c // 2, 1) for c in (8, 16, 32, 64)]))
    return FCOSDetector(s, 3, width=16, head_convs=1)


def test_detector_shapes_loss_and_detect():
    model = _tiny_detector()
    x = torch.randn(2, 3, 60, 80)
    out = model(x)
    n = 8 * 10 + 4 * 5 + 2 * 3  # strides 8, 16, 32 on 60x80 (ceil)
    assert out.cls_logits.shape == (2, n, 3) and out.box_dist.shape == (2, n, 4) and out.points.shape == (n, 2)
    targets = [(T([[10.0, 10.0, 30.0, 40.0]]), T([1])), (torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))]
    loss, parts = fcos_loss(out, targets, 3)
    loss.backward()
    assert torch.isfinite(loss) and parts["giou"] > 0
    assert all(p.grad is not None for p in model.parameters())
    dets = model.eval().detect(x, score_thresh=0.0)
    assert len(dets) == 2 and dets[0].boxes.shape[1] == 4 and len(dets[0].boxes) <= 100


def test_bccd_loader_and_dataset():
    images, targets = load_bccd("test")
    assert images.shape == (72, 3, 120, 160) and len(targets) == 72
    assert sum(len(t[0]) for t in targets) == 945  # data/detection/README.md: test split has 945 boxes
    ds = BCCDDataset(images[:4], targets[:4], augment=True)
    imgs, tg = collate_detection([ds[i] for i in range(4)])
    assert imgs.shape == (4, 3, 120, 160)
    for (b, _), (b0, _) in zip(tg, targets[:4]):  # flips keep box sizes
        torch.testing.assert_close((b[:, 2:] - b[:, :2]), (b0[:, 2:] - b0[:, :2]))
    with pytest.raises(ValueError, match="split must be 'train', 'val' or 'test'"):
        load_bccd("trainval")
