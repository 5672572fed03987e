"""Swin building blocks and the shared Mlp/DropPath, against Swin's official conventions."""

import pytest
import torch

from damokit.nn.layers import DropPath, Mlp
from damokit.nn.swin import (
    PatchEmbed,
    PatchMerging,
    SwinBlock,
    WindowAttention,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)


def test_window_partition_roundtrip_and_order():
    x = torch.arange(2 * 4 * 6 * 1.0).view(2, 4, 6, 1)
    win = window_partition(x, 2)
    assert win.shape == (12, 2, 2, 1)
    # window 1 of image 0 is rows 0-1, columns 2-3 (row-major order of windows, as in Swin)
    assert win[1, :, :, 0].tolist() == [[2.0, 3.0], [8.0, 9.0]]
    assert torch.equal(window_reverse(win, 2, 4, 6), x)


def test_relative_position_index_golden():
    # hand derivation for w=2, tokens (0,0),(0,1),(1,0),(1,1); idx = (Δy+1)·3 + (Δx+1), Δ = query − key
    assert relative_position_index(2).tolist() == [[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]]


def official_shift_mask(H, W, w, s):
    """Transcription of Swin's attn_mask construction (official SwinTransformerBlock.__init__)."""
    img_mask = torch.zeros((1, H, W, 1))
    cnt = 0
    for hs in (slice(0, -w), slice(-w, -s), slice(-s, None)):
        for ws in (slice(0, -w), slice(-w, -s), slice(-s, None)):
            img_mask[:, hs, ws, :] = cnt
            cnt += 1
    mw = window_partition(img_mask, w).view(-1, w * w)
    mask = mw.unsqueeze(1) - mw.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


@pytest.mark.parametrize("H,W,w,s", [(8, 8, 4, 2), (12, 8, 4, 2), (14, 7, 7, 3)])
def test_shift_mask_matches_official(H, W, w, s):
    torch.testing.assert_close(shifted_window_mask(H, W, w, s), official_shift_mask(H, W, w, s))


def test_window_attention_matches_naive():
    torch.manual_seed(0)
    attn = WindowAttention(8, 2, 2).double()
    x = torch.randn(3, 4, 8, dtype=torch.float64)
    mask = torch.zeros(3, 4, 4, dtype=torch.float64)
    mask[1, 0, 3] = -100.0
    out = attn(x, mask)
    q, k, v = attn.qkv(x).view(3, 4, 3, 2, 4).unbind(2)  # (B, N, G, d) each
    table = attn.relative_position_bias_table
    expected = torch.zeros(3, 4, 2, 4, dtype=torch.float64)
    coords = [(0, 0), (0, 1), (1, 0), (1, 1)]
    for b in range(3):
        for h in range(2):
            for i in range(4):
                logits = torch.stack(
                    [
                        q[b, i, h] @ k[b, j, h] / 2.0  # scale d^-1/2 = 1/2
                        + table[(coords[i][0] - coords[j][0] + 1) * 3 + coords[i][1] - coords[j][1] + 1, h]
                        + mask[b, i, j]
                        for j in range(4)
                    ]
                )
                expected[b, i, h] = logits.softmax(0) @ v[b, :, h]
    torch.testing.assert_close(out, attn.proj(expected.reshape(3, 4, 8)))


def test_swin_block_shifted_windows_and_padding():
    blk = SwinBlock(8, 2, window_size=4, shift_size=2).eval()
    x = torch.randn(1, 8, 8, 8)
    y = x.clone()
    y[:, 0, 0] += 1.0  # after the roll by −2, pixel (0, 0) shares a shifted window only with rows/cols {0,1}
    diff = (blk(x) - blk(y)).abs().amax(-1)[0]
    assert diff[2:].max() == 0 and diff[:, 2:].max() == 0 and diff[:2, :2].min() > 0
    odd = torch.randn(2, 6, 9, 8)  # padded to 8×12 inside, cropped back
    assert blk(odd).shape == odd.shape and torch.isfinite(blk(odd)).all()
    # Swin's rule: a map not larger than the window gives global attention without a shift
    small = SwinBlock(8, 2, window_size=7, shift_size=3, input_resolution=(7, 7))
    assert (small.window_size, small.shift_size) == (7, 0)


def test_unshifted_block_is_per_window():
    blk = SwinBlock(8, 2, window_size=4).eval()
    x = torch.randn(1, 8, 8, 8)
    y = x.clone()
    y[:, 4:, 4:] += 1.0  # change only the bottom-right window
    diff = (blk(x) - blk(y)).abs().amax(-1)[0]
    assert diff[:4].max() == 0 and diff[:, :4].max() == 0 and diff[4:, 4:].min() > 0


def test_patch_embed_and_merging():
    pe = PatchEmbed(3, 8, patch_size=4)
    assert pe(torch.randn(2, 3, 16, 18)).shape == (2, 4, 5, 8)  # 18 padded to 20
    stem = PatchEmbed(1, 8, patch_size=1, kernel_size=3)
    assert stem(torch.randn(2, 1, 8, 8)).shape == (2, 8, 8, 8)
    pm = PatchMerging(2)
    with torch.no_grad():
        pm.norm.weight.fill_(1.0)
        pm.reduction.weight.copy_(torch.eye(4, 8))  # keep channel 0 of each of the 4 neighbours
    x = torch.zeros(1, 2, 2, 2)
    x[0, :, :, 0] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    pm.norm = torch.nn.Identity()
    out = pm(x)[0, 0, 0]
    # Swin's concat order (0,0), (1,0), (0,1), (1,1)
    assert out.tolist() == [1.0, 0.0, 3.0, 0.0]
    assert pm(torch.randn(1, 5, 3, 2)).shape == (1, 3, 2, 4)


def test_mlp_and_droppath():
    mlp = Mlp(4, 16)
    x = torch.randn(3, 4)
    torch.testing.assert_close(mlp(x), mlp.fc2(torch.nn.functional.gelu(mlp.fc1(x))))
    dp = DropPath(0.5)
    ones = torch.ones(2000, 3)
    out = dp(ones)
    kept = out[:, 0] > 0
    assert set(out.unique().tolist()) <= {0.0, 2.0} and (out == out[:, :1]).all()  # whole samples
    assert 0.4 < kept.float().mean() < 0.6
    assert torch.equal(dp.eval()(ones), ones)


def test_swin_errors():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        WindowAttention(10, 4, 3)
    with pytest.raises(ValueError, match=r"shift_size=4 must be in \[0, window_size=4\)"):
        SwinBlock(8, 2, window_size=4, shift_size=4)
    with pytest.raises(ValueError, match="kernel_size=4 must be >= patch_size=1"):
        PatchEmbed(3, 8, patch_size=1, kernel_size=4)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        DropPath(1.0)
