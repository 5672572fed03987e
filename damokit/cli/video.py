"""``damokit video train|eval|fuse``: MotionRGBD unimodal training, evaluation and CAPF fusion.

Data sources: ``synth:G``/``synth:B``/``synth:F`` (generated), ``nvgesture`` (the bundled 49-clip pack, first
clip of each class for training, second for testing), or an official split file with ``--root`` and
``--preset`` (unimodal train/eval only: the two modalities of a split file are read separately).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("video", help="MotionRGBD: train, evaluate and fuse RGB-D motion models")
    sub = p.add_subparsers(dest="video_command", metavar="ACTION", required=True)

    def data_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("--data", required=True, help="synth:G | synth:B | synth:F | nvgesture | SPLIT_FILE")
        q.add_argument("--root", type=Path, help="root of the frame folders or videos a split file lists")
        q.add_argument("--preset", default="nvgesture", help="split-file preset: nvgesture, isogd, thuread, ntu")
        q.add_argument("--clips-per-class", type=int, default=32, help="synthetic clips per class")
        q.add_argument("--seed", type=int, default=0)

    q = sub.add_parser("train", help="train a unimodal model (MotionRGBD or the C3D baseline)")
    data_args(q)
    q.add_argument("--modality", choices=["rgb", "depth"], default="rgb")
    q.add_argument("--model", default="motion_rgbd_mini", help="a registered video model")
    q.add_argument("--epochs", type=int, default=12)
    q.add_argument("--lr", type=float, default=2e-3)
    q.add_argument("--distill-weight", type=float, default=1.0, help="lambda_d of the recoupling distillation")
    q.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, metrics, model.safetensors)")
    q.add_argument("--resume", action="store_true")
    q.set_defaults(func=_train)

    q = sub.add_parser("eval", help="evaluate a trained unimodal model on the test part of a data source")
    data_args(q)
    q.add_argument("--checkpoint", type=Path, required=True, help="model.safetensors written by `video train`")
    q.set_defaults(func=_eval)

    q = sub.add_parser("fuse", help="CAPF: fine-tune two trained unimodal models together, compare late fusion")
    data_args(q)
    q.add_argument("--rgb", type=Path, required=True, help="RGB model.safetensors")
    q.add_argument("--depth", type=Path, required=True, help="depth model.safetensors")
    q.add_argument("--epochs", type=int, default=12)
    q.add_argument("--out", type=Path, required=True)
    q.set_defaults(func=_fuse)


def _source(args: argparse.Namespace, modalities: tuple[str, ...]):
    """(train dataset, test dataset, number of classes) for the requested modalities."""
    import torch

    from damokit.video.motion_rgbd.recipe import ClipTensorDataset

    if args.data.startswith("synth:") or args.data == "nvgesture":
        if args.data == "nvgesture":
            from damokit.data.video_lists import load_nvgesture_mini

            pack = load_nvgesture_mini()
            labels = pack["labels"]
            first = torch.tensor([bool((labels[:i] == labels[i]).sum() == 0) for i in range(len(labels))])
            parts = [{k: pack[k][m] for k in ("rgb", "depth", "labels")} for m in (first, ~first)]
            num_classes = 25
        else:
            from damokit.data.synth_rgbd import SPLITS, make_synth_rgbd

            split = args.data.split(":", 1)[1]
            if split not in SPLITS:
                raise ValueError(f"unknown synthetic split {split!r}; use one of {sorted(SPLITS)}")
            train = make_synth_rgbd(split, args.clips_per_class, seed=args.seed)
            test = make_synth_rgbd(split, max(10, args.clips_per_class // 2), seed=10_000)
            parts = [{"rgb": d.rgb, "depth": d.depth, "labels": d.labels} for d in (train, test)]
            num_classes = len(train.classes)
        frames = min(16, parts[0]["rgb"].shape[2])
        datasets = [
            ClipTensorDataset(p["labels"], frames=frames, train=(i == 0), **{m: p[m] for m in modalities})
            for i, p in enumerate(parts)
        ]
        return datasets[0], datasets[1], num_classes
    if len(modalities) != 1:
        raise ValueError("fusion needs an in-memory source (synth:B, nvgesture); split files are read per modality")
    from damokit.data.video_lists import ClipListDataset

    if args.root is None:
        raise ValueError("a split file needs --root, the folder that holds the frames")
    ds = ClipListDataset(args.data, args.root, preset=args.preset, modality=modalities[0], train=True)
    test = ClipListDataset(args.data, args.root, preset=args.preset, modality=modalities[0], train=False)
    return ds, test, 1 + max(e.label for e in ds.entries)


def _save_model(path: Path, model, name: str, overrides: dict) -> None:
    from damokit.engine import save_checkpoint

    save_checkpoint(path, {"model": model.state_dict(), "name": name, "overrides": overrides})


def _load_model(path: Path):
    from damokit.engine import load_checkpoint, load_weights
    from damokit.registry import create_model

    state = load_checkpoint(path)
    if "name" not in state or "overrides" not in state:
        raise ValueError(f"{path} is not a model file written by `damokit video train`")
    model = create_model(state["name"], **state["overrides"])
    load_weights(model, state["model"], source=str(path))
    return model


def _train(args: argparse.Namespace) -> int:
    from damokit.registry import create_model
    from damokit.video.motion_rgbd.recipe import MiniRecipe, accuracy, predict_logits, train_unimodal

    train, test, num_classes = _source(args, (args.modality,))
    clip = train[0][0]
    overrides = {"num_classes": num_classes, "in_chans": clip.shape[0]}
    if args.model.startswith("motion_rgbd"):
        overrides["frames"] = clip.shape[1]
    model = create_model(args.model, **overrides)
    recipe = MiniRecipe(
        epochs=args.epochs, lr=args.lr, distill_weight=args.distill_weight, seed=args.seed, frames=clip.shape[1]
    )
    train_unimodal(model, train, recipe, out_dir=args.out, progress=True)
    _save_model(args.out / "model.safetensors", model, args.model, overrides)
    print(f"test accuracy: {accuracy(predict_logits(model, test), _labels_of(test)):.2f} %")
    print(f"model: {args.out / 'model.safetensors'}  recipe: {dataclasses.asdict(recipe)}")
    return 0


def _labels_of(dataset):
    import torch

    if hasattr(dataset, "labels"):
        return dataset.labels
    return torch.tensor([e.label for e in dataset.entries])


def _eval(args: argparse.Namespace) -> int:
    from damokit.video.motion_rgbd.recipe import accuracy, predict_logits

    model = _load_model(args.checkpoint)
    modality = "rgb" if model.in_chans == 3 else "depth"
    _, test, _ = _source(args, (modality,))
    print(f"test accuracy: {accuracy(predict_logits(model, test), _labels_of(test)):.2f} % ({len(test)} clips)")
    return 0


def _fuse(args: argparse.Namespace) -> int:
    from damokit.video.motion_rgbd.capf import CAPFusion, late_fusion
    from damokit.video.motion_rgbd.recipe import ClipTensorDataset, MiniRecipe, accuracy, predict_logits, train_capf

    rgb, depth = _load_model(args.rgb), _load_model(args.depth)
    train, test, _ = _source(args, ("rgb", "depth"))
    labels = test.labels
    scores = {}
    for name, model, clips in (("rgb", rgb, test.rgb), ("depth", depth, test.depth)):
        single = ClipTensorDataset(labels, frames=test.frames, **{name: clips})
        scores[name] = predict_logits(model, single)
    capf = CAPFusion.from_unimodal(rgb, depth)
    train_capf(
        capf, train, MiniRecipe(epochs=args.epochs, seed=args.seed, frames=test.frames), out_dir=args.out, progress=True
    )
    rows = [
        ("RGB", scores["rgb"]),
        ("depth", scores["depth"]),
        ("late fusion", late_fusion(scores["rgb"], scores["depth"])),
        ("CAPF", predict_logits(capf, test)),
    ]
    for name, s in rows:
        print(f"{name:<12} {accuracy(s, labels):6.2f} %")
    return 0
