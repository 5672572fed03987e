"""The procedural ReID generator: seeded, split structure of spec §12, pool composition."""

import pytest
import torch

from damokit.data.reid_synth import synthetic_reid, synthetic_reid_pool


def test_splits_structure_and_determinism():
    a = synthetic_reid(n_train_ids=5, n_test_ids=4, seed=3)
    b = synthetic_reid(n_train_ids=5, n_test_ids=4, seed=3)
    assert torch.equal(a["train"].images, b["train"].images)
    assert a["train"].images.shape[1:] == (3, 64, 32) and a["train"].images.dtype == torch.uint8
    assert torch.unique(a["train"].pids).tolist() == list(range(5))
    q, g = a["query"], a["gallery"]
    keys = (q.pids * 6 + q.camids).tolist()
    assert len(keys) == len(set(keys))  # one query per (identity, camera)
    per_id_cams = {p: set(q.camids[q.pids == p].tolist()) for p in range(4)}
    assert all(2 <= len(c) <= 4 for c in per_id_cams.values())
    assert len(g.pids) >= 3 * len(q.pids)  # 4-8 images per camera: the rest go to the gallery
    assert not torch.equal(synthetic_reid("B", n_train_ids=5, n_test_ids=4, seed=3)["train"].images[:1],
                           a["train"].images[:1])  # fmt: skip


def test_pool_half_relevant_and_errors():
    images, relevant = synthetic_reid_pool(30, n_ids=10, seed=1)
    assert images.shape == (30, 3, 64, 32) and int(relevant.sum()) == 15
    with pytest.raises(ValueError, match="domain must be 'A' or 'B'"):
        synthetic_reid("C")
    with pytest.raises(ValueError, match="need at least one identity"):
        synthetic_reid(n_train_ids=0)
    with pytest.raises(ValueError, match="n must be >= 2"):
        synthetic_reid_pool(1)
