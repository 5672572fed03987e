"""Transfer-evaluation toolkit: feature extraction, linear / kNN / few-shot probes, fine-tuning, summaries."""

import math

import pytest
import torch
from torch import nn

from damokit.engine import TrainConfig
from damokit.engine.probes import (
    LinearHead,
    accuracy,
    extract_features,
    few_shot_probe,
    finetune_accuracy,
    knn_probe,
    linear_probe,
    mean_std,
    paired_differences,
)
from damokit.nn.convnets import ConvNet


def _blobs(n_per: int, seed: int, d: int = 8, classes: int = 3):
    """Well-separated Gaussian blobs: class c centred at 4 * e_c."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(n_per)
    x = torch.randn(len(y), d, generator=g) + 4.0 * torch.eye(d)[y]
    return x, y


def test_extract_features_batched_eval_mode_and_restores_training():
    net = ConvNet(channels=(4, 8))
    net.train()
    x = torch.rand(10, 1, 12, 12)
    feats = extract_features(net, x, batch_size=3)
    assert feats.shape == (10, 8)
    assert net.training  # mode restored
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(feats, net.forward_features(x))  # eval-mode features, order kept


def test_extract_features_dataset_and_custom_layer():
    net = nn.Linear(4, 2)
    ds = torch.utils.data.TensorDataset(torch.randn(7, 4), torch.arange(7))
    feats = extract_features(net, ds, layer=lambda m, x: m(x) * 2, batch_size=4)
    with torch.no_grad():
        torch.testing.assert_close(feats, net(ds.tensors[0]) * 2)


def test_extract_features_errors():
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        extract_features(nn.Linear(2, 2), torch.randn(3, 2), batch_size=0)
    with pytest.raises(ValueError, match="data is empty"):
        extract_features(nn.Linear(2, 2), torch.randn(0, 2))


def test_linear_and_knn_probes_separate_blobs_and_beat_chance():
    xtr, ytr = _blobs(20, 0)
    xte, yte = _blobs(30, 1)
    assert linear_probe(xtr, ytr, xte, yte) > 0.95
    assert knn_probe(xtr, ytr, xte, yte, k=5) > 0.95
    # permuted labels carry no information: chance level (1/3), far below the real probe
    perm = ytr[torch.randperm(len(ytr))]
    assert knn_probe(xtr, perm, xte, yte, k=5) < 0.8


def test_knn_probe_k1_is_nearest_cosine_neighbour():
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    test = torch.tensor([[10.0, 1.0], [0.5, 3.0]])  # scale does not matter after L2 normalisation
    assert knn_probe(train, torch.tensor([0, 1]), test, torch.tensor([0, 1]), k=1) == 1.0


def test_probe_errors():
    x, y = _blobs(5, 0)
    with pytest.raises(ValueError, match="feature rows but"):
        linear_probe(x, y[:-1], x, y)
    with pytest.raises(ValueError, match="C must be > 0"):
        linear_probe(x, y, x, y, C=0.0)
    with pytest.raises(ValueError, match="k must be in"):
        knn_probe(x, y, x, y, k=100)
    with pytest.raises(ValueError, match="features must be 2-D"):
        knn_probe(x[:, None], y, x, y)
    with pytest.raises(ValueError, match="probe must be one of"):
        few_shot_probe(x, y, x, y, shots=1, seeds=[0], probe="svm")


def test_few_shot_probe_seeded_and_uses_k_per_class():
    xtr, ytr = _blobs(20, 0)
    xte, yte = _blobs(10, 1)
    a = few_shot_probe(xtr, ytr, xte, yte, shots=1, seeds=[0, 1], probe="knn", k=1)
    b = few_shot_probe(xtr, ytr, xte, yte, shots=1, seeds=[0, 1], probe="knn", k=1)
    assert a == b and len(a) == 2
    with pytest.raises(ValueError, match="fewer than per_class"):
        few_shot_probe(xtr, ytr, xte, yte, shots=21, seeds=[0])


def test_finetune_accuracy_learns_blobs():
    xtr, ytr = _blobs(40, 0)
    xte, yte = _blobs(20, 1)
    backbone = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
    cfg = TrainConfig(epochs=20, batch_size=24, lr=0.05, optimizer="sgd", progress=False)
    acc = finetune_accuracy(backbone, 16, 3, (xtr, ytr), (xte, yte), config=cfg)
    assert acc > 0.9  # chance is 1/3
    head = LinearHead(backbone, 16, 3)
    assert 0.0 <= accuracy(head, xte, yte) <= 1.0


def test_mean_std_and_paired_differences():
    ms = mean_std([1.0, 2.0, 3.0])
    assert ms.mean == 2.0 and math.isclose(ms.std, 1.0) and ms.n == 3
    assert str(ms) == "2.000 ± 1.000"
    assert mean_std([0.5]).std == 0.0
    assert paired_differences([3.0, 1.0], [1.0, 2.0]) == [2.0, -1.0]
    with pytest.raises(ValueError, match="values is empty"):
        mean_std([])
    with pytest.raises(ValueError, match="equal lengths"):
        paired_differences([1.0], [])
