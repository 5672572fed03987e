"""``damokit select uot|nn_max_cos|mean_cos|random``: choose pre-training classes close to a target task.

Works from cached features (``.npz`` with ``feats`` (N, D) and ``labels`` (N,), as ``damokit pretrain``
writes) or from class means (``.npz`` with ``means`` (K, D)), so ImageNet-sized pools never need images in memory.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser", "load_class_means"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("select", help="select pre-training classes for fine-tuning (arXiv 2111.12292)")
    sub = p.add_subparsers(dest="method", metavar="METHOD", required=True)
    for method, text in (
        ("uot", "unbalanced-OT class importance (the paper's selector)"),
        ("nn_max_cos", "best cosine of a source class mean to any target class mean"),
        ("mean_cos", "mean cosine to the target class means"),
        ("random", "seeded random classes (baseline)"),
    ):
        q = sub.add_parser(method, help=text)
        q.add_argument("--src-feats", type=Path, required=True, help="source features or class means (.npz)")
        q.add_argument("--tgt-feats", type=Path, required=True, help="target features or class means (.npz)")
        q.add_argument("--k", type=int, default=100, help="number of source classes to keep")
        q.add_argument("--out", type=Path, default=None, help="write the class ids here, one per line, best first")
        q.add_argument("--seed", type=int, default=0, help="seed of the random selector")
        if method == "uot":
            q.add_argument("--p-m", type=float, default=0.1, help="cost scale: M = (1 - cos) / p_m")
            q.add_argument("--eps", type=float, default=1.0, help="entropic regulariser")
            q.add_argument("--tau-s", type=float, default=1.0, help="source-marginal KL weight (loose)")
            q.add_argument("--tau-t", type=float, default=100.0, help="target-marginal KL weight (nearly strict)")
        q.set_defaults(func=_select)


def load_class_means(path: Path):
    """Class means (K, D) float64 from a ``means`` array, or computed from ``feats`` and ``labels``."""
    import numpy as np
    import torch

    from damokit.cli.pretrain import load_feature_file
    from damokit.selection.finetune_selection import class_means

    if not Path(path).is_file():
        raise FileNotFoundError(f"feature file {path} does not exist")
    with np.load(path, allow_pickle=False) as arc:
        if "means" in arc.files:
            means = torch.as_tensor(arc["means"], dtype=torch.float64)
            if means.ndim != 2:
                raise ValueError(f"{path}: means must be (K, D), got shape {tuple(means.shape)}")
            return means
    feats, labels = load_feature_file(path)
    means, counts = class_means(feats, labels, int(labels.max()) + 1)
    empty = (counts == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"{path}: classes {empty[:10]} have no samples; relabel the classes 0..K-1 without gaps")
    return means


def _select(args: argparse.Namespace) -> int:
    from damokit.selection.finetune_selection import select_classes, uot_class_importance

    src, tgt = load_class_means(args.src_feats), load_class_means(args.tgt_feats)
    kw = {}
    if args.method == "uot":
        kw = {"p_m": args.p_m, "reg": args.eps, "reg_src": args.tau_s, "reg_tgt": args.tau_t}
    chosen = select_classes(src, tgt, args.k, method=args.method, seed=args.seed, **kw)
    print(f"{args.method}: selected {len(chosen)} of {len(src)} source classes for {len(tgt)} target classes")
    if args.method == "uot":
        _, res = uot_class_importance(src, tgt, **kw)
        cols = res.plan.sum(0)
        state = "converged" if res.converged else "NOT converged"
        print(
            f"Sinkhorn {state} in {res.n_iter} iterations (err {res.err:.2e}); target marginals "
            f"{float(cols.min()):.3f}-{float(cols.max()):.3f}"
        )
    print("top classes:", " ".join(str(i) for i in chosen[:20].tolist()) + (" ..." if len(chosen) > 20 else ""))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("".join(f"{i}\n" for i in chosen.tolist()))
        print(f"written: {args.out}")
    return 0
