"""``damokit finetune joint``: fine-tune a backbone on a target set plus selected pre-training classes.

Target and source data are a named pack or an ``.npz`` with ``x`` and ``y`` (see ``damokit pretrain``); the
selected source classes come from ``damokit select ... --out selected.txt``.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("finetune", help="fine-tuning with selected pre-training data (arXiv 2111.12292)")
    sub = p.add_subparsers(dest="mode", metavar="MODE", required=True)
    q = sub.add_parser("joint", help="backbone + target head + source head: CE_t + lam * CE_s")
    q.add_argument("--model", default="convnet_small", help="registered backbone (damokit list models)")
    q.add_argument("--weights", type=Path, default=None, help="pre-trained backbone (encoder.safetensors)")
    q.add_argument("--target", required=True, help="target data: a named pack or an .npz with x and y")
    q.add_argument("--test-fraction", type=float, default=0.5, help="seeded share of the target held out for test")
    q.add_argument("--source", default=None, help="pre-training data (named pack or .npz); omit: target only")
    q.add_argument("--selected", type=Path, default=None, help="class ids to keep from --source, one per line")
    q.add_argument("--lam", type=float, default=1.0, help="source-loss weight (official: 0.3 sup., 1.0 MoCo)")
    q.add_argument("--mu", type=float, default=1.0, help="source batch = mu x target batch")
    q.add_argument("--epochs", type=int, default=30, help="passes over the target training set")
    q.add_argument("--batch-size", type=int, default=32)
    q.add_argument("--lr", type=float, default=0.01, help="backbone LR (heads x10), SGD Nesterov, cosine")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out", type=Path, default=None, help="run folder (default: runs/finetune-<time>)")
    q.set_defaults(func=_joint)


def _joint(args: argparse.Namespace) -> int:
    import torch

    from damokit import create_model
    from damokit.cli.pretrain import load_image_data
    from damokit.data.images import seeded_split
    from damokit.engine import TrainConfig, load_checkpoint, load_weights
    from damokit.selection.finetune_selection import JointFineTuner

    if not 0.0 < args.test_fraction < 1.0:
        raise ValueError(f"--test-fraction must be in (0, 1), got {args.test_fraction}")
    x, y = load_image_data(args.target)
    n_test = int(len(y) * args.test_fraction)
    tr, te = seeded_split(len(y), (len(y) - n_test, n_test), args.seed)
    source = None
    n_src = 0
    if args.source is not None:
        xs, ys = load_image_data(args.source)
        if args.selected is not None:
            if not args.selected.is_file():
                raise FileNotFoundError(f"--selected {args.selected} does not exist")
            keep = torch.tensor([int(t) for t in args.selected.read_text().split()], dtype=torch.long)
            mask = torch.isin(ys, keep)
            xs, ys = xs[mask], ys[mask]
        source, n_src = (xs, ys), int(ys.max()) + 1 if len(ys) else 0
    torch.manual_seed(args.seed)
    backbone = create_model(args.model, num_classes=0)
    if args.weights is not None:
        load_weights(backbone, load_checkpoint(args.weights)["model"], source=str(args.weights))
    tuner = JointFineTuner(backbone, backbone.feat_dim, n_src, int(y.max()) + 1, lam=args.lam, mu=args.mu)
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer="sgd", weight_decay=1e-4,
        optimizer_kwargs=(("nesterov", True),), schedule="cosine", seed=args.seed, drop_last=False,
    )  # fmt: skip
    out = args.out or Path("runs") / dt.datetime.now().strftime("finetune-%Y%m%d-%H%M%S")
    res = tuner.fit((x[tr], y[tr]), source, config, out_dir=out)
    acc = tuner.evaluate(x[te], y[te])
    src_txt = f"{len(source[1])} source images" if source else "no source data"
    print(f"joint fine-tuning: {res.steps} steps, {len(tr)} target images, {src_txt}; test accuracy {acc:.4f}")
    print(f"run folder: {out}")
    return 0
