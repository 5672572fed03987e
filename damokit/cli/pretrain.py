"""``damokit pretrain look|ce`` (supervised pre-training of a registered backbone) and ``damokit probe``.

Feature files (written by ``pretrain --out``, read by ``probe`` and ``damokit select``) are ``.npz`` archives
with ``feats`` (N, D) float and ``labels`` (N,) int.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

__all__ = ["add_parser", "load_image_data", "load_feature_file"]

NAMED_DATA = ("digits", "mnist_test", "notmnist_test", "cifar10_mini")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("pretrain", help="supervised pre-training (LOOK or cross-entropy) of a backbone")
    sub = p.add_subparsers(dest="loss", metavar="LOSS", required=True)
    for loss, text in (("look", "leave-one-out kNN loss (arXiv 2110.06014)"), ("ce", "cross-entropy baseline")):
        q = sub.add_parser(loss, help=text)
        q.add_argument("--data", required=True, help=f"one of {', '.join(NAMED_DATA)} or an .npz with x and y")
        q.add_argument("--model", default="convnet_small", help="registered backbone (damokit list models)")
        q.add_argument("--coarse", action="store_true", help="relabel y -> (y >= K/2): two super-classes")
        q.add_argument("--epochs", type=int, default=8)
        q.add_argument("--batch-size", type=int, default=128)
        q.add_argument("--lr", type=float, default=0.1, help="SGD (Nesterov, momentum 0.9), cosine schedule")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--out", type=Path, default=None, help="run folder (default: runs/pretrain-<time>)")
        q.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors")
        if loss == "look":
            q.add_argument("--k", type=int, default=50, help="neighbours; well below the smallest class count")
            q.add_argument("--tau", type=float, default=0.1, help="temperature")
            q.add_argument("--bank", default="full", choices=["full", "queue", "batch"])
            q.add_argument("--on-no-positive", default="skip", choices=["skip", "add_nearest_positive"])
        q.set_defaults(func=_pretrain)

    p = subparsers.add_parser("probe", help="linear / kNN probe on frozen features (.npz with feats, labels)")
    p.add_argument("--features", type=Path, required=True, help="probe-train features (or all, see --test)")
    p.add_argument("--test", type=Path, default=None, help="test features; default: a seeded half of --features")
    p.add_argument("--probe", default="linear", choices=["linear", "knn"])
    p.add_argument("--k", type=int, default=5, help="neighbours of the kNN probe")
    p.add_argument("--C", type=float, default=10.0, help="inverse L2 strength of the linear probe")
    p.add_argument("--shots", type=int, default=None, help="labelled samples per class (default: all)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.set_defaults(func=_probe)


def load_image_data(spec: str):
    """Images and labels from a named pack or an ``.npz`` holding ``x`` (uint8 images or float NCHW) and ``y``."""
    import numpy as np
    import torch

    from damokit.data import images

    if spec in NAMED_DATA:
        loader = {
            "digits": images.load_digits,
            "mnist_test": images.load_mnist_test,
            "notmnist_test": images.load_notmnist_test,
            "cifar10_mini": images.load_cifar10_mini,
        }[spec]
        data = loader()
        return data.x, data.y
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"--data {spec!r} is neither one of {NAMED_DATA} nor an existing .npz file")
    with np.load(path, allow_pickle=False) as arc:
        if "x" not in arc.files or "y" not in arc.files:
            raise ValueError(f"{path} must hold arrays 'x' and 'y'; it has {arc.files}")
        x, y = arc["x"], arc["y"]
    x = images.to_nchw_float(x) if x.dtype == np.uint8 else torch.as_tensor(x, dtype=torch.float32)
    return x, torch.as_tensor(y, dtype=torch.long)


def load_feature_file(path: Path):
    """``feats`` (N, D) float32 and ``labels`` (N,) int64 tensors from a feature ``.npz``."""
    import numpy as np
    import torch

    if not Path(path).is_file():
        raise FileNotFoundError(f"feature file {path} does not exist")
    with np.load(path, allow_pickle=False) as arc:
        missing = {"feats", "labels"} - set(arc.files)
        if missing:
            raise ValueError(f"{path} must hold 'feats' (N, D) and 'labels' (N,); missing {sorted(missing)}")
        feats, labels = arc["feats"], arc["labels"]
    if feats.ndim != 2 or len(feats) != len(labels):
        raise ValueError(f"{path}: feats must be (N, D) and labels (N,), got {feats.shape} and {labels.shape}")
    return torch.as_tensor(feats, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.long)


def _pretrain(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from damokit import create_model
    from damokit.engine import TrainConfig, save_checkpoint
    from damokit.engine.probes import extract_features
    from damokit.pretrain.look import LOOKRecipe, pretrain

    x, y = load_image_data(args.data)
    if args.coarse:
        y = (y >= (int(y.max()) + 1) // 2).long()
    torch.manual_seed(args.seed)
    encoder = create_model(args.model, num_classes=0)
    feat_dim = getattr(encoder, "feat_dim", None)
    if feat_dim is None:
        raise ValueError(f"model {args.model!r} has no feat_dim; pick a backbone such as convnet_small")
    out = args.out or Path("runs") / dt.datetime.now().strftime("pretrain-%Y%m%d-%H%M%S")
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer="sgd", weight_decay=5e-4,
        optimizer_kwargs=(("nesterov", True),), schedule="cosine", seed=args.seed,
    )  # fmt: skip
    recipe = LOOKRecipe()
    if args.loss == "look":
        recipe = LOOKRecipe(k=args.k, tau=args.tau, bank=args.bank, on_no_positive=args.on_no_positive)
    res = pretrain(
        encoder, x, y, loss=args.loss, feat_dim=feat_dim, recipe=recipe, config=config, out_dir=out,
        resume=args.resume,
    )  # fmt: skip
    save_checkpoint(out / "encoder.safetensors", {"model": encoder.state_dict()})
    feats = extract_features(encoder, x, batch_size=512)
    np.savez(out / "features.npz", feats=feats.numpy(), labels=y.numpy())
    last = res.fit.history[-1] if res.fit.history else {}
    print(f"{args.loss} pre-training of {args.model} on {args.data}: {res.fit.steps} steps, last {last}")
    if res.no_positive_fraction:
        print(f"no-positive fraction per epoch: {', '.join(f'{f:.3f}' for f in res.no_positive_fraction)}")
    print(f"encoder: {out / 'encoder.safetensors'}\nfeatures: {out / 'features.npz'}")
    return 0


def _probe(args: argparse.Namespace) -> int:
    from damokit.data.images import seeded_split
    from damokit.engine.probes import few_shot_probe, knn_probe, linear_probe, mean_std

    feats, labels = load_feature_file(args.features)
    if args.test is not None:
        tr_f, tr_y = feats, labels
        te_f, te_y = load_feature_file(args.test)
    else:
        half = len(labels) // 2
        tr, te = seeded_split(len(labels), (len(labels) - half, half), seed=0)
        tr_f, tr_y, te_f, te_y = feats[tr], labels[tr], feats[te], labels[te]
    kw = {"k": args.k} if args.probe == "knn" else {"C": args.C}
    if args.shots is not None:
        accs = few_shot_probe(tr_f, tr_y, te_f, te_y, shots=args.shots, seeds=args.seeds, probe=args.probe, **kw)
    else:
        accs = [(knn_probe if args.probe == "knn" else linear_probe)(tr_f, tr_y, te_f, te_y, **kw)]
    shots = f"{args.shots}-shot" if args.shots else "all labels"
    print(f"{args.probe} probe ({shots}, {len(te_y)} test samples): accuracy {mean_std(accs)} over {len(accs)} run(s)")
    return 0
