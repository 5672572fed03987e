"""``damokit nas``: zero-shot NAS commands (``zendet`` here; IQNAS adds ``iqnas`` through its own module).

To add a subcommand, provide ``add_<name>_parser(subparsers)`` in ``damokit/nas/<name>_cli.py`` and list
``<name>`` in ``_PLUGINS``: this file stays small and each method keeps its options beside its code.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
from pathlib import Path

__all__ = ["add_parser"]

_PLUGINS = ("iqnas",)  # damokit.nas.<name>_cli.add_<name>_parser(sub), added when the module exists


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("nas", help="zero-shot neural architecture search")
    sub = group.add_subparsers(dest="nas_command", metavar="METHOD")
    group.set_defaults(func=lambda args: group.print_help() or 0)

    p = sub.add_parser("zendet", help="MAE-DET: evolutionary search of a detection backbone by entropy")
    p.add_argument("--budget-flops", type=float, default=188e8, help="max FLOPs at --resolution (official 188e8)")
    p.add_argument("--budget-params", type=float, default=None, help="max parameters (default: unconstrained)")
    p.add_argument("--layers", type=int, default=91, help="max conv layers (official 91)")
    p.add_argument("--stages", type=int, default=5, help="max stride-2 blocks (official 5)")
    p.add_argument("--resolution", type=int, default=480, help="budget image size (official 480)")
    p.add_argument("--weights", default="0,0,1,1,6", help="stage weights C1..C5 (MSEP), or 'final'")
    p.add_argument("--score", default="entropy_closed", choices=["entropy_closed", "entropy_forward", "zen"])
    p.add_argument("--population", type=int, default=256)
    p.add_argument("--iterations", type=int, default=100_000, help="children to generate (official 100,000)")
    p.add_argument("--mutations", type=int, default=2, help="block mutations per child (official 2)")
    p.add_argument("--minor-after", type=int, default=None, help="coarse-to-fine: widths only after N children")
    p.add_argument("--init", type=Path, default=None, help="initial structure (JSON or official .txt)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/zendet"), help="folder for best_structure.* and the log")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_zendet)

    for name in _PLUGINS:
        module_name = f"damokit.nas.{name}_cli"
        if importlib.util.find_spec(module_name) is not None:
            getattr(importlib.import_module(module_name), f"add_{name}_parser")(sub)


def _parse_weights(text: str) -> tuple[float, ...] | None:
    if text.strip().lower() == "final":
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(
            f"--weights must be comma-separated numbers (e.g. 0,0,1,1,6) or 'final', got {text!r}"
        ) from None


def _zendet(args: argparse.Namespace) -> int:
    from damokit.nas.structure import Structure
    from damokit.nas.zendet import INITIAL_DETECTION_STRUCTURE, Budget, search

    if args.init is not None and not args.init.is_file():
        raise FileNotFoundError(f"--init: no structure file at {args.init}")
    init = INITIAL_DETECTION_STRUCTURE if args.init is None else Structure.from_text(args.init.read_text())
    budget = Budget(
        flops=args.budget_flops,
        params=args.budget_params,
        layers=args.layers,
        stages=args.stages,
        resolution=args.resolution,
    )
    result = search(
        init,
        budget=budget,
        score=args.score,
        stage_weights=_parse_weights(args.weights),
        population=args.population,
        iterations=args.iterations,
        mutations_per_child=args.mutations,
        minor_after=args.minor_after,
        seed=args.seed,
        progress=not args.no_progress,
    )
    log = result.save(args.out)
    info = result.best_info
    print(
        f"best score {result.best_score:.4f}  FLOPs {info['flops'] / 1e9:.3f} G @ {args.resolution}^2  "
        f"params {info['params'] / 1e6:.2f} M  layers {info['layers']}"
    )
    print(result.best)
    print(f"log: {log}")
    return 0
