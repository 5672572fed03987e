"""``damokit reid train|eval|pretrain|cfs``: TransReID-SSL on the bundled packs or Market-1501 folders.

Data sources (``--data``): ``pku`` (bundled PKU-Reid mini, cross-camera test), ``synthetic`` (the procedural
generator of the miniature), or a Market-1501 root folder with ``bounding_box_train/``, ``query/`` and
``bounding_box_test/`` (file names ``<pid>_c<camera>...``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    top = subparsers.add_parser("reid", help="person re-identification (TransReID-SSL)")
    sub = top.add_subparsers(dest="reid_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", default="pku", help="pku, synthetic, or a Market-1501 root folder")
        p.add_argument("--model", default="transreid_ssl_tiny", help="a registered transreid_ssl_* model")
        p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("train", help="supervised fine-tuning (ID + soft-margin triplet), then evaluation")
    common(p)
    p.add_argument("--init", type=Path, default=None, help="backbone checkpoint (official .pth or damokit)")
    p.add_argument("--epochs", type=int, default=120)
    p.add_argument("--warmup-epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=4e-4, help="base LR (official 4e-4 for batch 64)")
    p.add_argument("--P", type=int, default=16, help="identities per batch")
    p.add_argument("--K", type=int, default=4, help="images per identity")
    p.add_argument("--out", type=Path, required=True, help="folder for the trained model and metrics")
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="mAP and CMC of a trained model on query vs gallery")
    common(p)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.set_defaults(func=_eval)

    p = sub.add_parser("pretrain", help="DINO self-supervised pre-training of the backbone")
    common(p)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--out-dim", type=int, default=1024, help="DINO head output size (official 65536)")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_pretrain)

    p = sub.add_parser("cfs", help="score a pre-training pool by CFS and write the ordered list")
    common(p)
    p.add_argument("--source", type=Path, required=True, help="source proxy checkpoint (short DINO)")
    p.add_argument("--target", type=Path, required=True, help="target proxy checkpoint (fine-tuned)")
    p.add_argument("--keep", choices=["high", "low"], default="high")
    p.add_argument("--keep-ratio", type=float, default=0.5)
    p.add_argument("--out", type=Path, required=True, help="JSON list of image names, most relevant first")
    p.set_defaults(func=_cfs)


def _splits(data: str, size: tuple[int, int], seed: int):
    from damokit.data.reid_synth import synthetic_reid
    from damokit.reid.data import load_image_folder, load_pku_reid, relabel, resize_images

    if data == "pku":
        return load_pku_reid(size)
    if data == "synthetic":
        splits = synthetic_reid(seed=seed)
        return {k: v._replace(images=resize_images(v.images, size)) for k, v in splits.items()}
    root = Path(data)
    if not root.is_dir():
        raise FileNotFoundError(f"--data {data!r} is neither 'pku', 'synthetic' nor an existing folder")
    train = load_image_folder(root / "bounding_box_train", size)
    return {
        "train": train._replace(pids=relabel(train.pids)),
        "query": load_image_folder(root / "query", size),
        "gallery": load_image_folder(root / "bounding_box_test", size),
    }


def _build(name: str, num_classes: int = 1):
    import damokit

    if not name.startswith("transreid_ssl"):
        raise ValueError(
            f"--model must be a transreid_ssl_* model (see `damokit list models 'transreid*'`), got {name!r}"
        )
    return damokit.create_model(name, num_classes=num_classes)


def _load_backbone(path: Path, model) -> None:
    from damokit.engine import CheckpointError, load_checkpoint
    from damokit.reid import load_official

    try:
        source = load_checkpoint(path)["model"] if path.suffix == ".safetensors" else path
        report = load_official(source, model)
    except CheckpointError as err:  # a user error at the CLI: one line, no trace
        raise ValueError(str(err)) from err
    print(f"loaded {len(report.loaded)} backbone tensors from {path} (skipped {len(report.skipped)})")


def _print_scores(scores) -> None:
    print(
        f"mAP {100 * scores.mAP:.2f}  rank-1 {100 * float(scores.cmc[0]):.2f}  rank-5 {100 * float(scores.cmc[4]):.2f}"
    )


def _train(args: argparse.Namespace) -> int:
    import torch

    from damokit.engine import save_checkpoint
    from damokit.reid.train import ReIDRecipe, evaluate_model, train_supervised

    torch.manual_seed(args.seed)
    probe = _build(args.model)
    splits = _splits(args.data, probe.img_size, args.seed)
    train = splits["train"]
    model = _build(args.model, int(train.pids.max()) + 1)
    if args.init is not None:
        _load_backbone(args.init, model)
    recipe = ReIDRecipe(
        epochs=args.epochs, warmup_epochs=args.warmup_epochs, base_lr=args.lr, P=args.P, K=args.K, seed=args.seed
    )
    train_supervised(model, train.images, train.pids, recipe, out_dir=args.out, progress=None)
    path = save_checkpoint(args.out / "model.safetensors", {"model": model.state_dict(), "name": args.model})
    print(f"model: {path}")
    _print_scores(evaluate_model(model, splits["query"]._asdict(), splits["gallery"]._asdict()))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from damokit.reid.train import evaluate_model

    model = _build(args.model)
    _load_backbone(args.checkpoint, model)
    splits = _splits(args.data, model.img_size, args.seed)
    _print_scores(evaluate_model(model, splits["query"]._asdict(), splits["gallery"]._asdict()))
    return 0


def _pool(data: str, size: tuple[int, int], seed: int):
    from damokit.data.reid_synth import synthetic_reid_pool
    from damokit.reid.data import resize_images

    if data == "synthetic":
        images, _ = synthetic_reid_pool(seed=seed)
        return resize_images(images, size), [f"pool_{i:06d}" for i in range(len(images))]
    splits = _splits(data, size, seed)
    return splits["train"].images, [f"train_{i:06d}" for i in range(len(splits["train"].images))]


def _pretrain(args: argparse.Namespace) -> int:
    import torch

    from damokit.engine import TrainConfig, save_checkpoint
    from damokit.nn.dino import DINO, MultiCropAugment, fit_dino

    torch.manual_seed(args.seed)
    model = _build(args.model)
    H, W = model.img_size
    images, _ = _pool(args.data, (H, W), args.seed)
    steps = args.epochs * (len(images) // args.batch_size)
    aug = MultiCropAugment(global_size=(H, W), local_size=(H // 2, W // 2), n_local=4)
    dino = DINO(
        model.base, total_steps=max(steps, 1), augment=aug, out_dim=args.out_dim, hidden_dim=512, bottleneck_dim=128
    )
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer="adamw",
        weight_decay=0.04,
        schedule="cosine",
        warmup_steps=steps // 10,
        min_lr_ratio=1e-3,
        grad_clip=3.0,
        grad_clip_per_parameter=True,  # official DINO clip_gradients
        seed=args.seed,
        progress=None,
    )
    fit_dino(dino, images, config, out_dir=args.out)
    state = {f"base.{k}": v for k, v in dino.teacher_backbone().state_dict().items()}
    path = save_checkpoint(args.out / "teacher_backbone.safetensors", {"model": state, "name": args.model})
    print(f"teacher backbone: {path}")
    return 0


def _cfs(args: argparse.Namespace) -> int:
    from damokit.selection.cfs import cfs_scores, select_by_cfs, write_cfs_list

    src, tgt = _build(args.model), _build(args.model)
    _load_backbone(args.source, src)
    _load_backbone(args.target, tgt)
    images, names = _pool(args.data, src.img_size, args.seed)
    scores = cfs_scores(src.base, tgt.base, images)
    kept = select_by_cfs(scores, keep_ratio=args.keep_ratio, keep=args.keep)
    write_cfs_list(names, scores, args.out, keep=args.keep)
    print(f"scored {len(names)} images; keeping {len(kept)} ({args.keep} CFS); list: {args.out}")
    return 0
