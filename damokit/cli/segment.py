"""``damokit segment pretrain|discover|train|eval``: TransFGU unsupervised segmentation on a frozen mini ViT.

    damokit segment pretrain --data synth --variant sup --steps 1500 --out runs/seg/backbone.safetensors
    damokit segment discover --backbone runs/seg/backbone.safetensors --data synth --out runs/seg/concepts.safetensors
    damokit segment train --backbone runs/seg/backbone.safetensors --concepts runs/seg/concepts.safetensors \\
        --data synth --out runs/seg/transfgu.safetensors
    damokit segment eval --backbone runs/seg/backbone.safetensors --model runs/seg/transfgu.safetensors --data synth

``--data`` is ``synth`` (SynthShapes: objects for ``pretrain``, scenes otherwise), ``coco128`` (the shipped COCO128
masks at 27 supercategories) or an ``.npz`` with ``image`` (N, H, W, 3) uint8 and, for ``eval``, ``mask`` (N, H, W)
class indices with -1 for unlabeled. Images are resized to ``--size`` (a multiple of 4). Labels are read only by
``eval`` (and by ``pretrain --variant sup`` on SynthShapes objects, the documented SUP-PRE fallback).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "segment",
        help="TransFGU unsupervised segmentation (pretrain, discover, train, eval)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--data", required=True, help="synth, coco128 or FILE.npz (see `damokit segment --help`)")
        q.add_argument("--n", type=int, default=400, help="SynthShapes images/scenes to generate")
        q.add_argument("--split", default="train", help="coco128 split: train, val or all")
        q.add_argument("--size", type=int, default=32, help="working size the images are resized to")
        q.add_argument("--seed", type=int, default=0)

    q = sub.add_parser("pretrain", help="pre-train the conv-stem mini ViT (DINO, or SUP-PRE on SynthShapes objects)")
    common(q)
    q.add_argument("--variant", choices=["dino", "sup"], default="dino")
    q.add_argument("--steps", type=int, default=1500)
    q.add_argument("--batch-size", type=int, default=64)
    q.add_argument("--lr", type=float, default=None, help="AdamW peak lr (default: 5e-4 dino, 2e-3 sup)")
    q.add_argument("--gate", type=int, default=1000, help="held-out SynthShapes objects for the gate (0: skip)")
    q.add_argument("--out", type=Path, required=True, help="backbone checkpoint (.safetensors)")
    q.set_defaults(func=_pretrain)

    q = sub.add_parser("discover", help="concept bank from crops + k-means prototypes")
    common(q)
    _model_args(q)
    q.add_argument("--out", type=Path, required=True, help="concepts checkpoint (.safetensors)")
    q.set_defaults(func=_discover)

    q = sub.add_parser("train", help="CAM pseudo labels + bootstrapped decoder")
    common(q)
    _model_args(q)
    q.add_argument("--concepts", type=Path, default=None, help="from `discover` (default: discover now)")
    q.add_argument("--epochs", type=int, default=None, help="override the preset's decoder epochs")
    q.add_argument("--out", type=Path, required=True, help="TransFGU checkpoint (.safetensors)")
    q.set_defaults(func=_train)

    q = sub.add_parser("eval", help="Hungarian mIoU / pixel accuracy against ground-truth masks")
    common(q)
    q.add_argument("--backbone", type=Path, required=True)
    q.add_argument("--model", type=Path, required=True, help="from `train`")
    q.add_argument("--json", type=Path, default=None, help="also write the scores here")
    q.set_defaults(func=_eval)


def _model_args(q: argparse.ArgumentParser) -> None:
    q.add_argument("--backbone", type=Path, required=True, help="from `segment pretrain`")
    q.add_argument("--preset", default="mini", help="TransFGU preset: smoke, mini or coco27")
    q.add_argument("--things", type=int, default=None, help="K_things (default: the preset's)")
    q.add_argument("--stuff", type=int, default=None, help="K_stuff; 0 = things-only with a background channel")


def _images(args: argparse.Namespace, *, objects: bool = False, need_masks: bool = False):
    """(images (N, 3, S, S) in [0, 1], masks (N, S, S) or None, labels or None, number of mask classes)."""
    import numpy as np
    import torch
    from torch.nn import functional as F

    from damokit.data.images import to_nchw_float

    masks = labels = None
    n_classes = 0
    if args.data == "synth":
        from damokit.data.synth_shapes import make_objects, make_scenes

        data = (make_objects if objects else make_scenes)(args.n, seed=args.seed, size=args.size)
        images, masks, labels, n_classes = data.images, None if objects else data.masks, data.labels, 5
    elif args.data == "coco128":
        from damokit.data.coco128_stuff import load_coco128_stuff

        data = load_coco128_stuff(args.split)
        images, masks, n_classes = data.images, data.masks, len(data.classes)
    else:
        path = Path(args.data)
        if path.suffix != ".npz" or not path.is_file():
            raise FileNotFoundError(f"--data {args.data!r} is neither synth, coco128 nor an existing .npz file")
        with np.load(path, allow_pickle=False) as pack:
            if "image" not in pack.files:
                raise ValueError(f"{path} has no 'image' array (N, H, W, 3) uint8; it holds {sorted(pack.files)}")
            images = to_nchw_float(pack["image"])
            if "mask" in pack.files:
                masks = torch.as_tensor(pack["mask"].astype(np.int64))
                n_classes = int(masks.max()) + 1
    if need_masks and masks is None:
        raise ValueError(f"--data {args.data} has no masks to evaluate against (an .npz needs a 'mask' array)")
    if args.size % 4:
        raise ValueError(f"--size must be a multiple of the backbone's stride 4, got {args.size}")
    if images.shape[-1] != args.size or images.shape[-2] != args.size:
        images = F.interpolate(images, size=(args.size, args.size), mode="bilinear", antialias=True)
        if masks is not None:  # spec §6: ground truth resized with nearest neighbour
            masks = F.interpolate(masks[:, None].float(), size=(args.size, args.size), mode="nearest")[:, 0].long()
    return images, masks, labels, n_classes


def _load_backbone(path: Path):
    from damokit import create_model
    from damokit.engine import load_checkpoint, load_weights

    if not path.is_file():
        raise FileNotFoundError(f"--backbone {path} does not exist; create it with `damokit segment pretrain`")
    state = load_checkpoint(path)
    vit = create_model(state["meta"]["arch"], embed_dim=state["meta"]["embed_dim"])
    load_weights(vit, state["model"], source=str(path))
    return vit.eval()


def _config(args: argparse.Namespace):
    from damokit.segmentation.transfgu import PRESETS

    if args.preset not in PRESETS:
        raise ValueError(f"--preset {args.preset!r} is unknown; choose from {sorted(PRESETS)}")
    base = PRESETS[args.preset]
    over = {"crop_size": args.size, "train_size": min(base.train_size, args.size), "seed": args.seed}
    if args.things is not None:
        over["n_things"] = args.things
    if args.stuff is not None:
        over["n_stuff"] = args.stuff
    if getattr(args, "epochs", None) is not None:
        over["epochs"] = args.epochs
    return dataclasses.replace(base, **over)


def _pretrain(args: argparse.Namespace) -> int:
    import torch

    from damokit.engine import save_checkpoint
    from damokit.segmentation.transfgu.backbone import (
        backbone_gate,
        pretrain_config,
        pretrain_dino,
        pretrain_supervised,
        transfgu_vit_mini,
    )

    images, _, labels, _ = _images(args, objects=True)
    if args.variant == "sup" and labels is None:
        raise ValueError("--variant sup needs shape labels: use --data synth (SynthShapes objects)")
    torch.manual_seed(args.seed)
    vit = transfgu_vit_mini()
    config = pretrain_config(
        args.variant, args.steps, len(images), batch_size=args.batch_size, lr=args.lr, seed=args.seed, progress=True
    )
    if args.variant == "sup":
        pretrain_supervised(vit, images, labels, config)
    else:
        pretrain_dino(vit, images, config)
    meta = {"arch": "transfgu_vit_mini", "embed_dim": vit.embed_dim, "variant": args.variant, "steps": args.steps}
    save_checkpoint(args.out, {"model": vit.state_dict(), "meta": meta})
    print(f"backbone ({args.variant}, {args.steps} steps): {args.out}")
    if args.data == "synth" and args.gate > 0:
        from damokit.data.synth_shapes import make_objects

        held = make_objects(args.gate, seed=args.seed + 40_000, size=args.size)
        gate = backbone_gate(vit, held.images, held.labels, seed=args.seed)
        print(
            f"gate: 1-NN shape accuracy {gate.nn_accuracy:.3f} (chance 0.25, need 0.6), "
            f"k-means ARI {gate.kmeans_ari:.3f}"
        )
    return 0


def _discover(args: argparse.Namespace) -> int:
    from damokit.segmentation.transfgu import TransFGU

    images, _, _, _ = _images(args)
    seg = TransFGU(_load_backbone(args.backbone), _config(args))
    prototypes = seg.discover(images)
    seg.save(args.out)
    print(f"{len(prototypes)} concepts from {len(images)} images: {args.out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from damokit.segmentation.transfgu import TransFGU

    images, _, _, _ = _images(args)
    backbone = _load_backbone(args.backbone)
    if args.concepts is None:
        seg = TransFGU(backbone, _config(args))
        seg.discover(images)
    else:
        if not args.concepts.is_file():
            raise FileNotFoundError(f"--concepts {args.concepts} does not exist; create it with `segment discover`")
        seg = TransFGU.load(args.concepts, backbone)
        if args.epochs is not None:
            seg.config = dataclasses.replace(seg.config, epochs=args.epochs)
    seg.train(images, seg.pseudo_labels(images), progress=True)
    seg.save(args.out)
    print(f"decoder trained on {len(images)} images ({seg.config.epochs} epochs): {args.out}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from damokit.segmentation import confusion_matrix, segmentation_scores
    from damokit.segmentation.transfgu import TransFGU

    if not args.model.is_file():
        raise FileNotFoundError(f"--model {args.model} does not exist; create it with `damokit segment train`")
    images, masks, _, n_gt = _images(args, need_masks=True)
    seg = TransFGU.load(args.model, _load_backbone(args.backbone))
    if seg.decoder is None:
        raise ValueError(f"{args.model} holds concepts only; train a decoder with `damokit segment train`")
    n = max(n_gt, seg.config.n_cls)
    scores = segmentation_scores(confusion_matrix(masks, seg.predict(images), n))
    print(f"mIoU {scores.miou:.2f}  pixel accuracy {scores.pixel_accuracy:.2f}  ({len(images)} images, {n} classes)")
    if args.json is not None:
        args.json.write_text(json.dumps({"miou": scores.miou, "pixel_accuracy": scores.pixel_accuracy}))
    return 0
