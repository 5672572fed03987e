"""R4 (losses), R5 (P x K sampler), R6 (LR schedule) and the supervised loop of damokit.reid.train."""

import math

import pytest
import torch
import torch.nn.functional as F

from damokit.reid.model import transreid_ssl_tiny
from damokit.reid.train import (
    PKBatches,
    ReIDRecipe,
    WarmupCosineSGD,
    pk_epoch,
    reid_loss,
    soft_margin_triplet,
    train_augment,
    train_supervised,
    warmup_cosine_factor,
)


def test_soft_margin_triplet_hand_made_batch():
    # 1-D features: identity 0 at {0, 1}, identity 1 at {3, 7}
    feat = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    labels = torch.tensor([0, 0, 1, 1])
    d_ap = torch.tensor([1.0, 1.0, 4.0, 4.0])  # farthest positive
    d_an = torch.tensor([3.0, 2.0, 2.0, 6.0])  # closest negative
    expected = F.softplus(d_ap - d_an).mean()
    torch.testing.assert_close(soft_margin_triplet(feat, labels), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="at least two images of one identity and two identities"):
        soft_margin_triplet(feat, torch.tensor([0, 0, 0, 0]))


def test_id_loss_on_post_bn_and_triplet_on_pre_bn():
    model = transreid_ssl_tiny(num_classes=3, drop_path_rate=0.0)  # deterministic train-mode forward
    x, y = torch.rand(6, 3, 64, 32), torch.tensor([0, 0, 1, 1, 2, 2])
    loss, parts = reid_loss(model, x, y)
    feat = model.base(x)
    logits = model.classifier(model.bottleneck(feat))
    assert parts["id"] == pytest.approx(float(F.cross_entropy(logits, y).detach()), rel=1e-5)
    assert parts["tri"] == pytest.approx(float(soft_margin_triplet(feat, y).detach()), rel=1e-5)
    loss.backward()
    assert model.bottleneck.bias.grad is None  # frozen BNNeck bias


def test_pk_batches_have_p_ids_with_k_images_and_pad_small_ids():
    pids = torch.tensor([0] * 9 + [1] * 2 + [2] * 5 + [3] * 4 + [4] * 8)
    batches = pk_epoch(pids, P=2, K=4, generator=torch.Generator().manual_seed(0))
    assert batches
    for b in batches:
        ids, counts = torch.unique(pids[b], return_counts=True)
        assert len(ids) == 2 and counts.tolist() == [4, 4]
    small = [b for b in batches if 1 in pids[b].tolist()]
    assert small and all(set(b) & {9, 10} for b in small)  # identity 1 padded by resampling its 2 images
    again = pk_epoch(pids, P=2, K=4, generator=torch.Generator().manual_seed(0))
    assert batches == again


def test_pk_dataset_epochs_and_errors():
    pids = torch.arange(6).repeat_interleave(4)
    ds = PKBatches(torch.zeros(24, 3, 4, 4), pids, P=3, K=4, epochs=2, seed=1)
    assert len(ds) == 2 * ds.batches_per_epoch == 4
    x, y = ds[0]
    assert x.shape == (12, 3, 4, 4) and len(torch.unique(y)) == 3
    with pytest.raises(ValueError, match="P=10 identities per batch"):
        PKBatches(torch.zeros(24, 3, 4, 4), pids, P=10, K=4, epochs=1)
    with pytest.raises(ValueError, match="K must be >= 2"):
        PKBatches(torch.zeros(24, 3, 4, 4), pids, P=2, K=1, epochs=1)


def test_lr_schedule_r6():
    # epoch e (1-based) trains with lr(e - 1); values from spec §6 / R6
    expected = {1: 0.01, 20: 0.9505, 21: 0.9331, 120: 0.00217}
    for epoch, value in expected.items():
        assert warmup_cosine_factor(epoch - 1) == pytest.approx(value, abs=5e-5)


def test_optimizer_applies_schedule_per_epoch_with_bias_x2():
    w, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = WarmupCosineSGD([{"params": [w], "lr": 1.0}, {"params": [b], "lr": 2.0}], lr=1.0,
                          steps_per_epoch=3, epochs=120, warmup=20)  # fmt: skip
    seen = []
    for _ in range(7):
        w.grad, b.grad = torch.zeros(2), torch.zeros(2)
        opt.step()
        seen.append((opt.param_groups[0]["lr"], opt.param_groups[1]["lr"]))
    assert [s[0] for s in seen] == pytest.approx([0.01] * 3 + [0.0595] * 3 + [0.109])
    assert all(math.isclose(s[1], 2 * s[0]) for s in seen)


def test_augment_shapes_and_normalisation():
    x = torch.full((4, 3, 16, 8), 255, dtype=torch.uint8)
    out = train_augment(x, flip_p=0.0, pad=0, erase_p=0.0)
    torch.testing.assert_close(out, torch.ones(4, 3, 16, 8))  # (1 - 0.5) / 0.5
    out = train_augment(x, erase_p=1.0)
    assert out.shape == x.shape and (out != 1).any()


@pytest.mark.slow
def test_train_supervised_runs_deterministically_and_checks_input():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (32, 3, 64, 32), dtype=torch.uint8, generator=g)
    labels = torch.arange(8).repeat_interleave(4)
    recipe = ReIDRecipe(epochs=2, warmup_epochs=1, P=4, K=4, base_lr=1e-2)
    losses = []
    for _ in range(2):
        torch.manual_seed(0)
        result = train_supervised(transreid_ssl_tiny(num_classes=8), images, labels, recipe)
        losses.append(result.history[0]["train_loss"])
        assert result.steps == 4
    assert losses[0] == losses[1] and math.isfinite(losses[0])
    with pytest.raises(ValueError, match=r"training images must be \(N, 3, 64, 32\)"):
        train_supervised(transreid_ssl_tiny(num_classes=8), images[:, :, :32], labels, recipe)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        train_supervised(transreid_ssl_tiny(num_classes=4), images, labels, recipe)
