"""ELSA: the op against a loop transcription of the official CUDA kernel, the module against the official
forward, the head layout, the λ/γ branches, ELSA-Swin sizes, and the official-checkpoint key mapper."""

import argparse
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import damokit
from damokit.engine import CheckpointError
from damokit.vision import ELSA, ELSABlock, ELSASwin, convert_official_elsa_swin, elsa_filter, load_official_elsa_swin
from damokit.vision import elsa as elsa_mod

# --------------------------------------------------------------------------------------------------
# oracles


def loop_oracle(v, attn, mul, add, k, d):
    """Seven-deep loop transcription of ``ELSAForward`` (elsa_cuda_kernel.cu), stride 1: out-of-image skipped."""
    N, C, H, W = v.shape
    out = torch.zeros_like(v)
    for n, c, y, x, ky, kx in itertools.product(range(N), range(C), range(H), range(W), range(k), range(k)):
        yy, xx = y + (ky - (k - 1) // 2) * d, x + (kx - (k - 1) // 2) * d
        if 0 <= yy < H and 0 <= xx < W:
            m = mul[n, c, ky, kx] if mul is not None else 1.0
            s = add[n, c, ky, kx] if add is not None else 0.0
            out[n, c, y, x] += (attn[n, ky * k + kx, y, x] * m + s) * v[n, c, yy, xx]
    return out


def official_elsa_forward(module: ELSA, x: torch.Tensor) -> torch.Tensor:
    """Transcription of the official ``ELSA.forward`` + ``elsa_op`` (unfold path), from damo-cv/ELSA
    cls/models/elsa/elsa.py, used as the reference for damokit's module."""
    B, H, W, _ = x.shape
    C, ks, G = module.dim_v, module.kernel_size, module.num_heads
    qkv = module.pre_proj(x.permute(0, 3, 1, 2))
    q, k, v = torch.split(qkv, (module.dim_qk, module.dim_qk, C), dim=1)
    h_attn = module.attn(q * k * module.scale)
    v = v.reshape(B * G, C // G, H, W)
    h_attn = h_attn.reshape(B * G, -1, H, W).softmax(1)
    lam, gamma, gh = module.lam, module.gamma, module.ghost_head
    ghost_mul = ghost_add = None
    if lam != 0 and gamma != 0:
        gh = gh.expand(2, B, C, ks, ks).reshape(2, B * G, C // G, ks, ks)
        ghost_mul, ghost_add = gh[0], gh[1]
    elif lam == 0 and gamma != 0:
        ghost_add = gh.expand(B, C, ks, ks).reshape(B * G, C // G, ks, ks)
    elif lam != 0 and gamma == 0:
        ghost_mul = gh.expand(B, C, ks, ks).reshape(B * G, C // G, ks, ks)
    ghost_mul = ghost_mul**lam if lam != 0 else torch.ones(B * G, C // G, ks, ks, dtype=x.dtype)
    ghost_add = ghost_add * gamma if gamma != 0 else torch.zeros(B * G, C // G, ks, ks, dtype=x.dtype)
    pad = ks // 2 * module.dilation
    cols = F.unfold(v, kernel_size=ks, dilation=module.dilation, padding=pad).reshape(B * G, C // G, ks**2, H * W)
    filters = ghost_mul.reshape(B * G, C // G, ks**2, 1) * h_attn.reshape(B * G, 1, ks**2, H * W)
    filters = filters + ghost_add.reshape(B * G, C // G, ks**2, 1)
    out = (cols * filters).sum(2).reshape(B, C, H, W)
    return module.post_proj(out.permute(0, 2, 3, 1))


def _inputs(N, C, H, W, k, dtype=torch.float64, requires_grad=False):
    g = torch.Generator().manual_seed(N * 1000 + C * 100 + H * 10 + k)
    make = lambda *s: torch.randn(*s, generator=g, dtype=dtype).requires_grad_(requires_grad)  # noqa: E731
    v = make(N, C, H, W)
    attn = torch.randn(N, k * k, H, W, generator=g, dtype=dtype).softmax(1).requires_grad_(requires_grad)
    return v, attn, make(N, C, k, k), make(N, C, k, k)


# --------------------------------------------------------------------------------------------------
# the op


@pytest.mark.parametrize("k,d", [(3, 1), (3, 2), (5, 1), (5, 2), (7, 1), (7, 2)])
@pytest.mark.parametrize("method", ["shift", "unfold"])
def test_op_matches_loop_oracle(k, d, method):
    # 2×2×5×6 maps: with k=7, d=2 every pixel has neighbours outside the map (all borders exercised)
    v, attn, mul, add = _inputs(2, 2, 5, 6, k)
    for m, s in [(mul, add), (None, add), (mul, None), (None, None)]:
        out = elsa_filter(v, attn, m, s, kernel_size=k, dilation=d, method=method)
        torch.testing.assert_close(out, loop_oracle(v, attn, m, s, k, d), rtol=0, atol=1e-12)


def test_formulations_agree_and_broadcast_ghost_matrices():
    v, attn, mul, add = _inputs(3, 4, 9, 7, 5)
    m1, s1 = mul[:1], add[:1]  # (1, C, k, k): shared over the batch
    outs = [elsa_filter(v, attn, m1, s1, dilation=2, method=method) for method in ("shift", "unfold")]
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-13)
    full = elsa_filter(v, attn, m1.expand(3, -1, -1, -1), s1.expand(3, -1, -1, -1), dilation=2)
    torch.testing.assert_close(outs[0], full)


@pytest.mark.parametrize(
    "method,ghost", [("shift", g) for g in ("both", "mul", "add", "none", "broadcast")] + [("unfold", "both")]
)
def test_op_gradcheck(method, ghost):
    # the shift formulation has a hand-written backward: check it in every branch; unfold is plain autograd
    v, attn, mul, add = _inputs(2, 2, 3, 4, 3, requires_grad=True)
    if ghost == "broadcast":
        mul, add = mul[:1].detach().requires_grad_(), add[:1].detach().requires_grad_()
    mul = None if ghost in ("add", "none") else mul
    add = None if ghost in ("mul", "none") else add
    fn = lambda *t: elsa_filter(*t, kernel_size=3, dilation=2, method=method)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (v, attn, mul, add), fast_mode=method == "unfold")


def test_shift_and_unfold_gradients_agree_float32():
    v, attn, mul, add = _inputs(2, 6, 10, 10, 5, dtype=torch.float32, requires_grad=True)
    w = torch.randn(2, 6, 10, 10)  # a random linear functional of the output
    grads = []
    for method in ("shift", "unfold"):
        (elsa_filter(v, attn, mul, add, method=method) * w).sum().backward()
        grads.append([t.grad.clone() for t in (v, attn, mul, add)])
        for t in (v, attn, mul, add):
            t.grad = None
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_border_semantics_no_renormalisation():
    # hand derivation: v ≡ 1 and uniform weights 1/k² give (valid neighbours)/k²: 4/9 at a corner,
    # 6/9 on an edge and 1 inside for k=3 -- the official op does not rescale the weights that fall inside
    k = 3
    v = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    attn = torch.full((1, k * k, 4, 4), 1 / k**2, dtype=torch.float64)
    for method in ("shift", "unfold"):
        out = elsa_filter(v, attn, method=method)[0, 0]
        assert out[0, 0].item() == pytest.approx(4 / 9)
        assert out[0, 1].item() == pytest.approx(6 / 9)
        assert out[1, 1].item() == pytest.approx(1.0)


def test_op_errors():
    v, attn, mul, add = _inputs(2, 3, 5, 5, 3, dtype=torch.float32)
    with pytest.raises(ValueError, match="v must be"):
        elsa_filter(v[0], attn)
    with pytest.raises(ValueError, match="positive odd"):
        elsa_filter(v, attn, kernel_size=4)
    with pytest.raises(ValueError, match="dilation must be >= 1"):
        elsa_filter(v, attn, dilation=0)
    with pytest.raises(ValueError, match="method must be one of"):
        elsa_filter(v, attn, method="cuda")
    with pytest.raises(ValueError, match="attn must be"):
        elsa_filter(v, attn[:, :, :4])
    with pytest.raises(ValueError, match="mul must be"):
        elsa_filter(v, attn, mul[:, :2])
    with pytest.raises(ValueError, match="add must be"):
        elsa_filter(v, attn, None, add[:, :, :2])


# --------------------------------------------------------------------------------------------------
# the module


@pytest.mark.parametrize("lam,gamma,shape", [(1, 1, (2, 1, 12, 3, 3)), (0, 1, (1, 12, 3, 3)), (1, 0, (1, 12, 3, 3))])
def test_ghost_head_branches_match_official_forward(lam, gamma, shape):
    m = ELSA(12, 3, kernel_size=3, lam=lam, gamma=gamma, group_width=4, qkv_bias=True).double()
    assert m.ghost_head.shape == shape
    x = torch.randn(2, 5, 6, 12, dtype=torch.float64)
    ours, official = m(x), official_elsa_forward(m, x)
    torch.testing.assert_close(ours, official, rtol=0, atol=1e-12)
    # gradients too: ours splits off the static part as one depth-wise convolution shared by the batch
    w = torch.randn_like(ours)
    grads = [torch.autograd.grad((out * w).sum(), list(m.parameters())) for out in (ours, official)]
    for g_ours, g_official in zip(*grads):
        torch.testing.assert_close(g_ours, g_official, rtol=0, atol=1e-11)


def test_ghost_head_branches_more():
    x = torch.randn(2, 5, 6, 12, dtype=torch.float64)
    plain = ELSA(12, 3, kernel_size=3, lam=0, gamma=0, group_width=4).double()
    assert plain.ghost_head is None
    torch.testing.assert_close(plain(x), official_elsa_forward(plain, x), rtol=0, atol=1e-12)
    # λ = 2 squares the multiplicative matrix; official ``ghost_mul ** lam``
    sq = ELSA(12, 3, kernel_size=5, lam=2, gamma=1, group_width=4, dilation=2).double()
    torch.testing.assert_close(sq(x), official_elsa_forward(sq, x), rtol=0, atol=1e-12)
    # λ = 0 ignores the multiplicative part: the module equals one whose matrices are all ones
    both = ELSA(12, 3, kernel_size=3, lam=1, gamma=1, group_width=4).double()
    add_only = ELSA(12, 3, kernel_size=3, lam=0, gamma=1, group_width=4).double()
    add_only.load_state_dict({**both.state_dict(), "ghost_head": both.ghost_head.data[1]})
    with torch.no_grad():
        both.ghost_head[0] = 1.0
    torch.testing.assert_close(both(x), add_only(x))


def test_init_of_ghost_matrices():
    # official: multiplicative randn (std 1), additive trunc-normal std 0.02
    m = ELSA(96, 3, kernel_size=7, lam=1, gamma=1)
    assert 0.9 < m.ghost_head[0].std().item() < 1.1
    assert 0.015 < m.ghost_head[1].std().item() < 0.025 and m.ghost_head[1].abs().max() <= 2.0


@pytest.mark.parametrize("dim,gw,expected", [(96, 4, 64), (192, 8, 128), (128, 8, 88), (256, 8, 176), (512, 8, 344)])
def test_dim_qk_rounding(dim, gw, expected):
    # spec §2 examples: (C // 3)·2 rounded up to a multiple of group_width
    assert ELSA(dim, 4, kernel_size=3, group_width=gw).dim_qk == expected


def test_head_layout_contiguous_channels():
    m = ELSA(8, 2, kernel_size=3, lam=1, gamma=1, group_width=4).double()
    with torch.no_grad():  # post_proj = identity, so the op's output channels are visible
        m.post_proj.weight.copy_(torch.eye(8))
        m.post_proj.bias.zero_()
    x = torch.randn(1, 4, 5, 8, dtype=torch.float64)
    base = m(x)
    with torch.no_grad():
        m.ghost_head[1, 0, 5] += 1.0  # the additive matrix of channel 5 only
    changed = (m(x) - base).abs().amax((0, 1, 2)) > 1e-9
    assert changed.tolist() == [c == 5 for c in range(8)]
    with torch.no_grad():
        m.ghost_head[1, 0, 5] -= 1.0
        m.attn[2].bias[9:18] += torch.linspace(0, 3, 9, dtype=torch.float64)  # logits of head 1 (g·k² + j)
    changed = (m(x) - base).abs().amax((0, 1, 2)) > 1e-9
    assert changed.tolist() == [c >= 4 for c in range(8)]  # head 1 owns channels 4..7


def test_module_methods_agree_and_any_size():
    m = ELSA(16, 2, kernel_size=5, group_width=8)
    x = torch.randn(2, 7, 3, 16)  # map smaller than the kernel: still zero-padded, no error
    out = m(x)
    m.method = "unfold"
    torch.testing.assert_close(out, m(x), rtol=1e-5, atol=1e-6)


def test_module_errors():
    with pytest.raises(ValueError, match="kernel_size must be a positive odd"):
        ELSA(12, 3, kernel_size=4)
    with pytest.raises(ValueError, match="stride must be 1"):
        ELSA(12, 3, stride=2)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        ELSA(12, 5)
    with pytest.raises(ValueError, match="groups=3 must divide"):
        ELSA(12, 2, kernel_size=3, group_width=4, groups=3)
    with pytest.raises(ValueError, match="lam must be an integer"):
        ELSA(12, 3, lam=0.5)
    with pytest.raises(ValueError, match="method must be one of"):
        ELSA(12, 3, method="cuda")


def test_block_residual_structure():
    blk = ELSABlock(12, 3, kernel_size=3, group_width=4, mlp_ratio=4)
    assert blk.mlp.fc1.out_features == 48 and blk.attn.scale == 1  # ELSA-Swin: ratio 4, qk_scale 1
    x = torch.randn(2, 4, 4, 12)
    manual = x + blk.attn(blk.norm1(x))
    torch.testing.assert_close(blk(x), manual + blk.mlp(blk.norm2(manual)))


# --------------------------------------------------------------------------------------------------
# ELSA-Swin


@pytest.mark.slow
def test_parameter_counts_match_official():
    # spec §4: a faithful re-implementation counts 29.14M / 52.87M / 92.68M (Swin 28.29M / 49.61M / 87.77M);
    # the official README rounds to 29M / 53M / 93M. Built on the meta device: no memory, no forward.
    expected = {
        "elsa_swin_t": 29_140_978,
        "elsa_swin_s": 52_874_626,
        "elsa_swin_b": 92_682_464,
        "swin_lsa_t": 28_288_354,
        "swin_lsa_s": 49_606_258,
        "swin_lsa_b": 87_768_224,
    }
    for name, count in expected.items():
        with torch.device("meta"):
            model = damokit.create_model(name)
        assert sum(p.numel() for p in model.parameters()) == count, name


def test_layout_of_elsa_swin_t():
    with torch.device("meta"):
        m = damokit.create_model("elsa_swin_t")
    kinds = [[type(b).__name__ for b in layer.blocks] for layer in m.layers]
    assert kinds == [["ELSABlock"] * 2, ["ELSABlock"] * 2, ["ELSABlock"] * 6, ["SwinBlock"] * 2]
    stage4 = m.layers[3].blocks
    assert [b.shift_size for b in stage4] == [0, 0] and stage4[1].window_size == 7  # 7×7 map: no shift
    assert m.layers[0].blocks[0].attn.dim_qk == 64 and m.layers[0].blocks[0].attn.lam == 0


def test_miniature_param_counts():
    # spec §9 pilot: LSA 135.6k, ELSA 148.1k parameters
    assert sum(p.numel() for p in damokit.create_model("swin_lsa_digits").parameters()) == 135_574
    assert sum(p.numel() for p in damokit.create_model("elsa_swin_digits").parameters()) == 148_070


def test_official_init():
    m = damokit.create_model("elsa_swin_tiny")
    assert m.head.bias.abs().max() == 0 and 0.015 < m.layers[0].blocks[0].mlp.fc1.weight.std() < 0.025
    # Conv2d keeps PyTorch's default (kaiming-uniform bound 1/sqrt(fan_in) = 1/4 for a 1×1 conv on 16
    # channels), not the Linear layers' trunc-normal 0.02
    w = m.layers[0].blocks[0].attn.pre_proj.weight
    assert w.abs().max() <= 1 / math.sqrt(16) + 1e-6 and w.std() > 0.1


@pytest.mark.parametrize("name", ["elsa_swin_digits", "swin_lsa_digits"])  # *_tiny: tests/test_conformance.py
def test_small_models_forward_backward(name):
    model = damokit.create_model(name)
    (x,) = damokit.model_info(name)["example_inputs"](torch.Generator().manual_seed(0))
    out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_elsa_swin_methods_agree():
    model = damokit.create_model("elsa_swin_tiny").eval()
    x = torch.randn(2, 3, 32, 32)
    ref = model(x)
    for module in model.modules():
        if isinstance(module, ELSA):
            module.method = "unfold"
    torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_elsa_swin_t_forward_224():
    model = damokit.create_model("elsa_swin_t").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


def test_elsa_swin_errors():
    with pytest.raises(ValueError, match="one entry per stage"):
        ELSASwin(depths=(2, 2), num_heads=(2,))
    with pytest.raises(ValueError, match=r"elsa_stages=5 must be in \[0, 4\]"):
        ELSASwin(elsa_stages=5)


# --------------------------------------------------------------------------------------------------
# official checkpoints


def official_state_dict(C0, depths, heads, gw, k=7, w=7, num_classes=1000, gen=None):
    """Random tensors with the official ELSA-Swin key names and shapes listed in spec §4."""
    g = gen or torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    sd = {"patch_embed.proj.weight": r(C0, 3, 4, 4), "patch_embed.proj.bias": r(C0)}
    sd |= {"patch_embed.norm.weight": r(C0), "patch_embed.norm.bias": r(C0)}
    C = C0
    for i, (depth, G) in enumerate(zip(depths, heads)):
        for j in range(depth):
            p = f"layers.{i}.blocks.{j}."
            for n in ("norm1", "norm2"):
                sd |= {p + n + ".weight": r(C), p + n + ".bias": r(C)}
            sd |= {p + "mlp.fc1.weight": r(4 * C, C), p + "mlp.fc1.bias": r(4 * C)}
            sd |= {p + "mlp.fc2.weight": r(C, 4 * C), p + "mlp.fc2.bias": r(C)}
            sd |= {p + "attn.post_proj.weight": r(C, C), p + "attn.post_proj.bias": r(C)}
            if i < len(depths) - 1:
                cqk = math.ceil((C // 3) * 2 / gw) * gw
                sd |= {p + "attn.ghost_head": r(1, C, k, k)}
                sd |= {p + "attn.pre_proj.weight": r(2 * cqk + C, C, 1, 1), p + "attn.pre_proj.bias": r(2 * cqk + C)}
                sd |= {p + "attn.attn.0.weight": r(cqk, gw, k, k), p + "attn.attn.0.bias": r(cqk)}
                sd |= {p + "attn.attn.2.weight": r(k * k * G, cqk, 1, 1), p + "attn.attn.2.bias": r(k * k * G)}
            else:
                sd |= {p + "attn.rb": r(G, (2 * w - 1) ** 2)}
                # official buffer: coords[:, None, :] - coords[:, :, None], i.e. key minus query
                coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")).flatten(1)
                rel = (coords[:, None, :] - coords[:, :, None]).permute(1, 2, 0) + (w - 1)
                sd |= {p + "attn.relative_id": (rel[..., 0] * (2 * w - 1) + rel[..., 1]).flatten()}
                sd |= {p + "attn.pre_proj.weight": r(3 * C, C), p + "attn.pre_proj.bias": r(3 * C)}
        if i < len(depths) - 1:
            sd |= {f"layers.{i}.downsample.reduction.weight": r(2 * C, 4 * C)}
            sd |= {f"layers.{i}.downsample.norm.weight": r(4 * C), f"layers.{i}.downsample.norm.bias": r(4 * C)}
            C *= 2
    sd |= {"norm.weight": r(C), "norm.bias": r(C), "head.weight": r(num_classes, C), "head.bias": r(num_classes)}
    return sd


def official_window_attention(sd, prefix, x, G, w):
    """Transcription of the official stage-4 ``WindowAttention.forward`` (cls/models/elsa_swin.py), no mask."""
    B_, N, C = x.shape
    feat = F.linear(x, sd[prefix + "attn.pre_proj.weight"], sd[prefix + "attn.pre_proj.bias"])
    feat = feat.reshape(B_, N, 3, G, C // G).permute(2, 0, 3, 1, 4)
    v, q, k = feat[0], feat[1], feat[2]
    rb = sd[prefix + "attn.rb"][:, sd[prefix + "attn.relative_id"]].reshape(1, G, N, N)
    attn = (q @ k.transpose(-2, -1) * (C // G) ** -0.5 + rb).softmax(-1)
    out = (attn @ v).transpose(1, 2).reshape(B_, N, C)
    return F.linear(out, sd[prefix + "attn.post_proj.weight"], sd[prefix + "attn.post_proj.bias"])


def _small_official():
    # ELSA-Swin layout at a small size: 64×64 input, stage maps 16, 8, 4, 2; stage-4 window 2 = its map
    cfg = dict(img_size=64, embed_dim=12, depths=(1, 1, 2, 2), num_heads=(1, 2, 2, 4), window_size=2)
    model = ELSASwin(**cfg, elsa_kernel=3, group_width=4, num_classes=7)
    return model, official_state_dict(12, (1, 1, 2, 2), (1, 2, 2, 4), gw=4, k=3, w=2, num_classes=7)


def test_official_stage4_traps_numerically():
    model, sd = _small_official()
    sd = {k: v.double() if v.is_floating_point() else v for k, v in sd.items()}
    load_official_elsa_swin(sd, model.double())
    attn = model.layers[3].blocks[1].attn
    x = torch.randn(3, 4, 96, dtype=torch.float64)  # windows of the 2×2 stage-4 map, C = 96
    torch.testing.assert_close(attn(x), official_window_attention(sd, "layers.3.blocks.1.", x, 4, 2))
    # ELSA stages keep their names and tensors unchanged
    assert torch.equal(model.layers[2].blocks[0].attn.ghost_head, sd["layers.2.blocks.0.attn.ghost_head"])


def test_official_full_model_matches_official_forward_pieces():
    model, sd = _small_official()
    load_official_elsa_swin(sd, model)
    x = torch.randn(2, 5, 4, 12)  # an ELSA block of stage 1 against the official module forward
    blk = model.layers[0].blocks[0]
    torch.testing.assert_close(blk.attn(x), official_elsa_forward(blk.attn, x))
    assert torch.isfinite(model(torch.randn(1, 3, 64, 64))).all()


def test_official_t_layout_keys_and_shapes():
    # the full ELSA-Swin-T layout of spec §4, keys and shapes only (meta device model, no values loaded)
    sd = official_state_dict(96, (2, 2, 6, 2), (3, 6, 12, 24), gw=4)
    converted = convert_official_elsa_swin(sd)
    with torch.device("meta"):
        own = damokit.create_model("elsa_swin_t").state_dict()
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in own.items()}


def test_official_checkpoint_file_roundtrip(tmp_path):
    model, sd = _small_official()
    path = tmp_path / "elsa_swin_small.pth.tar"
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in sd.items()}
    args = argparse.Namespace(model="elsa_swin_tiny", lr=1e-3)
    torch.save({"epoch": 299, "state_dict": sd, "state_dict_ema": ema, "args": args}, path)
    load_official_elsa_swin(path, model)
    assert torch.equal(model.head.weight, sd["head.weight"])
    load_official_elsa_swin(path, model, ema=True)
    assert torch.equal(model.head.weight, ema["head.weight"])
    torch.save({"module." + k: v for k, v in sd.items()}, tmp_path / "bare.pth")  # DDP-prefixed bare dict
    load_official_elsa_swin(tmp_path / "bare.pth", model)
    assert torch.equal(model.head.weight, sd["head.weight"])


def test_official_loader_errors(tmp_path):
    model, sd = _small_official()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_official_elsa_swin(tmp_path / "nope.pth", model)
    torch.save(sd, tmp_path / "plain.pth")
    with pytest.raises(ValueError, match="no 'state_dict_ema'"):
        load_official_elsa_swin(tmp_path / "plain.pth", model, ema=True)
    broken = dict(sd)
    del broken["layers.0.blocks.0.attn.ghost_head"]
    broken["layers.9.extra"] = torch.zeros(1)
    broken["head.weight"] = torch.zeros(3, 96)
    with pytest.raises(CheckpointError, match=r"missing: layers\.0\.blocks\.0\.attn\.ghost_head.*unexpected: "):
        load_official_elsa_swin(broken, model)
    with pytest.raises(CheckpointError, match=r"mis-shaped: head\.weight: checkpoint \(3, 96\) vs model \(7, 96\)"):
        load_official_elsa_swin({**sd, "head.weight": torch.zeros(3, 96)}, model)
    # Swin's query − key buffer (the flat index reversed) in place of the official key − query one
    swapped = {**sd, "layers.3.blocks.0.attn.relative_id": sd["layers.3.blocks.0.attn.relative_id"].flip(0)}
    with pytest.raises(ValueError, match="not hold the official key − query indices"):
        load_official_elsa_swin(swapped, model)


def test_registered_names():
    names = damokit.list_models("*swin*")
    for name in ("elsa_swin_t", "elsa_swin_s", "elsa_swin_b", "swin_lsa_t", "swin_lsa_s", "swin_lsa_b"):
        assert name in names
    assert {"elsa_swin_tiny", "swin_lsa_tiny"} <= set(damokit.list_models("*_tiny"))
    assert elsa_mod.elsa_swin_t.__doc__.startswith("ELSA-Swin-T")
