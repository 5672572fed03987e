"""Image loaders: layouts, value ranges, seeded splits and k-shot subsets."""

import pytest
import torch

from damokit.data.images import (
    load_cifar10_mini,
    load_digits,
    load_mnist_test,
    load_notmnist_test,
    per_class_subset,
    seeded_split,
    to_nchw_float,
)


def test_to_nchw_float_grey_and_hwc():
    grey = torch.arange(24, dtype=torch.uint8).reshape(2, 3, 4)
    out = to_nchw_float(grey.numpy())
    assert out.shape == (2, 1, 3, 4) and out.dtype == torch.float32
    assert out[0, 0, 0, 1].item() == pytest.approx(1 / 255)
    hwc = torch.zeros(2, 5, 6, 3, dtype=torch.uint8)
    hwc[..., 2] = 255
    out = to_nchw_float(hwc)
    assert out.shape == (2, 3, 5, 6) and out[:, 2].eq(1).all() and out[:, :2].eq(0).all()


def test_to_nchw_float_errors():
    with pytest.raises(ValueError, match="must be uint8"):
        to_nchw_float(torch.zeros(2, 3, 3))
    with pytest.raises(ValueError, match=r"shape \(N, H, W\)"):
        to_nchw_float(torch.zeros(3, 3, dtype=torch.uint8))


def test_packs_load_with_documented_shapes():
    mnist = load_mnist_test()
    assert mnist.x.shape == (10000, 1, 28, 28) and mnist.y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    notm = load_notmnist_test()
    assert notm.x.shape == (10000, 1, 28, 28) and notm.classes[0] == "A"
    assert torch.bincount(notm.y).eq(1000).all()  # README: 1,000 per class
    cifar = load_cifar10_mini("test")
    assert cifar.x.shape == (2000, 3, 32, 32) and 0.0 <= cifar.x.min() and cifar.x.max() <= 1.0
    digits = load_digits()
    assert digits.x.shape == (1797, 1, 8, 8) and digits.x.max() == 1.0
    with pytest.raises(ValueError, match="split must be"):
        load_cifar10_mini("val")


def test_seeded_split_disjoint_and_reproducible():
    a, b = seeded_split(10, (3, 4), seed=1)
    assert len(a) == 3 and len(b) == 4 and not set(a.tolist()) & set(b.tolist())
    a2, _ = seeded_split(10, (3, 4), seed=1)
    assert torch.equal(a, a2)
    with pytest.raises(ValueError, match="sum to at most"):
        seeded_split(5, (3, 3), seed=0)


def test_per_class_subset_counts_and_seed():
    labels = torch.tensor([0, 1, 2] * 10)
    idx = per_class_subset(labels, 4, seed=3)
    assert torch.bincount(labels[idx]).tolist() == [4, 4, 4]
    assert torch.equal(idx, per_class_subset(labels, 4, seed=3))
    assert not torch.equal(idx, per_class_subset(labels, 4, seed=4))
    with pytest.raises(ValueError, match="per_class must be >= 1"):
        per_class_subset(labels, 0, seed=0)


def test_random_shift_matches_roll_per_sample():
    from damokit.data.images import random_shift

    x = torch.rand(5, 2, 6, 7)
    g = torch.Generator().manual_seed(0)
    out = random_shift(x, 2, generator=g)
    dy, dx = torch.randint(-2, 3, (2, 5), generator=torch.Generator().manual_seed(0))
    for i in range(5):  # reference: torch.roll of each image by its own shift
        torch.testing.assert_close(out[i], torch.roll(x[i], (int(dy[i]), int(dx[i])), dims=(1, 2)))
    with pytest.raises(ValueError, match="max_shift must be >= 0"):
        random_shift(x, -1)
