"""R7: CFS scores and selection."""

import json

import pytest
import torch

from damokit.reid.model import transreid_ssl_tiny
from damokit.selection.cfs import cfs_scores, select_by_cfs, write_cfs_list


def test_identical_models_score_one():
    model = transreid_ssl_tiny()
    images = torch.randint(0, 256, (5, 3, 64, 32), dtype=torch.uint8)
    scores = cfs_scores(model.base, model.base, images, batch_size=2)
    assert scores.dtype == torch.float64 and scores.shape == (5,)
    torch.testing.assert_close(scores, torch.ones(5, dtype=torch.float64))
    other = transreid_ssl_tiny()
    assert (cfs_scores(model.base, other.base, images) < 0.999).all()


def test_select_counts_direction_and_determinism():
    scores = torch.tensor([0.3, 0.9, 0.1, 0.9, 0.5, 0.7])
    high = select_by_cfs(scores, keep_ratio=0.5)
    assert high.tolist() == [1, 3, 5]  # top scores; the tie 0.9/0.9 keeps index order
    assert select_by_cfs(scores, keep_num=2, keep="low").tolist() == [2, 0]
    assert torch.equal(select_by_cfs(scores, keep_ratio=0.5), high)
    assert len(select_by_cfs(scores, keep_ratio=1.0)) == 6


def test_errors_and_writer(tmp_path):
    scores = torch.tensor([0.2, 0.8])
    with pytest.raises(ValueError, match="keep must be 'high' or 'low'"):
        select_by_cfs(scores, keep="top")
    with pytest.raises(ValueError, match=r"keep_ratio must be in \(0, 1\]"):
        select_by_cfs(scores, keep_ratio=1.5)
    with pytest.raises(ValueError, match=r"keep_num must be in \[1, 2\]"):
        select_by_cfs(scores, keep_num=3)
    with pytest.raises(ValueError, match="the pool is empty"):
        cfs_scores(torch.nn.Identity(), torch.nn.Identity(), torch.zeros(0, 3, 4, 4))
    path = write_cfs_list(["a.jpg", "b.jpg"], scores, tmp_path / "cfs.json")
    assert json.loads(path.read_text()) == ["b.jpg", "a.jpg"]
    with pytest.raises(ValueError, match="2 names but 3 scores"):
        write_cfs_list(["a", "b"], torch.zeros(3), tmp_path / "x.json")
