"""Pieces of the finetune_selection miniature: the rotation and the rotated-digits task."""

import torch

from damokit.reproduce.finetune_selection import ANGLES, _digits_task, rotate


def test_rotate_90_matches_rot90_and_0_is_identity():
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(rotate(x, 0.0), x, atol=1e-6, rtol=0)
    # a +90 degree rotation of the sampling grid equals torch.rot90 over (H, W) in one of the two senses
    r = rotate(x, 90.0)
    candidates = [torch.rot90(x, 1, (2, 3)), torch.rot90(x, -1, (2, 3))]
    assert min(float((r - c).abs().max()) for c in candidates) < 1e-5


def test_digits_task_layout():
    task, rot = _digits_task()
    assert task.n_src == 80 and task.src_x.shape[1:] == (1, 16, 16)
    assert len(task.src_y) == 8 * (1797 // 2) and int(task.src_y.max()) == 79
    assert torch.equal(task.src_y % len(ANGLES), rot)  # class = digit * 8 + rotation index
    assert len(task.tgt_y) == 450 and len(task.test_y) == 1797 - 1797 // 2 - 450
    assert torch.bincount(task.tgt_y).min() >= 30  # n = 30 per class can be drawn
