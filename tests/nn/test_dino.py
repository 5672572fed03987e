"""Tests of damokit.nn.dino: the loss (spec R8), centring, schedules, EMA, views, training through fit."""

import colorsys
import math

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from damokit.engine import TrainConfig
from damokit.nn.dino import (
    DINO,
    DINOHead,
    DINOLoss,
    MultiCropAugment,
    _shift_hue,
    color_jitter,
    dino_cosine,
    dino_param_groups,
    fit_dino,
    gaussian_blur,
    random_resized_crop,
    teacher_momentum,
    teacher_temperature,
)
from damokit.nn.vit import vit_tiny

SMALL_AUG = MultiCropAugment(global_size=(32, 32), local_size=(16, 16), n_local=2)


def _small_dino(**kw) -> DINO:
    args = dict(total_steps=10, out_dim=64, hidden_dim=32, bottleneck_dim=16, augment=SMALL_AUG)
    return DINO(vit_tiny(drop_path_rate=0.1), **{**args, **kw})


def test_loss_of_uniform_outputs_is_log_out_dim():
    # uniform teacher q = 1/K and uniform student log p = -log K -> every term is log K (spec R8)
    K, B = 50, 3
    loss = DINOLoss(K, n_crops=10)
    value = loss(torch.zeros(10 * B, K), torch.zeros(2 * B, K), teacher_temp=0.04)
    assert value.item() == pytest.approx(math.log(K), rel=1e-6)


def test_loss_excludes_same_view_pairs_and_averages_18_terms():
    K, B, V = 7, 2, 10
    student, teacher = torch.randn(V * B, K), torch.randn(2 * B, K)
    got = DINOLoss(K, n_crops=V)(student, teacher, teacher_temp=0.04)
    log_p = torch.log_softmax(student / 0.1, -1).chunk(V)
    q = torch.softmax(teacher / 0.04, -1).chunk(2)  # centre starts at zero
    terms = [(-q[i] * log_p[v]).sum(-1).mean() for i in range(2) for v in range(V) if v != i]
    assert len(terms) == 2 * V - 2 == 18
    torch.testing.assert_close(got, torch.stack(terms).mean())


def test_center_is_ema_with_momentum_09():
    loss = DINOLoss(4, n_crops=2)
    t1, t2 = torch.randn(6, 4), torch.randn(6, 4)
    loss(torch.randn(6, 4), t1, 0.04)
    torch.testing.assert_close(loss.center, 0.1 * t1.mean(0, keepdim=True))
    loss(torch.randn(6, 4), t2, 0.04)
    torch.testing.assert_close(loss.center, 0.9 * 0.1 * t1.mean(0, keepdim=True) + 0.1 * t2.mean(0, keepdim=True))


def test_schedules():
    # official utils.cosine_scheduler(base, final, epochs, niter_per_ep): final + (base - final)(1 + cos(pi t/T))/2
    assert dino_cosine(0, 100, 0.04, 0.4) == pytest.approx(0.04)
    assert dino_cosine(50, 100, 0.04, 0.4) == pytest.approx(0.22)
    assert dino_cosine(25, 100, 0.04, 0.4) == pytest.approx(0.4 - 0.36 * (1 + math.sqrt(0.5)) / 2)
    assert dino_cosine(100, 100, 0.04, 0.4) == dino_cosine(150, 100, 0.04, 0.4) == pytest.approx(0.4)
    assert teacher_momentum(0, 100) == pytest.approx(0.996)
    assert teacher_momentum(50, 100) == pytest.approx(0.998)
    assert teacher_momentum(100, 100) == pytest.approx(1.0)
    assert teacher_temperature(0, 0.07, 0.04, 30) == pytest.approx(0.04)
    assert teacher_temperature(15, 0.07, 0.04, 30) == pytest.approx(0.055)
    assert teacher_temperature(40, 0.07, 0.04, 30) == pytest.approx(0.07)


def test_head_shapes_and_unit_rows():
    head = DINOHead(48, 100, hidden_dim=32, bottleneck_dim=16)
    assert head(torch.randn(5, 48)).shape == (5, 100)
    assert not head.last_layer.weight_g.requires_grad
    names = set(dict(head.named_parameters()))
    assert {"mlp.0.weight", "mlp.2.weight", "mlp.4.weight", "last_layer.weight_g", "last_layer.weight_v"} <= names
    with pytest.raises(ValueError, match="nlayers must be >= 1"):
        DINOHead(4, 4, nlayers=0)


def test_views_shapes_determinism_and_errors():
    x = torch.rand(4, 3, 64, 32)
    a = SMALL_AUG(x, generator=torch.Generator().manual_seed(1))
    b = SMALL_AUG(x, generator=torch.Generator().manual_seed(1))
    assert [tuple(v.shape) for v in a] == [(4, 3, 32, 32)] * 2 + [(4, 3, 16, 16)] * 2
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v)
    with pytest.raises(ValueError, match=r"expects RGB images \(B, 3, H, W\)"):
        SMALL_AUG(torch.rand(4, 1, 64, 32))


def test_full_crop_without_flip_is_identity():
    x = torch.rand(2, 3, 8, 6)
    out = random_resized_crop(x, (8, 6), scale=(1.0, 1.0), ratio=(6 / 8, 6 / 8), flip_p=0.0, mode="bilinear")
    torch.testing.assert_close(out, x)
    flipped = random_resized_crop(x, (8, 6), scale=(1.0, 1.0), ratio=(6 / 8, 6 / 8), flip_p=1.0, mode="bilinear")
    torch.testing.assert_close(flipped, x.flip(-1))


def test_hue_shift_matches_colorsys():
    x = torch.rand(1, 3, 2, 2)
    out = _shift_hue(x, torch.tensor([0.25]))
    for i in range(2):
        for j in range(2):
            h, s, v = colorsys.rgb_to_hsv(*x[0, :, i, j].tolist())
            ref = colorsys.hsv_to_rgb((h + 0.25) % 1.0, s, v)
            torch.testing.assert_close(out[0, :, i, j], torch.tensor(ref, dtype=torch.float32), atol=1e-5, rtol=0)


def test_jitter_and_blur_probability_zero_are_identity():
    x = torch.rand(3, 3, 16, 16)
    torch.testing.assert_close(color_jitter(x, p=0.0), x)
    torch.testing.assert_close(gaussian_blur(x, p=0.0), x)
    const = torch.full((2, 3, 16, 16), 0.3)
    torch.testing.assert_close(gaussian_blur(const, p=1.0), const)  # blur keeps a constant image


def test_ema_update_follows_formula_and_teacher_has_no_drop_path():
    dino = _small_dino()
    assert all(b.drop_path.p == 0 for b in dino.teacher.backbone.blocks)
    assert not any(p.requires_grad for p in dino.teacher.parameters())
    teacher0 = [p.clone() for p in dino.teacher.parameters()]
    with torch.no_grad():
        for p in dino.student.parameters():
            p.add_(1.0)
    dino.update_teacher(3)
    m = teacher_momentum(3, 10)
    assert 0.996 < m < 1
    for t0, t, s in zip(teacher0, dino.teacher.parameters(), dino.student.parameters()):
        torch.testing.assert_close(t, m * t0 + (1 - m) * s)


def test_last_layer_frozen_for_first_steps():
    dino = _small_dino(norm_last_layer=False, freeze_last_layer_steps=1)
    x = torch.rand(4, 3, 40, 40)
    dino(x).backward()
    assert dino.student.head.last_layer.weight_v.grad.abs().sum() == 0
    assert dino.student.head.mlp[0].weight.grad.abs().sum() > 0
    dino.zero_grad()
    dino(x).backward()
    assert dino.student.head.last_layer.weight_v.grad.abs().sum() > 0


def test_param_groups_skip_bias_and_norms():
    dino = _small_dino()
    decay, no_decay = dino_param_groups(dino, 0.04)
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    n_trainable = sum(1 for p in dino.parameters() if p.requires_grad)
    assert len(decay["params"]) + len(no_decay["params"]) == n_trainable


@pytest.mark.slow
def test_fit_dino_trains_and_is_deterministic():
    images = (torch.rand(16, 3, 40, 40) * 255).to(torch.uint8)
    cfg = TrainConfig(epochs=1, batch_size=8, lr=1e-3, optimizer="adamw", weight_decay=0.04, progress=False)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        dino = _small_dino(total_steps=2)
        result = fit_dino(dino, images, cfg)
        runs.append([row["train_loss"] for row in result.history])
        assert int(dino.step) == 2
    assert runs[0] == runs[1] and all(math.isfinite(v) for v in runs[0])
    with pytest.raises(ValueError, match=r"images must be \(N, 3, H, W\)"):
        fit_dino(dino, images[:, :1], cfg)


class _PoolNet(torch.nn.Sequential):
    """A backbone small enough for multi-step schedule tests: mean colour of 2x2 cells -> 8 features."""

    embed_dim = 8

    def __init__(self):
        super().__init__(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(12, 8))


def _schedule_run(out_dir, *, max_steps=None, resume=False):
    """fit_dino over 4 steps; returns the (decayed, undecayed) weight decay of each optimizer step, the
    steps the teacher was updated after, and the teacher's parameters."""
    torch.manual_seed(0)
    dino = DINO(_PoolNet(), total_steps=4, out_dim=16, hidden_dim=8, bottleneck_dim=4, augment=SMALL_AUG)
    cfg = TrainConfig(
        epochs=1, max_steps=max_steps, batch_size=2, lr=1e-2, optimizer="adamw", weight_decay=0.04, progress=False
    )
    decays, ema_steps = [], []
    hook = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: decays.append(tuple(g["weight_decay"] for g in opt.param_groups))
    )
    update = dino.update_teacher
    dino.update_teacher = lambda step: (ema_steps.append(step), update(step))
    try:
        fit_dino(dino, torch.rand(8, 3, 40, 40), cfg, out_dir=out_dir, resume=resume)
    finally:
        hook.remove()
    return decays, ema_steps, [p.clone() for p in dino.teacher.parameters()]


def test_fit_dino_weight_decay_cosine_and_ema_per_step(tmp_path):
    decays, ema_steps, _ = _schedule_run(None)
    assert len(decays) == 4 and ema_steps == [0, 1, 2, 3]  # one EMA update after every optimizer step
    for t, (wd, no_wd) in enumerate(decays):  # step 0 (0.04), mid (0.22 at t = T/2), last (t = 3)
        assert wd == pytest.approx(0.4 - 0.36 * (1 + math.cos(math.pi * t / 4)) / 2)
        assert no_wd == 0.0  # biases and norm parameters are never decayed
    assert decays[2][0] == pytest.approx(0.22)
    # interrupted after 2 steps and resumed from the checkpoint: same schedule position, same teacher
    first, first_ema, _ = _schedule_run(tmp_path, max_steps=2)
    rest, rest_ema, teacher = _schedule_run(tmp_path, resume=True)
    assert first_ema + rest_ema == [0, 1, 2, 3]
    assert first + rest == decays
    for a, b in zip(teacher, _schedule_run(None)[2]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_fit_dino_constant_weight_decay_when_end_is_none():
    torch.manual_seed(0)
    dino = DINO(_PoolNet(), total_steps=2, out_dim=16, hidden_dim=8, bottleneck_dim=4, augment=SMALL_AUG)
    cfg = TrainConfig(epochs=1, batch_size=2, lr=1e-2, optimizer="adamw", weight_decay=0.05, progress=False)
    decays = []
    hook = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: decays.append(opt.param_groups[0]["weight_decay"])
    )
    try:
        fit_dino(dino, torch.rand(4, 3, 40, 40), cfg, weight_decay_end=None)
    finally:
        hook.remove()
    assert decays == [0.05, 0.05]
    with pytest.raises(ValueError, match="weight_decay_end must be >= 0"):
        fit_dino(dino, torch.rand(4, 3, 40, 40), cfg, weight_decay_end=-0.1)


def test_errors():
    with pytest.raises(ValueError, match="n_crops must be >= 2"):
        DINOLoss(4, n_crops=1)
    with pytest.raises(ValueError, match="total_steps must be >= 1"):
        _small_dino(total_steps=0)
    with pytest.raises(ValueError, match="momentum must be in"):
        _small_dino(momentum=1.5)
    with pytest.raises(ValueError, match="embed_dim is needed"):
        DINO(torch.nn.Linear(3, 3), total_steps=1)
    dino = _small_dino(augment=None)
    with pytest.raises(ValueError, match="at least the 2 global views"):
        dino([torch.rand(2, 3, 32, 32)])
