"""Tests of damokit.nn.vit: official names/shapes, attention path equivalence, pos-embed resizing, loading."""

import argparse
import math

import pytest
import torch
import torch.nn.functional as F

from damokit.engine import CheckpointError
from damokit.nn.vit import (
    VisionTransformer,
    infer_grid,
    load_vit_checkpoint,
    resize_pos_embed,
    unwrap_checkpoint,
    vit_small_patch8,
    vit_small_patch16,
    vit_tiny,
)


def _official_vit_s16_state(grid=(16, 8), depth=12, d=384) -> dict[str, torch.Tensor]:
    """A state dict with exactly the names and shapes of DINO/TransReID ViT-S/16 (spec §9)."""
    sd = {
        "cls_token": torch.randn(1, 1, d),
        "pos_embed": torch.randn(1, 1 + grid[0] * grid[1], d),
        "patch_embed.proj.weight": torch.randn(d, 3, 16, 16),
        "patch_embed.proj.bias": torch.randn(d),
        "norm.weight": torch.randn(d),
        "norm.bias": torch.randn(d),
    }
    for i in range(depth):
        p = f"blocks.{i}."
        sd.update({
            p + "norm1.weight": torch.randn(d), p + "norm1.bias": torch.randn(d),
            p + "attn.qkv.weight": torch.randn(3 * d, d), p + "attn.qkv.bias": torch.randn(3 * d),
            p + "attn.proj.weight": torch.randn(d, d), p + "attn.proj.bias": torch.randn(d),
            p + "norm2.weight": torch.randn(d), p + "norm2.bias": torch.randn(d),
            p + "mlp.fc1.weight": torch.randn(4 * d, d), p + "mlp.fc1.bias": torch.randn(4 * d),
            p + "mlp.fc2.weight": torch.randn(d, 4 * d), p + "mlp.fc2.bias": torch.randn(d),
        })  # fmt: skip
    return sd


def test_official_names_and_shapes_match_exactly():
    model = vit_small_patch16(img_size=(256, 128))
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ref = {k: tuple(v.shape) for k, v in _official_vit_s16_state().items()}
    assert own == ref


def test_forward_shapes_and_features():
    model = vit_tiny().eval()
    x = torch.randn(3, 3, 32, 32)
    assert model(x).shape == (3, 48)
    tokens = model.forward_features(x)
    assert tokens.shape == (3, 1 + 16, 48)
    torch.testing.assert_close(model(x), tokens[:, 0])


def test_last_attention_matches_fast_path_and_is_in_graph():
    model = vit_tiny().eval()
    x = torch.randn(2, 3, 32, 32)
    out = model.forward_with_last_attention(x)
    torch.testing.assert_close(out.tokens, model.forward_features(x), atol=1e-5, rtol=1e-5)
    assert out.attention.shape == (2, 3, 17, 17)
    torch.testing.assert_close(out.attention.sum(-1), torch.ones(2, 3, 17))
    (grad,) = torch.autograd.grad(out.tokens[:, 0].sum(), out.attention)
    assert grad.abs().sum() > 0  # the CLS output depends on the returned attention tensor


def test_other_input_size_interpolates_pos_embed():
    model = vit_tiny().eval()
    assert model.forward_features(torch.randn(1, 3, 48, 24)).shape == (1, 1 + 6 * 3, 48)


def test_drop_path_linear_schedule_and_eval_identity():
    model = vit_tiny(drop_path_rate=0.2, depth=3)
    assert [b.drop_path.p for b in model.blocks] == pytest.approx([0.0, 0.1, 0.2])
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), model(x))


def test_infer_grid_and_errors():
    assert infer_grid(128, hw_ratio=2) == (16, 8)
    assert infer_grid(196) == (14, 14)
    with pytest.raises(ValueError, match="cannot read 130 position tokens"):
        infer_grid(130, hw_ratio=2)


def test_resize_pos_embed_keeps_cls_and_is_bilinear():
    pos = torch.randn(1, 1 + 16 * 8, 8)
    out = resize_pos_embed(pos, (24, 8), mode="bilinear", hw_ratio=2)
    assert out.shape == (1, 1 + 24 * 8, 8)
    torch.testing.assert_close(out[:, 0], pos[:, 0])
    grid = pos[:, 1:].reshape(1, 16, 8, 8).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(24, 8), mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
    torch.testing.assert_close(out[:, 1:], ref.reshape(1, 24 * 8, 8))


def test_resize_pos_embed_dino_offset_gives_exact_grid():
    # DINO: scale_factor = (w0 + 0.1) / sqrt(N); the size still ends at the requested grid
    pos = torch.randn(1, 1 + 28 * 28, 4)
    assert resize_pos_embed(pos, (40, 40), scale_offset=0.1).shape == (1, 1 + 1600, 4)


def test_input_errors():
    model = vit_tiny()
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 3, H, W\)"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match="must be a multiple of the patch size 8"):
        model(torch.randn(2, 3, 30, 32))
    with pytest.raises(ValueError, match="img_size=.* must be a multiple"):
        VisionTransformer(img_size=30, patch_size=8, embed_dim=48, depth=1, num_heads=3)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        VisionTransformer(img_size=32, patch_size=8, embed_dim=50, depth=1, num_heads=3)


def test_strict_load_of_flat_and_dino_container(tmp_path):
    sd = _official_vit_s16_state(depth=2)  # 2 blocks keep the test fast; the full layout is checked above
    model = vit_small_patch16(img_size=(256, 128), depth=2)
    report = load_vit_checkpoint(sd, model)
    assert len(report.loaded) == len(sd) and not report.resized
    torch.testing.assert_close(model.blocks[1].mlp.fc1.weight, sd["blocks.1.mlp.fc1.weight"])

    teacher = {f"module.backbone.{k}": v for k, v in sd.items()}
    teacher.update({"module.head.mlp.0.weight": torch.randn(4, 4), "module.head.last_layer.weight_g": torch.ones(4, 1)})
    container = {"student": {"module.backbone.cls_token": torch.zeros(1, 1, 384)}, "teacher": teacher,
                 "epoch": 100, "args": argparse.Namespace(arch="vit_small")}  # fmt: skip
    path = tmp_path / "checkpoint.pth"
    torch.save(container, path)
    model2 = vit_small_patch16(img_size=(256, 128), depth=2)
    report = load_vit_checkpoint(path, model2)
    assert sorted(report.skipped) == ["module.head.last_layer.weight_g", "module.head.mlp.0.weight"]
    torch.testing.assert_close(model2.cls_token, sd["cls_token"])  # teacher, not student


def test_supervised_container_and_pos_resize():
    sd = _official_vit_s16_state(depth=2)
    full = {f"base.{k}": v for k, v in sd.items()}
    full.update({"base.fc.weight": torch.randn(1000, 384), "bottleneck.weight": torch.ones(384),
                 "classifier.weight": torch.randn(10, 384)})  # fmt: skip
    model = vit_small_patch16(img_size=(384, 128), depth=2)
    with pytest.raises(ValueError, match="hw_ratio=3.0"):
        load_vit_checkpoint({"state_dict": full}, model)  # the stored 16 x 8 grid is not 3:1
    report = load_vit_checkpoint({"state_dict": full}, model, hw_ratio=2)  # PRETRAIN_HW_RATIO: 2
    assert report.resized == ["pos_embed"]
    assert set(report.skipped) == {"base.fc.weight", "bottleneck.weight", "classifier.weight"}
    torch.testing.assert_close(model.pos_embed[:, 0], sd["pos_embed"][:, 0])


def test_wrong_architecture_raises():
    sd = _official_vit_s16_state(depth=2)
    with pytest.raises(CheckpointError, match="mis-shaped: patch_embed.proj.weight"):
        load_vit_checkpoint(sd, vit_small_patch8(img_size=(256, 128), depth=2))
    with pytest.raises(CheckpointError, match="embed_dim is 48"):
        load_vit_checkpoint(sd, vit_tiny())
    del sd["norm.bias"]
    with pytest.raises(CheckpointError, match="missing: norm.bias"):
        load_vit_checkpoint(sd, vit_small_patch16(img_size=(256, 128), depth=2))
    with pytest.raises(CheckpointError, match="expected a state dict"):
        unwrap_checkpoint([1, 2])


def test_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_vit_checkpoint(tmp_path / "nope.pth", vit_tiny())


def test_dino_interpolation_is_close_to_size_based():
    pos = torch.randn(1, 1 + 14 * 14, 4)
    a = resize_pos_embed(pos, (20, 20))
    b = resize_pos_embed(pos, (20, 20), scale_offset=0.1)
    assert a.shape == b.shape and (a - b).abs().max() < 1.0 and not math.isnan(float(a.sum()))
