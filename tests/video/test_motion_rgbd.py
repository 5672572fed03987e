"""MotionRGBD: structural tests from spec §7, reference formulas, errors, and a tiny training run."""

import numpy as np
import pytest
import torch

import damokit
from damokit.data.synth_rgbd import make_synth_rgbd
from damokit.data.video_lists import ClipListDataset, load_nvgesture_mini, parse_split_file
from damokit.video.motion_rgbd import (
    CAPFusion,
    InceptionDSN,
    KNNAttention,
    MiniDSN,
    RecouplingModule,
    late_fusion,
    motion_attention_maps,
    motion_loss,
    recoupling_distill_loss,
    segment_bounds,
    segment_indices,
)
from damokit.video.motion_rgbd.recipe import RECIPES, ClipTensorDataset, accuracy, predict_logits, train_unimodal


def test_segment_sampler_middles_at_test_and_inside_segments_at_train():
    # n=10, k=4: segments [0,2) [2,5) [5,7) [7,10); integer means 0, 3, 5, 8
    start, end = segment_bounds(10, 4)
    assert start.tolist() == [0, 2, 5, 7] and end.tolist() == [2, 5, 7, 10]
    assert segment_indices(10, 4, train=False).tolist() == [0, 3, 5, 8]
    draws = segment_indices(10, 4, train=True, batch=500, generator=torch.Generator().manual_seed(0))
    assert ((draws >= start) & (draws < end)).all()
    assert len(torch.unique(draws[:, 1])) == 3  # every frame of [2, 5) gets drawn
    assert segment_indices(3, 6, train=False).tolist() == [0, 0, 1, 1, 2, 2]  # n < k: frames repeat
    with pytest.raises(ValueError, match="need n >= 1 frames and k >= 1 segments"):
        segment_indices(0, 4, train=False)


@pytest.mark.parametrize("dsn", [MiniDSN(in_chans=3, dim=8), InceptionDSN(frames=4, dim=8, frp=False)])
def test_dsn_is_frame_equivariant(dsn):
    """Strict decoupling: permuting the input frames permutes the output tokens the same way."""
    dsn.eval()
    x = torch.rand(2, 3, 4, 32, 32)
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        torch.testing.assert_close(dsn(x[:, :, perm]), dsn(x)[:, perm])


def test_official_temporal_pool_breaks_frame_equivariance():
    dsn = InceptionDSN(frames=4, dim=8, frp=False, pool_temporal_kernel=3).eval()
    x, perm = torch.rand(1, 3, 4, 32, 32), torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        assert not torch.allclose(dsn(x[:, :, perm]), dsn(x)[:, perm], atol=1e-5)


def test_frp_with_given_maps_keeps_equivariance_and_starts_as_doubling():
    dsn = InceptionDSN(frames=4, dim=8, frp=True, frp_window=2).eval()
    x, perm = torch.rand(1, 3, 4, 32, 32), torch.tensor([2, 0, 3, 1])
    maps = torch.rand(1, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(dsn(x[:, :, perm], maps[:, perm]), dsn(x, maps)[:, perm])
    block = dsn.frp["3b"]
    f = torch.rand(2, 5, 4, 4)
    torch.testing.assert_close(block(f, torch.rand(2, 8, 8)), 2 * f)  # (a, b) = (1, 0): F + F


def test_motion_maps_follow_the_rank_pooling_rule():
    frames = torch.zeros(1, 3, 5, 8, 8)
    frames[:, :, 3:, 2:4, 2:4] = 1.0  # a square appears at t = 3
    maps = motion_attention_maps(frames, window=2)
    assert maps.shape == (1, 5, 8, 8)
    assert (maps[:, 0] == 0).all()  # the first w - 1 maps are zeros
    assert (maps[:, 1:3] == 0).all()  # nothing moves before t = 3
    # at t = 3 the weights (-1, +1) see the square appear: dynamic = 1 there, static mask survives 2x2 erosion
    # only at its top-left pixel, dilated 3x3 back over the square: (1 + 1) * 1 = 2 on the square
    assert maps[0, 3, 2, 2] == 2.0 and maps[0, 3, 0, 7] == 0.0
    with pytest.raises(ValueError, match="window must be in"):
        motion_attention_maps(frames, window=9)


def test_knn_attention_keeps_exactly_k_keys_per_query():
    attn = KNNAttention(16, heads=2, head_dim=8, knn_ratio=0.7)
    weights = attn.attention(torch.randn(3, 13, 16))  # N = 13 tokens: floor(0.7 * 13) = 9 keys
    assert ((weights > 0).sum(-1) == 9).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2, 13))
    with pytest.raises(ValueError, match=r"knn_ratio must be in \(0, 1\]"):
        KNNAttention(16, heads=2, head_dim=8, knn_ratio=0.0)


def test_rcm_gates_by_the_outer_product_of_its_weights():
    rcm = RecouplingModule(frames=6, dim=5, hidden=4, qk_dim=3)
    x = torch.randn(2, 6, 5)
    out, w_t, w_c = rcm(x)
    torch.testing.assert_close(out, x * torch.einsum("bt,bc->btc", w_t, w_c))
    assert ((w_t > 0) & (w_t < 1)).all() and ((w_c > 0) & (w_c < 1)).all()
    # channel weights from the formula: sigmoid(mean over query channels of Q K^T / sqrt(e)), Q = X^T W_q
    q, k = x.transpose(1, 2) @ rcm.q.weight.T, x.transpose(1, 2) @ rcm.k.weight.T  # (B, C, e)
    expected = torch.sigmoid((q @ k.transpose(1, 2) / 3**0.5).mean(dim=1))
    torch.testing.assert_close(w_c, expected)


def test_distillation_sends_no_gradient_into_the_temporal_network():
    model = damokit.create_model("motion_rgbd_tiny")
    out = model(torch.rand(2, 3, 8, 16, 16))
    out.distill_loss.backward()
    dtn_grads = [p.grad for p in model.backbone.dtn.parameters() if p.grad is not None]
    assert all((g == 0).all() for g in dtn_grads)
    assert model.backbone.rcm.to_feature.weight.grad.abs().sum() > 0


def test_distill_loss_matches_the_kl_formula():
    rcm = RecouplingModule(frames=4, dim=3, hidden=2, qk_dim=2)
    w_t, teacher = torch.rand(2, 4), torch.randn(2, 3)
    p = torch.softmax(teacher / 0.5, -1)
    log_q = torch.log_softmax(rcm.to_feature(w_t) / 0.5, -1)
    expected = (p * (p.log() - log_q)).sum(-1).mean()
    torch.testing.assert_close(recoupling_distill_loss(rcm, w_t, teacher, 0.5), expected)


def test_capf_couples_modalities_and_late_fusion_does_not():
    torch.manual_seed(0)
    rgb_net = damokit.create_model("motion_rgbd_tiny", num_classes=4)
    depth_net = damokit.create_model("motion_rgbd_tiny", num_classes=4, in_chans=1)
    capf = CAPFusion.from_unimodal(rgb_net, depth_net)
    rgb, depth = torch.rand(2, 3, 8, 16, 16), torch.rand(2, 1, 8, 16, 16, requires_grad=True)
    grad = torch.autograd.grad(capf(rgb, depth).rgb_feature.sum(), depth)[0]
    assert grad.abs().sum() > 0  # the RGB stream's temporal feature sees the depth clip
    rgb_logits = rgb_net(rgb).logits
    fused = late_fusion(rgb_logits, depth_net(depth).logits)
    (grad_late,) = torch.autograd.grad(rgb_logits.sum(), depth, allow_unused=True)
    assert grad_late is None  # no path at all from depth to the RGB posterior
    assert fused.shape == (2, 4)


def test_capf_official_reshape_mixes_frames():
    torch.manual_seed(0)
    capf = damokit.create_model("capf_tiny", official_reshape=True).eval()
    s_r, s_d = torch.randn(1, 8, 16), torch.randn(1, 8, 16)
    base = capf._spatial_interaction(s_r, s_d)
    s_r2 = s_r.clone()
    s_r2[:, 0] += 1.0  # change frame 0 only
    changed = (capf._spatial_interaction(s_r2, s_d) - base).abs().sum(-1)[0]
    assert (changed[1:] > 0).any()  # other frames moved: the reshape mixes frames
    capf.official_reshape = False
    base = capf._spatial_interaction(s_r, s_d)
    changed = (capf._spatial_interaction(s_r2, s_d) - base).abs().sum(-1)[0]
    assert (changed[1:] == 0).all()  # per-frame interaction


def test_bad_inputs_get_clear_errors():
    model = damokit.create_model("motion_rgbd_tiny")
    with pytest.raises(ValueError, match=r"expected clips of shape \(B, 3, 8, H, W\), got \(2, 1, 8, 16, 16\)"):
        model(torch.rand(2, 1, 8, 16, 16))
    with pytest.raises(ValueError, match=r"expected clips of shape \(B, 3, 8, H, W\)"):
        model(torch.rand(2, 3, 6, 16, 16))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
        motion_loss(model(torch.rand(2, 3, 8, 16, 16)), torch.tensor([0, 7]))
    capf = damokit.create_model("capf_tiny")
    with pytest.raises(ValueError, match="RGB and depth clips must pair up"):
        capf(torch.rand(2, 3, 8, 16, 16), torch.rand(2, 1, 6, 16, 16))
    with pytest.raises(ValueError, match="RGB and depth clips are not paired"):
        ClipTensorDataset(torch.zeros(2), rgb=torch.rand(2, 3, 8, 16, 16), depth=torch.rand(2, 1, 8, 12, 12))
    with pytest.raises(ValueError, match="give at least one modality"):
        ClipTensorDataset(torch.zeros(2))
    with pytest.raises(ValueError, match="spatial must be 'inception' or 'mini'"):
        damokit.create_model("motion_rgbd_tiny", spatial="resnet")


def test_split_files_parse_and_reject_malformed_lines(tmp_path):
    good = tmp_path / "train.txt"
    good.write_text(" train/class_01/subject3_r0 80 0\ntrain/class_02/subject1_r1 78 1 \n\n")
    entries = parse_split_file(good)
    assert [(e.path, e.frames, e.label) for e in entries] == [
        ("train/class_01/subject3_r0", 80, 0),
        ("train/class_02/subject1_r1", 78, 1),
    ]
    bad = tmp_path / "bad.txt"
    bad.write_text("train/a 80 0\ntrain/b eighty 1\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected '<clip dir> <frames> <label>'"):
        parse_split_file(bad)
    with pytest.raises(ValueError, match=r"train.txt:2: label 1 outside \[0, 1\)"):
        parse_split_file(good, num_classes=1)


def test_clip_list_dataset_reads_frame_folders(tmp_path):
    from PIL import Image

    (tmp_path / "train.txt").write_text("train/class_01/s1_r0 6 3\n")
    for modality in ("rgb", "depth"):
        folder = tmp_path / modality / "train/class_01/s1_r0"
        folder.mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(folder / f"{i:06d}.jpg", quality=100)
    clip, label = ClipListDataset(tmp_path / "train.txt", tmp_path, preset="nvgesture", frames=3, size=8)[0]
    assert clip.shape == (3, 3, 8, 8) and label == 3
    # test-time middles of 6 frames in 3 segments are frames 0, 2, 4 (values 0, 80, 160 / 255)
    torch.testing.assert_close(clip[0, :, 0, 0], torch.tensor([0, 80, 160]) / 255, atol=2 / 255, rtol=0)
    depth, _ = ClipListDataset(tmp_path / "train.txt", tmp_path, preset="nvgesture", modality="depth", size=8)[0]
    assert depth.shape[0] == 1
    with pytest.raises(FileNotFoundError, match="000006.jpg is missing"):
        (tmp_path / "train.txt").write_text("train/class_01/s1_r0 7 3\n")
        ClipListDataset(tmp_path / "train.txt", tmp_path, preset="nvgesture", frames=7, size=8)[0]


def _write_video(path, values, size=20):
    """A lossless RGB video (PNG frames in AVI) whose frame i is the flat colour ``values[i]``."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png", rate=10)
        stream.width, stream.height, stream.pix_fmt = size, size, "rgb24"
        for value in values:
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), value, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def test_clip_list_dataset_decodes_videos_where_there_is_no_frame_folder(tmp_path, monkeypatch):
    # IsoGD-style: the split file names "train/001/M_00001"; the RGB clip is the video M_00001.avi
    (tmp_path / "rgb/train/001").mkdir(parents=True)
    _write_video(tmp_path / "rgb/train/001/M_00001.avi", [40 * i for i in range(6)])
    (tmp_path / "train.txt").write_text("train/001/M_00001 6 2\n")
    clip, label = ClipListDataset(tmp_path / "train.txt", tmp_path, preset="isogd", frames=3, size=8)[0]
    assert clip.shape == (3, 3, 8, 8) and label == 2
    # the same test-time middles as for frame folders: frames 0, 2, 4, decoded exactly (lossless)
    torch.testing.assert_close(clip[:, :, 4, 4], torch.tensor([[0, 80, 160]] * 3) / 255)
    with pytest.raises(FileNotFoundError, match="neither a frame folder .* nor a video"):
        ClipListDataset(tmp_path / "train.txt", tmp_path, preset="isogd", modality="depth", size=8)[0]
    (tmp_path / "long.txt").write_text("train/001/M_00001 12 2\n")
    with pytest.raises(ValueError, match="has 6 decodable frames, but clip 'train/001/M_00001' lists 12"):
        ClipListDataset(tmp_path / "long.txt", tmp_path, preset="isogd", frames=12, size=8)[0]
    (tmp_path / "rgb/train/001/M_00002.mp4").write_bytes(b"not a video")
    (tmp_path / "bad.txt").write_text("train/001/M_00002 6 2\n")
    with pytest.raises(ValueError, match="cannot decode video"):
        ClipListDataset(tmp_path / "bad.txt", tmp_path, preset="isogd", frames=3, size=8)[0]
    monkeypatch.setitem(__import__("sys").modules, "av", None)  # PyAV not installed
    with pytest.raises(ImportError, match=r"pip install 'damokit\[video\]'"):
        ClipListDataset(tmp_path / "train.txt", tmp_path, preset="isogd", frames=3, size=8)[0]


def test_full_size_coupled_baseline_matches_the_paper_network_in_size():
    def count(name):
        return sum(p.numel() for p in damokit.create_model(name).parameters())

    assert 0.9 < count("c3d") / count("motion_rgbd_inception") < 1.1
    logits = damokit.create_model("c3d", num_classes=7).eval()(torch.rand(1, 3, 16, 64, 64))
    assert logits.shape == (1, 7)


def test_synthetic_generator_is_seeded_and_balanced():
    a, b = make_synth_rgbd("B", 3, seed=5), make_synth_rgbd("B", 3, seed=5)
    torch.testing.assert_close(a.rgb, b.rgb)
    assert a.rgb.shape == (12, 3, 24, 32, 32) and a.depth.shape == (12, 1, 24, 32, 32)
    assert torch.bincount(a.labels).tolist() == [3, 3, 3, 3]
    assert not torch.equal(make_synth_rgbd("B", 3, seed=6).rgb, a.rgb)
    g = make_synth_rgbd("G", 1, seed=0)
    assert len(g.classes) == 10 and 0 <= g.rgb.min() and g.rgb.max() <= 1
    with pytest.raises(ValueError, match="split must be one of"):
        make_synth_rgbd("X", 1, seed=0)


def test_nvgesture_pack_loads_in_model_layout():
    pack = load_nvgesture_mini()
    assert pack["rgb"].shape == (49, 3, 16, 64, 64) and pack["depth"].shape == (49, 1, 16, 64, 64)
    assert pack["labels"].max() == 24 and 0 <= pack["rgb"].min() and pack["rgb"].max() <= 1


def test_smoke_training_is_deterministic(tmp_path):
    """Two seeded runs of the smoke recipe give identical loss curves."""
    data = make_synth_rgbd("B", 6, seed=0, frames=12, size=16)
    train = ClipTensorDataset(data.labels, depth=data.depth, frames=8, train=True)
    histories = []
    for run in range(2):
        torch.manual_seed(0)
        model = damokit.create_model("motion_rgbd_tiny", num_classes=4, in_chans=1)
        result = train_unimodal(model, train, RECIPES["smoke"], out_dir=tmp_path / str(run), progress=False)
        histories.append([row["train_loss"] for row in result.history])
    assert histories[0] == histories[1]
    scores = predict_logits(model, ClipTensorDataset(data.labels, depth=data.depth, frames=8))
    assert scores.shape == (24, 4)
    assert accuracy(torch.eye(4)[data.labels], data.labels) == 100.0


def test_reproduction_verdicts_follow_the_spec_thresholds():
    """Spec §8.3 criteria on hand-made accuracies: CAPF must clear the 62.5 % bound by 2 and late fusion by 8."""
    from damokit.reproduce.motion_rgbd import _rows_fusion
    from damokit.reproduce.result import Verdict

    acc = {
        "B rgb": [25.0, 24.0],
        "B depth": [58.0, 59.0],
        "B late fusion (softmax_mean)": [56.0, 57.0],
        "B late fusion (logprob_sum)": [55.0, 56.0],
        "B CAPF": [67.0, 66.0],
    }
    rows = _rows_fusion(acc, "", split_f=False)
    assert [r.verdict for r in rows] == [Verdict.HOLDS] * 4  # gap +10, CAPF 66.5 >= 64.5, RGB at chance, late <= depth
    acc["B CAPF"] = [63.0, 64.0]  # above late fusion by 7: neither the +8 gap nor the bound
    rows = _rows_fusion(acc, "", split_f=False)
    assert rows[0].verdict is Verdict.DOES_NOT_HOLD and rows[1].verdict is Verdict.DOES_NOT_HOLD
