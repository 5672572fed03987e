"""TransFGU: metrics, windows, CAM semantics, losses, bootstrapping schedule, DINO loading, pipeline (spec §8)."""

import inspect

import pytest
import torch

from damokit.data.synth_shapes import make_objects, make_scenes
from damokit.engine import CheckpointError
from damokit.segmentation import confusion_matrix, segmentation_scores
from damokit.segmentation.transfgu import (
    PRESETS,
    BootstrapSchedule,
    MaskTransformerDecoder,
    TransFGU,
    foreground_mask,
    gradient_cam,
    keep_top_mass,
    load_dino_vit,
    patch_kmeans,
    pixel_kmeans,
    sliding_windows,
)
from damokit.segmentation.transfgu.backbone import transfgu_vit_tiny
from damokit.segmentation.transfgu.losses import make_targets, normalise_pseudo_labels, transfgu_losses


def test_hungarian_metric_is_100_for_a_permuted_prediction_and_ignores_unlabeled():
    gt = torch.randint(0, 5, (3, 16, 16))
    pred = torch.tensor([3, 0, 4, 1, 2])[gt]
    gt[0, :2] = -1
    scores = segmentation_scores(confusion_matrix(gt, pred, 5))
    assert scores.miou == pytest.approx(100.0) and scores.pixel_accuracy == pytest.approx(100.0)
    assert scores.mapping == (1, 3, 4, 0, 2)


def test_miou_and_pixel_accuracy_match_a_hand_count():
    # GT [0 0 1 1], prediction [1 1 1 0]: best matching maps pred 1 -> 0, pred 0 -> 1 (2 + 1 = 3 pixels right)
    conf = confusion_matrix(torch.tensor([0, 0, 1, 1]), torch.tensor([1, 1, 1, 0]), 2)
    scores = segmentation_scores(conf)
    assert scores.pixel_accuracy == pytest.approx(75.0)
    # class 0: TP 2, FP 1, FN 0 -> 2/3; class 1: TP 1, FP 0, FN 1 -> 1/2
    assert scores.miou == pytest.approx(100 * (2 / 3 + 1 / 2) / 2)
    with pytest.raises(ValueError, match="shapes differ"):
        confusion_matrix(torch.zeros(2), torch.zeros(3), 2)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        confusion_matrix(torch.tensor([0, 5]), torch.tensor([0, 1]), 2)


def test_bootstrap_schedule_reproduces_the_coco_config():
    assert BootstrapSchedule(3, (3, 3, 3, 2)).update_epochs(35) == [3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 32, 34]
    with pytest.raises(ValueError, match="need start >= 1"):
        BootstrapSchedule(0, (2,))


def test_sliding_windows_cover_the_borders():
    windows = sliding_windows(8, 8, (0.5,))  # side 4, stride 2: offsets 0, 2, 4 in both directions
    assert windows.tolist() == [[y, x, 4] for y in (0, 2, 4) for x in (0, 2, 4)]
    flush = sliding_windows(7, 7, (0.5,))  # side 4 (round 3.5), stride 2: 0, 2 and the flush offset 3
    assert sorted({int(y) for y, _, _ in flush}) == [0, 2, 3]


def test_foreground_mask_thresholds_cls_attention_at_its_mean():
    attn = torch.zeros(1, 2, 5, 5)
    attn[0, :, 0, 1:] = torch.tensor([0.1, 0.5, 0.1, 0.3])
    assert foreground_mask(attn, (2, 2)).tolist() == [[[False, True], [False, True]]]


def test_keep_top_mass_keeps_the_largest_80_percent():
    # sorted [1, 2, 3, 4] / 10 -> cumulative [0.1, 0.3, 0.6, 1.0]; kept where > 0.2: values 2, 3, 4
    kept = keep_top_mass(torch.tensor([[3.0, 1.0, 4.0, 2.0]]))
    assert kept.tolist() == [[3.0, 0.0, 4.0, 2.0]]


def test_cam_follows_the_prototype_and_is_zero_where_the_gradient_is_positive():
    torch.manual_seed(0)
    vit = transfgu_vit_tiny().eval()
    images = torch.randn(2, 3, 16, 16)
    protos = torch.randn(3, 16)
    cam = gradient_cam(vit, images, protos)
    assert cam.shape == (2, 3, 4, 4)
    # the gradient of L_k = 1 - cos(cls, mu_k) w.r.t. the CLS attention row, computed independently
    out = vit.forward_with_last_attention(images.requires_grad_(True))
    loss = 1 - torch.nn.functional.cosine_similarity(out.tokens[:, 0], protos[0][None], dim=-1)
    (g,) = torch.autograd.grad(loss.sum(), out.attention)
    g = g[:, :, 0, 1:].mean(dim=1).view(2, 4, 4)
    assert (cam[:, 0][g > 0] == 0).all()
    assert (cam[:, 0][g < 0] > 0).all()  # base attention > 0 there, plus any kept evidence
    other = gradient_cam(vit, images, torch.cat([-protos[:1], protos[1:]]))
    assert not torch.allclose(other[:, 0], cam[:, 0])
    torch.testing.assert_close(other[:, 1:], cam[:, 1:])
    assert all(p.grad is None for p in vit.parameters())


def test_targets_and_losses_follow_the_official_formulas():
    pseudo = torch.tensor([[[[0.0, 2.0]], [[4.0, 1.0]]]])  # (1, K=2, 1, 2)
    p_hat = normalise_pseudo_labels(pseudo, things_only=True)
    # min-max over the image: [[0, .5]], [[1, .25]]; background = max(0, 0.1 - max_k) = 0 at both pixels
    torch.testing.assert_close(p_hat, torch.tensor([[[[0.0, 0.0]], [[0.0, 0.5]], [[1.0, 0.25]]]]))
    target, negative = make_targets(p_hat, None)
    assert target.tolist() == [[[2, 1]]] and negative is None
    target, negative = make_targets(p_hat, torch.zeros(1, 3, 1, 2), torch.Generator().manual_seed(0))
    assert negative is not None and target.tolist() == [[[2, 1]]]
    # orthogonal unit class embeddings: L_emb = mean(1 + 0) = 1; uniform logits: margin 1 -> L_unc = 1
    emb = torch.eye(3)[None]
    logits = torch.zeros(1, 3, 1, 2)
    loss, parts = transfgu_losses(logits, emb, target, None, 0.0, things_only=True, p_hat=p_hat)
    assert parts["emb"] == pytest.approx(1.0) and parts["unc"] == pytest.approx(1.0)
    assert parts["cat"] == pytest.approx(float(torch.log(torch.tensor(3.0))))
    assert float(loss) == pytest.approx(parts["cat"] + 0.3 + 1.0)


def test_decoder_maps_tokens_to_class_masks():
    dec = MaskTransformerDecoder(in_dim=16, n_cls=5, dim=8, heads=2)
    assert dec(torch.randn(2, 12, 16), (3, 4)).shape == (2, 5, 3, 4)
    with pytest.raises(ValueError, match="n_cls must be >= 2"):
        MaskTransformerDecoder(in_dim=16, n_cls=1)


def _official_state(prefix: str = "") -> dict:
    """A random state dict with the keys and shapes of DINO's ViT-S/8 (spec §7: 150 tensors)."""
    g = torch.Generator().manual_seed(0)
    shapes = {
        "cls_token": (1, 1, 384),
        "pos_embed": (1, 785, 384),
        "patch_embed.proj.weight": (384, 3, 8, 8),
        "patch_embed.proj.bias": (384,),
        "norm.weight": (384,),
        "norm.bias": (384,),
    }
    for i in range(12):
        b = f"blocks.{i}."
        shapes.update(
            {
                b + "norm1.weight": (384,),
                b + "norm1.bias": (384,),
                b + "attn.qkv.weight": (1152, 384),
                b + "attn.qkv.bias": (1152,),
                b + "attn.proj.weight": (384, 384),
                b + "attn.proj.bias": (384,),
                b + "norm2.weight": (384,),
                b + "norm2.bias": (384,),
                b + "mlp.fc1.weight": (1536, 384),
                b + "mlp.fc1.bias": (1536,),
                b + "mlp.fc2.weight": (384, 1536),
                b + "mlp.fc2.bias": (384,),
            }
        )
    assert len(shapes) == 150
    return {prefix + k: torch.randn(v, generator=g) for k, v in shapes.items()}


@pytest.mark.parametrize("layout", ["backbone", "full"])
def test_load_dino_vit_from_both_public_formats(tmp_path, layout):
    state = _official_state()
    if layout == "full":
        wrapped = {f"module.backbone.{k}": v for k, v in state.items()}
        wrapped["module.head.mlp.0.weight"] = torch.zeros(4, 4)
        obj = {"student": {}, "teacher": wrapped, "epoch": 3}
    else:
        obj = state
    path = tmp_path / "dino.pth"
    torch.save(obj, path)
    vit, report = load_dino_vit(path, arch="vit_small", patch_size=8, img_size=320)
    own = vit.state_dict()
    for key, value in state.items():
        if key != "pos_embed":
            assert torch.equal(own[key], value), key
    assert "pos_embed" in report.resized and own["pos_embed"].shape == (1, 1601, 384)
    with torch.no_grad():
        out = vit.forward_with_last_attention(torch.randn(1, 3, 320, 320))
    assert out.attention.shape == (1, 6, 1601, 1601)


def test_load_dino_vit_rejects_mismatched_shapes():
    state = _official_state()
    state["blocks.0.mlp.fc1.weight"] = torch.zeros(10, 384)
    with pytest.raises(CheckpointError, match="mis-shaped: blocks.0.mlp.fc1.weight"):
        load_dino_vit(state, arch="vit_small", patch_size=8, img_size=224)
    with pytest.raises(ValueError, match="unknown DINO architecture"):
        load_dino_vit(state, arch="vit_huge")


def test_pipeline_is_deterministic_and_label_free(tmp_path):
    """fit() takes images only; two runs with the same seed give identical decoders; save -> load predicts alike."""
    assert list(inspect.signature(TransFGU.fit).parameters) == ["self", "images", "progress"]
    images = make_scenes(8, seed=0, size=16).images
    decoders = []
    for _ in range(2):
        torch.manual_seed(0)
        seg = TransFGU(transfgu_vit_tiny(), PRESETS["smoke"]).fit(images, progress=False)
        decoders.append(seg.decoder.state_dict())
    for key in decoders[0]:
        torch.testing.assert_close(decoders[0][key], decoders[1][key], rtol=0, atol=0)
    labels = seg.predict(images)
    assert labels.shape == (8, 16, 16) and 0 <= labels.min() and labels.max() < 5
    seg.save(tmp_path / "seg.safetensors")
    loaded = TransFGU.load(tmp_path / "seg.safetensors", seg.backbone)
    assert loaded.config == seg.config and torch.equal(loaded.predict(images), labels)
    with pytest.raises(ValueError, match="16-d prototypes but the backbone is 64-d"):
        TransFGU.load(tmp_path / "seg.safetensors", transfgu_vit_tiny(embed_dim=64))
    with pytest.raises(ValueError, match="nothing to save"):
        TransFGU(seg.backbone).save(tmp_path / "empty.safetensors")
    with pytest.raises(ValueError, match="working size 16"):
        seg.predict(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="NaN or inf"):
        seg.predict(torch.full((1, 3, 16, 16), float("nan")))


def test_baselines_and_generators():
    scenes = make_scenes(6, seed=1, size=16)
    assert scenes.masks.max() <= 4 and (scenes.masks == 0).float().mean() > 0.2
    objects = make_objects(6, seed=1, size=16)
    assert objects.labels.max() <= 3
    torch.manual_seed(0)
    vit = transfgu_vit_tiny()
    assert patch_kmeans(vit, scenes.images, scenes.images, 5).shape == (6, 16, 16)
    assert pixel_kmeans(scenes.images, scenes.images, 5).shape == (6, 16, 16)
    with pytest.raises(ValueError, match="need n >= 1"):
        make_scenes(0, seed=0)


def test_bootstrapping_reboots_the_student_and_promotes_it_to_teacher(monkeypatch):
    """Smoke preset: rounds [0, 1) and [1, 2); round 2 starts from the initial weights, its teacher is round 1's
    trained student (spec §5: teacher update + student reboot)."""
    starts, teachers, ends = [], [], []
    original = TransFGU._train_round

    def spy(self, student, teacher, *args):
        starts.append({k: v.clone() for k, v in student.state_dict().items()})
        teachers.append(None if teacher is None else {k: v.clone() for k, v in teacher.state_dict().items()})
        original(self, student, teacher, *args)
        ends.append({k: v.clone() for k, v in student.state_dict().items()})

    monkeypatch.setattr(TransFGU, "_train_round", spy)
    seg = TransFGU(transfgu_vit_tiny(), PRESETS["smoke"])
    seg.train(torch.rand(8, 3, 16, 16), torch.rand(8, 4, 4, 4), progress=False)
    assert len(starts) == 2 and teachers[0] is None
    for key in starts[0]:
        torch.testing.assert_close(starts[1][key], starts[0][key], rtol=0, atol=0)
        torch.testing.assert_close(teachers[1][key], ends[0][key], rtol=0, atol=0)
    assert any(not torch.equal(ends[0][k], starts[0][k]) for k in starts[0])
