"""Miniature reproduction of TransFGU (arXiv 2112.01515): top-down vs bottom-up on SynthShapes (spec §9).

Claim (spec §9): with the same frozen backbone, top-down segmentation (image-level [CLS] concepts -> gradient-CAM
pseudo labels -> bootstrapped decoder) beats bottom-up clustering of the backbone's patch features, in scenes
where shapes (the classes) share textures and colours.

``--quick`` (about a minute on an idle 2-core CPU, ~70 CPU-seconds, one thread): a SUP-PRE backbone (supervised
on the separate single-object set, a documented fallback) for a few hundred steps, its gate, then TransFGU-mini vs
patch k-means vs pixel k-means vs the trivial all-background prediction on 400 training / 300 test scenes,
CAM pseudo-label quality and the decoder's gain, one seed. With so few steps the backbone usually fails the gate
(1-NN >= 0.6), so the comparison is then reported but marked not interpretable.

Full mode (three to four hours on one thread, progress bars; a DINO backbone alone took ~35 min with other jobs
on the cores): per seed (3 seeds, one backbone per seed) a DINO (label-free, faithful) backbone and a SUP-PRE
backbone with their gates, the comparison for both; plus the real row: a tiny ViT pre-trained with DINO on
CIFAR-10-mini and COCO128 train crops, then TransFGU (12 things + 15 stuff concepts) vs patch k-means on the
COCO128 val masks at the 27 supercategories (64 x 64 working size). Each (variant, seed) unit and the real row
are logged in ``out_dir`` and their pre-trainings checkpoint every 100 steps, so a rerun into the same folder
continues a killed run.

The paper's tables could not be read (spec §0); its headline numbers (official README) are shown beside ours
but are not comparable (ViT-S/8 DINO on ImageNet, COCO-Stuff, 320 px).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from damokit.data.synth_shapes import make_objects, make_scenes
from damokit.engine.probes import MeanStd, mean_std
from damokit.nn.vit import VisionTransformer
from damokit.registry import register_reproduction
from damokit.reproduce.result import ClaimRow, ReproResult, Verdict, conditions, verdict_from
from damokit.reproduce.runlog import RunLog, digest
from damokit.segmentation import confusion_matrix, segmentation_scores
from damokit.segmentation.transfgu import PRESETS, TransFGU, patch_kmeans, pixel_kmeans
from damokit.segmentation.transfgu.backbone import (
    GateScores,
    backbone_gate,
    pretrain_config,
    pretrain_dino,
    pretrain_supervised,
    transfgu_vit_mini,
)
from damokit.segmentation.transfgu.losses import normalise_pseudo_labels

__all__ = ["run"]

N_CLASSES = 5  # background + 4 shapes
CHECKPOINT_EVERY = 100  # full-mode pre-training steps between checkpoints (a backbone is 2,500-3,000 steps)
GATE_MIN = 0.6  # spec §9.2: the comparison is interpreted only if 1-NN shape accuracy >= 0.6 (chance 0.25)
MARGIN = 5.0  # spec §9.4: TransFGU mIoU >= max(patch k-means, trivial) + 5 points
PAPER = {  # official README table (spec §6): mIoU / pAcc, %
    "COCO-Stuff-27": (16.19, 44.52),
    "COCO-Stuff-171": (11.93, 34.32),
    "Pascal VOC": (37.15, 83.59),
}
METHODS = ("transfgu", "patch_kmeans", "pixel_kmeans", "trivial")
LABELS = {
    "transfgu": "TransFGU-mini",
    "patch_kmeans": "patch k-means",
    "pixel_kmeans": "pixel k-means",
    "trivial": "all background",
}


@dataclass(frozen=True)
class _Plan:
    seeds: tuple[int, ...]
    n_objects: int  # backbone pre-training images (spec: 4,000-8,000)
    sup_steps: int  # SUP-PRE optimizer steps
    sup_batch: int
    sup_lr: float
    ssl_steps: int  # DINO steps; 0 skips the SSL variant
    n_train: int  # training scenes (spec: 400-1000)
    n_test: int  # test scenes (spec: 300)
    real_steps: int  # DINO steps of the real-data backbone; 0 skips the COCO128 row


# quick: batch 32 at lr 3e-3 gave a better gate than batch 64 at the same CPU cost (1-NN 0.33 vs 0.26-0.29)
QUICK = _Plan(
    seeds=(0,), n_objects=3000, sup_steps=400, sup_batch=32, sup_lr=3e-3, ssl_steps=0, n_train=400, n_test=300,
    real_steps=0,
)  # fmt: skip
FULL = _Plan(
    seeds=(0, 1, 2), n_objects=8000, sup_steps=2500, sup_batch=64, sup_lr=2e-3, ssl_steps=2500, n_train=1000,
    n_test=300, real_steps=3000,
)  # fmt: skip


def _scores(target: torch.Tensor, pred: torch.Tensor, n: int = N_CLASSES):
    return segmentation_scores(confusion_matrix(target, pred, n))


def _checkpointing(config, checkpoint_dir: Path | None) -> dict:
    """``fit`` settings that checkpoint a full-mode pre-training every ``CHECKPOINT_EVERY`` steps and resume it."""
    if checkpoint_dir is None:
        return {"config": config}
    config = dataclasses.replace(config, checkpoint_every=CHECKPOINT_EVERY)
    return {"config": config, "out_dir": checkpoint_dir, "resume": True}


def _pretrain(
    variant: str, plan: _Plan, seed: int, progress: bool, checkpoint_dir: Path | None = None
) -> VisionTransformer:
    """The (variant, seed) backbone; with ``checkpoint_dir`` the pre-training checkpoints and continues there."""
    objects = make_objects(plan.n_objects, seed=10_000 + seed)
    torch.manual_seed(seed)
    vit = transfgu_vit_mini()
    if variant == "sup":
        config = pretrain_config("sup", plan.sup_steps, len(objects.images), batch_size=plan.sup_batch,
                                 lr=plan.sup_lr, seed=seed, progress=progress)  # fmt: skip
    else:
        config = pretrain_config("dino", plan.ssl_steps, len(objects.images), seed=seed, progress=progress)
    if variant == "sup":
        pretrain_supervised(vit, objects.images, objects.labels, **_checkpointing(config, checkpoint_dir))
    else:
        pretrain_dino(vit, objects.images, **_checkpointing(config, checkpoint_dir))
    return vit.eval()


def _pseudo_label_maps(pseudo: torch.Tensor, size: int) -> torch.Tensor:
    """argmax of the things-only targets (background channel 0), bilinearly upsampled like the predictions."""
    p_hat = normalise_pseudo_labels(pseudo, things_only=True)  # (N, K + 1, h, w)
    return F.interpolate(p_hat, size=(size, size), mode="bilinear").argmax(dim=1)


def _synth_run(vit: VisionTransformer, plan: _Plan, seed: int, progress: bool) -> dict:
    """Every method of spec §9.3 on one seed's scenes; returns metrics and a few predictions for the panel."""
    train = make_scenes(plan.n_train, seed=20_000 + seed)
    test = make_scenes(plan.n_test, seed=30_000 + seed)
    seg = TransFGU(vit, dataclasses.replace(PRESETS["mini"], seed=seed))
    seg.discover(train.images)
    pseudo = seg.pseudo_labels(train.images)
    seg.train(train.images, pseudo, progress=progress)
    preds = {
        "transfgu": seg.predict(test.images),
        "patch_kmeans": patch_kmeans(vit, train.images, test.images, N_CLASSES, seed=seed),
        "pixel_kmeans": pixel_kmeans(train.images, test.images, N_CLASSES, seed=seed),
        "trivial": torch.zeros_like(test.masks),
    }
    out = {}
    for name, pred in preds.items():
        s = _scores(test.masks, pred)
        out[name] = (s.miou, s.pixel_accuracy)
    cam = _scores(train.masks, _pseudo_label_maps(pseudo, train.images.shape[-1]))
    decoder_train = _scores(train.masks, seg.predict(train.images))
    out["cam_train"] = (cam.miou, cam.pixel_accuracy)
    out["decoder_train"] = (decoder_train.miou, decoder_train.pixel_accuracy)
    mapping = torch.tensor(_scores(test.masks, preds["transfgu"]).mapping)
    patch_map = torch.tensor(_scores(test.masks, preds["patch_kmeans"]).mapping)
    panel = (test.images[:6], test.masks[:6], mapping[preds["transfgu"][:6]], patch_map[preds["patch_kmeans"][:6]])
    return {"metrics": out, "panel": panel}


_PANEL = ("images", "masks", "transfgu", "patch_kmeans")


def _plan_key(plan: _Plan) -> str:
    return json.dumps(dataclasses.asdict(plan), sort_keys=True)


def _checkpoint_dir(log: RunLog, unit: str, plan: _Plan) -> Path | None:
    """Where a full-mode unit's pre-training checkpoints (named by the plan's digest), or None (quick)."""
    return None if log.path is None else log.path.parent / "checkpoints" / f"{unit}_{digest(plan)}"


def _synth_unit(variant: str, plan: _Plan, seed: int, progress: bool, log: RunLog, out_dir: Path):
    """Backbone pre-training, its gate and every method on one seed's scenes, or their logged results.

    A logged unit's panel of predictions is read back from the safetensors file written beside the log.
    """
    from safetensors.torch import load_file, save_file

    key = f"synth|{variant}|seed {seed}|{_plan_key(plan)}"
    panel_file = out_dir / f"panel_{variant}_seed{seed}.safetensors"
    logged = log.get(key)
    if logged is not None and panel_file.is_file():
        panel = load_file(panel_file)
        return GateScores(*logged["gate"]), {"metrics": logged["metrics"], "panel": tuple(panel[k] for k in _PANEL)}
    checkpoints = _checkpoint_dir(log, f"{variant}_seed{seed}", plan)
    vit = _pretrain(variant, plan, seed, progress, checkpoints)
    held = make_objects(1000, seed=40_000 + seed)
    gate = backbone_gate(vit, held.images, held.labels, seed=seed)
    synth = _synth_run(vit, plan, seed, progress)
    if log.path is not None:
        save_file({k: t.contiguous() for k, t in zip(_PANEL, synth["panel"])}, panel_file)
        log.record(key, {"gate": [gate.nn_accuracy, gate.kmeans_ari], "metrics": synth["metrics"]})
        shutil.rmtree(checkpoints, ignore_errors=True)  # logged: the pre-training checkpoints are spent
    return gate, synth


def _stats(runs: list[dict], key: str) -> tuple[MeanStd, MeanStd]:
    return mean_std([r["metrics"][key][0] for r in runs]), mean_std([r["metrics"][key][1] for r in runs])


def _fmt(m: MeanStd) -> str:
    return f"{m.mean:.1f} ± {m.std:.1f}"


def _beats(a: MeanStd, b: MeanStd, margin: float) -> bool:
    """Spec §9.4 rule: mean ahead by ``margin`` and the ±1 std intervals do not overlap."""
    return a.mean >= b.mean + margin and a.mean - a.std > b.mean + b.std


def _synth_rows(variant: str, gates: list, runs: list[dict]) -> list[ClaimRow]:
    name = {"sup": "SUP-PRE (supervised on the object set; fallback)", "ssl": "DINO SSL (faithful)"}[variant]
    nn_acc = mean_std([g.nn_accuracy for g in gates])
    ari = mean_std([g.kmeans_ari for g in gates])
    gate_ok = nn_acc.mean >= GATE_MIN
    gate_note = "" if gate_ok else "gate failed: comparison not interpretable (spec §9.2)"
    seeds = f"{len(runs)} seed(s)"
    miou = {m: _stats(runs, m)[0] for m in (*METHODS, "cam_train", "decoder_train")}
    pacc = {m: _stats(runs, m)[1] for m in (*METHODS, "cam_train", "decoder_train")}
    floor = max(miou["patch_kmeans"], miou["trivial"], key=lambda m: m.mean)
    rows = [
        ClaimRow(
            claim=f"{name}: backbone gate ([CLS] separates shapes)",
            metric="1-NN shape accuracy (chance 0.25) | k-means ARI, 1,000 held-out objects",
            paper=f"1-NN >= {GATE_MIN}",
            source="spec §9.2",
            ours=f"{nn_acc} | {ari}",
            verdict=verdict_from(gate_ok),
        ),
        ClaimRow(
            claim=f"{name}: top-down TransFGU-mini beats bottom-up (headline)",
            metric=f"test mIoU, Hungarian over 5 classes, mean ± std over {seeds}",
            paper=f">= max(patch k-means, trivial) + {MARGIN:.0f}",
            source="spec §9.4",
            ours=" | ".join(f"{LABELS[m]} {_fmt(miou[m])}" for m in METHODS),
            verdict=verdict_from(_beats(miou["transfgu"], floor, MARGIN), comparable=gate_ok),
            note=gate_note or "pAcc: " + " | ".join(f"{LABELS[m]} {_fmt(pacc[m])}" for m in METHODS),
        ),
        ClaimRow(
            claim=f"{name}: CAM pseudo labels on training scenes beat patch k-means",
            metric="mIoU of argmax pseudo labels (train) vs patch k-means (test)",
            paper="CAM > patch k-means",
            source="spec §9.4",
            ours=f"CAM {_fmt(miou['cam_train'])} (pAcc {_fmt(pacc['cam_train'])}) vs {_fmt(miou['patch_kmeans'])}",
            verdict=verdict_from(miou["cam_train"].mean > miou["patch_kmeans"].mean, comparable=gate_ok),
            note=gate_note,
        ),
        ClaimRow(
            claim=f"{name}: decoder gain over its own pseudo labels (self-training + bootstrapping)",
            metric="mIoU on training scenes: decoder - CAM pseudo labels (no threshold)",
            paper=None,
            source="spec §9.4",
            ours=f"{miou['decoder_train'].mean - miou['cam_train'].mean:+.1f} "
            f"(decoder {_fmt(miou['decoder_train'])}, pAcc {_fmt(pacc['decoder_train'])})",
            verdict=verdict_from(miou["decoder_train"].mean > miou["cam_train"].mean, comparable=gate_ok),
            note="; ".join(filter(None, (gate_note, "holds = positive gain"))),
        ),
    ]
    if miou["patch_kmeans"].mean > miou["transfgu"].mean:
        rows[1].note += "; bottom-up patch k-means wins here (spec §9.4 allows it: contextual tokens)"
    return rows


def _paper_rows(ours_miou: MeanStd, ours_pacc: MeanStd) -> list[ClaimRow]:
    return [
        ClaimRow(
            claim=f"TransFGU on {setting} (paper) vs TransFGU-mini on SynthShapes (ours)",
            metric="mIoU / pAcc, %",
            paper=f"{m:.2f} / {p:.2f}",
            source="official README (spec §6)",
            ours=f"{_fmt(ours_miou)} / {_fmt(ours_pacc)}",
            verdict=Verdict.NOT_COMPARABLE,
            note="different data, backbone (ViT-S/8 DINO, ImageNet) and scale",
        )
        for setting, (m, p) in PAPER.items()
    ]


def _real_row(plan: _Plan, seed: int, progress: bool, checkpoint_dir: Path | None = None) -> ClaimRow:
    """Tiny ViT with DINO on CIFAR-10-mini + COCO128 train crops, then TransFGU vs patch k-means (27 classes)."""
    from damokit.data.coco128_stuff import load_coco128_stuff
    from damokit.data.images import load_cifar10_mini

    size = 64  # working size: 16 x 16 tokens with the stride-4 stem
    train, val = load_coco128_stuff("train"), load_coco128_stuff("val")
    # 64 px windows at stride 32 of the 128 px train images (9 per image), resized to CIFAR's 32 px
    crops = F.unfold(train.images, 64, stride=32).view(len(train.images), 3, 64, 64, -1)
    crops = crops.permute(0, 4, 1, 2, 3).reshape(-1, 3, 64, 64)
    photos = torch.cat([load_cifar10_mini("train").x, F.interpolate(crops, size=32, mode="bilinear", antialias=True)])
    torch.manual_seed(seed)
    vit = transfgu_vit_mini()
    config = pretrain_config("dino", plan.real_steps, len(photos), seed=seed, progress=progress)
    pretrain_dino(vit, photos, **_checkpointing(config, checkpoint_dir))
    x_train = F.interpolate(train.images, size=size, mode="bilinear", antialias=True)
    x_val = F.interpolate(val.images, size=size, mode="bilinear", antialias=True)
    y_val = F.interpolate(val.masks[:, None].float(), size=size, mode="nearest")[:, 0].long()  # spec §6: GT nearest
    cfg = dataclasses.replace(
        PRESETS["mini"],
        n_things=12,
        n_stuff=15,
        window_scales=(0.5, 0.4, 0.3, 0.2),
        crop_size=size,
        train_size=size // 2,
        bootstrap_start=2,
        bootstrap_intervals=(2,),
        seed=seed,
    )
    seg = TransFGU(vit.eval(), cfg).fit(x_train, progress=progress)
    top = _scores(y_val, seg.predict(x_val), 27)
    bottom = _scores(y_val, patch_kmeans(vit, x_train, x_val, 27, seed=seed), 27)
    m, p = PAPER["COCO-Stuff-27"]
    return ClaimRow(
        claim="COCO128 (real photos): TransFGU beats patch k-means on the same self-supervised tiny ViT",
        metric="val mIoU / pAcc, Hungarian over 27 supercategories, 64 px",
        paper=f"COCO-Stuff-27: {m:.2f} / {p:.2f}",
        source="official README (spec §6, §9.6)",
        ours=f"TransFGU {top.miou:.1f} / {top.pixel_accuracy:.1f} | patch k-means "
        f"{bottom.miou:.1f} / {bottom.pixel_accuracy:.1f}",
        verdict=verdict_from(top.miou > bottom.miou),
        note=f"seed {seed}; panoptic merged stuff classes, 100 train / 100 val images: not comparable with the paper",
    )


def _plot(panel, out_dir: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images, masks, ours, patch = panel
    cols = (("image", None), ("ground truth", masks), ("TransFGU-mini", ours), ("patch k-means", patch))
    fig, axes = plt.subplots(len(images), len(cols), figsize=(2.0 * len(cols), 2.0 * len(images)), squeeze=False)
    for i in range(len(images)):
        for j, (name, maps) in enumerate(cols):
            ax = axes[i, j]
            if maps is None:
                ax.imshow(images[i].permute(1, 2, 0).numpy())
            else:  # matched to ground-truth classes by Hungarian, so colours agree across columns
                ax.imshow(maps[i].numpy(), cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = out_dir / "transfgu_panel.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


@register_reproduction("transfgu", paper="2112.01515")
def run(quick: bool, out_dir: Path) -> ReproResult:
    """TransFGU-mini vs patch/pixel k-means on SynthShapes (spec §9); full mode (1-2 h) adds DINO and COCO128.

    Quick: SUP-PRE backbone, one seed. Full: DINO and SUP-PRE backbones, 3 seeds, the COCO128 real row.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = QUICK if quick else FULL
    progress = not quick
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 8 x 8-token batches: a second thread costs more in hand-offs than it gains
    start = time.perf_counter()
    log = RunLog(None if quick else out_dir)  # full mode: a rerun into the same folder skips finished seeds
    rows: list[ClaimRow] = []
    seconds: dict[str, float] = {}
    panel = None
    try:
        variants = ("ssl", "sup") if plan.ssl_steps else ("sup",)
        for variant in variants:
            t0 = time.perf_counter()
            gates, runs = [], []
            for seed in plan.seeds:
                gate, synth = _synth_unit(variant, plan, seed, progress, log, out_dir)
                gates.append(gate)
                runs.append(synth)
            rows += _synth_rows(variant, gates, runs)
            seconds[variant] = round(time.perf_counter() - t0, 1)
            if variant == "sup":
                panel = runs[0]["panel"]
                rows += _paper_rows(*_stats(runs, "transfgu"))
        if plan.real_steps:
            t0 = time.perf_counter()
            key = f"coco128|seed {plan.seeds[0]}|{_plan_key(plan)}"
            checkpoints = _checkpoint_dir(log, "coco128", plan)
            real = log.get_or_run(
                key, lambda: dataclasses.asdict(_real_row(plan, plan.seeds[0], progress, checkpoints))
            )
            if checkpoints is not None:
                shutil.rmtree(checkpoints, ignore_errors=True)
            rows.append(ClaimRow(**{**real, "verdict": Verdict(real["verdict"])}))
            seconds["coco128"] = round(time.perf_counter() - t0, 1)
    finally:
        torch.set_num_threads(threads)
    plot = _plot(panel, out_dir, "SynthShapes test scenes (SUP-PRE backbone, seed 0); colours = matched classes")
    return ReproResult(
        paper="transfgu",
        title="TransFGU: Top-down Unsupervised Semantic Segmentation",
        rows=rows,
        conditions=conditions(
            seed=list(plan.seeds),
            plan=dataclasses.asdict(plan),
            seconds=seconds,
            total_seconds=round(time.perf_counter() - start, 1),
            threads_used=1,
            backbone="transfgu_vit_mini (dim 64, depth 4, 4 heads, conv stem, 8 x 8 tokens), one per seed",
        ),
        plots=[plot],
        notes=(
            "Spec §9 miniature. SUP-PRE trains the backbone with shape labels of the separate single-object set "
            "(never target-scene labels): a documented deviation from the paper's self-supervised prior. TransFGU "
            "and every baseline use the same frozen backbone; ground truth is used only for Hungarian evaluation. "
            "Quick mode trains the backbone for few steps, so its gate and comparison are weak evidence; full mode "
            "runs the faithful DINO variant (the spec's prototypes saw SSL fail the gate) and SUP-PRE, 3 seeds."
        ),
    )
