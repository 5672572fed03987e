"""R1 (ICS shapes and IBN split), R2 (official state-dict layout), BNNeck head of damokit.reid.model."""

import pytest
import torch

from damokit.engine import CheckpointError
from damokit.reid import IBN, ICSStem, load_official
from damokit.reid.model import transreid_ssl_tiny, transreid_ssl_vit_small, transreid_ssl_vit_small_ics


def _ics_official_state(d=384, depth=12) -> dict[str, torch.Tensor]:
    """Spec §9 names/shapes of an ICS ViT-S/16 backbone."""
    sd = {
        "cls_token": torch.randn(1, 1, d),
        "pos_embed": torch.randn(1, 129, d),
        "patch_embed.proj.weight": torch.randn(d, 64, 8, 8),
        "patch_embed.proj.bias": torch.randn(d),
        "patch_embed.conv.0.weight": torch.randn(64, 3, 7, 7),
        "patch_embed.conv.3.weight": torch.randn(64, 64, 3, 3),
        "patch_embed.conv.6.weight": torch.randn(64, 64, 3, 3),
        "norm.weight": torch.randn(d),
        "norm.bias": torch.randn(d),
    }
    for i in (1, 4):
        p = f"patch_embed.conv.{i}."
        sd.update(
            {
                p + "IN.weight": torch.randn(32),
                p + "IN.bias": torch.randn(32),
                p + "BN.weight": torch.randn(32),
                p + "BN.bias": torch.randn(32),
                p + "BN.running_mean": torch.randn(32),
                p + "BN.running_var": torch.rand(32),
                p + "BN.num_batches_tracked": torch.tensor(5),
            }
        )
    p = "patch_embed.conv.7."
    sd.update(
        {
            p + "weight": torch.randn(64),
            p + "bias": torch.randn(64),
            p + "running_mean": torch.randn(64),
            p + "running_var": torch.rand(64),
            p + "num_batches_tracked": torch.tensor(5),
        }
    )
    for i in range(depth):
        p = f"blocks.{i}."
        for name, shape in (
            ("norm1.weight", (d,)),
            ("norm1.bias", (d,)),
            ("attn.qkv.weight", (3 * d, d)),
            ("attn.qkv.bias", (3 * d,)),
            ("attn.proj.weight", (d, d)),
            ("attn.proj.bias", (d,)),
            ("norm2.weight", (d,)),
            ("norm2.bias", (d,)),
            ("mlp.fc1.weight", (4 * d, d)),
            ("mlp.fc1.bias", (4 * d,)),
            ("mlp.fc2.weight", (d, 4 * d)),
            ("mlp.fc2.bias", (d,)),
        ):
            sd[p + name] = torch.randn(shape)
    return sd


@pytest.mark.parametrize("hw", [(256, 128), (384, 128)])
def test_ics_stem_shapes(hw):
    stem = ICSStem(embed_dim=32)
    x = torch.randn(2, 3, *hw)
    assert stem.conv(x).shape == (2, 64, hw[0] // 2, hw[1] // 2)
    assert stem(x).shape == (2, 32, hw[0] // 16, hw[1] // 16)


def test_ibn_in_part_per_sample_and_bn_part_per_batch():
    stem = ICSStem(embed_dim=8).train()
    x = torch.randn(4, 3, 32, 16) * 3 + 1
    y = stem.conv[1](stem.conv[0](x))  # after conv.1 (IBN)
    a, b = y[:, :32], y[:, 32:]
    torch.testing.assert_close(a.mean((2, 3)), torch.zeros(4, 32), atol=1e-4, rtol=0)  # IN: per sample, channel
    torch.testing.assert_close(a.var((2, 3), unbiased=False), torch.ones(4, 32), atol=1e-2, rtol=0)
    torch.testing.assert_close(b.mean((0, 2, 3)), torch.zeros(32), atol=1e-4, rtol=0)  # BN: over the batch
    assert b.mean((2, 3)).abs().max() > 1e-2  # but not per sample


def test_ibn_odd_split_and_error():
    ibn = IBN(7)
    assert ibn.IN.num_features == 3 and ibn.BN.num_features == 4
    with pytest.raises(ValueError, match="IBN needs 0 < int"):
        IBN(1)
    with pytest.raises(ValueError, match="multiple of stem_stride"):
        ICSStem(patch=15)


def test_official_state_dicts_load_strictly():
    ics = _ics_official_state()
    model = transreid_ssl_vit_small_ics()  # full depth: every official key, strictly
    report = load_official(ics, model)
    assert len(report.loaded) == len(ics) and not report.resized
    assert set(model.base.state_dict()) == set(ics)
    vanilla = {k: v for k, v in ics.items() if not k.startswith("patch_embed")}
    vanilla.update({"patch_embed.proj.weight": torch.randn(384, 3, 16, 16), "patch_embed.proj.bias": torch.randn(384)})
    load_official({"model": {f"module.{k}": v for k, v in vanilla.items()}}, transreid_ssl_vit_small())
    with pytest.raises(CheckpointError, match="mis-shaped: patch_embed.proj.weight"):
        load_official(vanilla, model)  # a checkpoint of the other architecture


def test_dino_container_and_384_resize():
    ics = _ics_official_state(depth=2)
    ckpt = {
        "teacher": {f"backbone.{k}": v for k, v in ics.items()} | {"head.last_layer.weight_v": torch.ones(2, 2)},
        "student": {},
        "epoch": 3,
    }
    model = transreid_ssl_vit_small_ics(img_size=(384, 128), depth=2)
    report = load_official(ckpt, model)
    assert report.resized == ["pos_embed"] and report.skipped == ["head.last_layer.weight_v"]
    torch.testing.assert_close(model.base.pos_embed[:, 0], ics["pos_embed"][:, 0])


def test_bnneck_head():
    model = transreid_ssl_tiny(num_classes=7)
    assert not model.bottleneck.bias.requires_grad
    assert model.classifier.bias is None
    x = torch.rand(4, 3, 64, 32)
    feat, logits = model(x)
    assert feat.shape == (4, 96) and logits.shape == (4, 7)
    model.eval()
    f = model.features(x)
    torch.testing.assert_close(f, torch.nn.functional.normalize(model.base(x), dim=1))  # pre-BN, L2-normalised
    torch.testing.assert_close(f.norm(dim=1), torch.ones(4))
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        transreid_ssl_tiny(num_classes=0)
    with pytest.raises(ValueError, match="stem must be 'patchify' or 'ics'"):
        transreid_ssl_tiny(stem="conv")
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 3, H, W\)"):
        model(torch.rand(2, 1, 64, 32))
