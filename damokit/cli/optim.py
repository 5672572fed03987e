"""``damokit optim``: list the Adam-family optimizers with their capabilities, run one experiment E1-E5."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("optim", help="Adam-family optimizers: list them, run an experiment (E1-E5)")
    sub = p.add_subparsers(dest="optim_command", metavar="ACTION", required=True)

    q = sub.add_parser("list", help="registered optimizers with capability flags and Condition-B bounds")
    q.add_argument("--grad-bound", type=float, default=1.0, help="G in ||g||_inf <= G for the bounds (default 1)")
    q.set_defaults(func=_list)

    q = sub.add_parser("demo", help="run one experiment of the adam_family reproduction; writes JSON + PNG")
    q.add_argument("--exp", required=True, help="E1 (rate), E2 (variance), E3 (stagewise), E4 (compositional), E5")
    q.add_argument("--quick", action="store_true", help="the reproduction's quick size")
    q.add_argument("--out", type=Path, default=Path("runs/optim_demo"), help="output folder")
    q.set_defaults(func=_demo)


def _list(args: argparse.Namespace) -> int:
    import torch

    from damokit import registry

    if not args.grad_bound > 0:
        raise ValueError(f"--grad-bound={args.grad_bound} must be > 0")
    print(f"{'name':<18} {'source':<8} {'rule':<10} {'c_l':>10} {'c_u':>10}  flags")
    for entry in registry.entries("optimizer"):
        meta = entry.meta
        c_l = c_u = "-"
        if meta.get("family") == "adam_family":
            opt = entry.fn([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
            lo, hi = opt.factor_bounds(args.grad_bound)[0]
            c_l, c_u = f"{lo:.3g}", f"{hi:.3g}"
        flags = [k for k in ("named_in_abstract", "decoupled_weight_decay", "has_betas") if meta.get(k)]
        print(
            f"{entry.name:<18} {meta.get('source', '-'):<8} {meta.get('rule', '-'):<10} {c_l:>10} {c_u:>10}  "
            + ",".join(flags)
        )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from damokit.reproduce.adam_family import EXPERIMENTS
    from damokit.reproduce.result import ReproResult
    from damokit.reproduce.runner import format_table

    key = args.exp.upper()
    if key not in EXPERIMENTS:
        raise ValueError(f"--exp={args.exp!r} is not one of {', '.join(EXPERIMENTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    rows, plot, data = EXPERIMENTS[key](args.quick, args.out, progress=True)
    (args.out / f"adam_family_{key.lower()}.json").write_text(json.dumps(data, indent=1, default=str))
    print(format_table([ReproResult(paper="adam_family", title=key, rows=rows, plots=[plot])]))
    print(f"\nplot: {plot}\ncurves: {args.out / f'adam_family_{key.lower()}.json'}")
    return 0
