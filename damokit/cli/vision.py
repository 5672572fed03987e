"""``damokit vision train|eval``: image classification with a registered vision model (ELSA-Swin family).

    damokit vision train --model elsa_swin_digits --data digits --epochs 40 --out runs/elsa-digits
    damokit vision eval --model elsa_swin_digits --data digits --checkpoint runs/elsa-digits/best.safetensors

``--data`` is ``digits``, ``cifar10_mini`` or an image folder (``DIR/<class>/*`` or ``DIR/{train,test}/<class>/*``).
Both commands print the test accuracy and write a confusion-matrix PNG.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("vision", help="train / evaluate an image classifier (ELSA-Swin, Swin)")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, text in (("train", "train on the train split, report test accuracy"), ("eval", "evaluate weights")):
        q = sub.add_parser(action, help=text)
        q.add_argument("--model", required=True, help="registered model, e.g. elsa_swin_digits (damokit list models)")
        q.add_argument("--data", required=True, help="digits, cifar10_mini or an image folder")
        q.add_argument("--img-size", type=int, default=32, help="image-folder images are resized to this square size")
        q.add_argument("--seed", type=int, default=0, help="model init, data order and digits/folder split")
        q.add_argument("--out", type=Path, default=None, help="output folder (default: runs/vision-<time>)")
        if action == "train":
            q.add_argument("--epochs", type=int, default=40)
            q.add_argument("--batch-size", type=int, default=64)
            q.add_argument("--lr", type=float, default=3e-3, help="AdamW, 10%% warm-up then cosine")
            q.add_argument("--weight-decay", type=float, default=0.05)
            q.add_argument("--max-shift", type=int, default=1, help="random cyclic shift of each batch (pixels)")
            q.add_argument("--flip", action="store_true", help="random horizontal flips")
            q.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors")
            q.set_defaults(func=_train)
        else:
            q.add_argument("--checkpoint", type=Path, required=True, help="weights written by `vision train`")
            q.set_defaults(func=_eval)


def _model_for(args: argparse.Namespace, data):
    from damokit import create_model

    try:
        return create_model(
            args.model, in_chans=data.x_train.shape[1], num_classes=len(data.classes), img_size=data.x_train.shape[-1]
        )
    except TypeError as err:
        raise ValueError(
            f"model {args.model!r} does not take in_chans/num_classes/img_size ({err}); "
            "use an image classifier such as elsa_swin_digits or swin_lsa_cifar"
        ) from err


def _report(model, data, out: Path, title: str) -> dict:
    from damokit.vision.classify import confusion_matrix, plot_confusion, predict

    pred = predict(model, data.x_test)
    cm = confusion_matrix(pred, data.y_test, len(data.classes))
    accuracy = (pred == data.y_test).float().mean().item()
    png = plot_confusion(cm, data.classes, out / "confusion.png", f"{title}: top-1 {accuracy:.3f}")
    (out / "test_metrics.json").write_text(json.dumps({"test_accuracy": accuracy, "confusion": cm.tolist()}))
    print(f"test top-1: {accuracy:.4f} on {len(pred)} images; confusion matrix: {png}")
    return {"accuracy": accuracy}


def _train(args: argparse.Namespace) -> int:
    import torch

    from damokit.engine import TrainConfig
    from damokit.vision.classify import load_classification_data, train_classifier

    data = load_classification_data(args.data, img_size=args.img_size, seed=args.seed)
    torch.manual_seed(args.seed)
    model = _model_for(args, data)
    out = args.out or Path("runs") / dt.datetime.now().strftime("vision-%Y%m%d-%H%M%S")
    steps = args.epochs * (int(0.9 * len(data.y_train)) // args.batch_size)
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer="adamw",
        weight_decay=args.weight_decay,
        schedule="cosine",
        warmup_steps=max(1, steps // 10),
        monitor="val_accuracy",
        monitor_mode="max",
        seed=args.seed,
        progress=True,
    )
    result = train_classifier(
        model,
        data,
        config,
        max_shift=args.max_shift,
        flip=args.flip,
        out_dir=out,
        resume=args.resume,
        run_config={"model": args.model, "data": args.data, "img_size": args.img_size},
    )
    print(f"trained {result.epochs_run} epochs; best val accuracy {result.best:.4f} (epoch {result.best_epoch})")
    _report(model, data, out, f"{args.model} on {args.data}")
    print(f"weights: {out / 'best.safetensors'} (best epoch), {out / 'last.safetensors'}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from damokit.engine import load_checkpoint, load_weights
    from damokit.vision.classify import load_classification_data

    if not args.checkpoint.is_file():
        raise FileNotFoundError(f"--checkpoint {args.checkpoint} does not exist; train with `damokit vision train`")
    data = load_classification_data(args.data, img_size=args.img_size, seed=args.seed)
    model = _model_for(args, data)
    load_weights(model, load_checkpoint(args.checkpoint)["model"], source=str(args.checkpoint))
    out = args.out or args.checkpoint.parent
    out.mkdir(parents=True, exist_ok=True)
    _report(model, data, out, f"{args.model} on {args.data}")
    return 0
