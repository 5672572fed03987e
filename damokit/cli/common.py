"""Subcommands of the foundation: ``list``, ``reproduce``, ``bench``."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("list", help="list registered models, reproductions, benchmarks, optimizers")
    p.add_argument("kind", nargs="?", default="models", choices=["models", "reproductions", "benchmarks", "optimizers"])
    p.add_argument("pattern", nargs="?", default="*", help="wildcard filter, e.g. 'fedformer*'")
    p.set_defaults(func=_list)

    p = subparsers.add_parser("reproduce", help="run miniature reproductions and write a report")
    p.add_argument("names", nargs="*", metavar="PAPER", help="papers to run (default: all ten)")
    p.add_argument(
        "--quick", action="store_true", help="about a minute per paper (without it: full mode, minutes to hours)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="report folder (default: runs/<timestamp>/); the hours-long full modes log finished work there, "
        "so a run killed part-way continues when rerun with the same --out",
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_reproduce)

    p = subparsers.add_parser("bench", help="run speed/memory benchmarks (ratios measured in one run)")
    p.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    p.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    p.add_argument("--out", type=Path, default=None, help="folder for CSV/JSON results")
    p.set_defaults(func=_bench)


def _default_out() -> Path:
    return Path("runs") / dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def _list(args: argparse.Namespace) -> int:
    from damokit import registry

    kind = args.kind.rstrip("s")
    if kind == "benchmark":
        from damokit.benchmarking import load_benchmarks

        load_benchmarks()
    rows = registry.entries(kind, args.pattern)
    if not rows:
        print(f"no {args.kind} match {args.pattern!r}")
        return 0
    width = max(len(e.name) for e in rows)
    for entry in rows:
        meta = ", ".join(f"{k}={v}" for k, v in entry.meta.items() if k in ("task", "paper", "input_layout"))
        print(f"{entry.name:<{width}}  {entry.doc}" + (f"  [{meta}]" if meta else ""))
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from damokit.reproduce import Verdict, run_reproductions, write_report
    from damokit.reproduce.runner import format_table

    out = args.out or _default_out()
    results = run_reproductions(args.names, quick=args.quick, out_dir=out, progress=not args.no_progress)
    report = write_report(results, out)
    print(format_table(results))
    print(f"\nreport: {report}")
    failed = [r.paper for r in results if any(row.verdict is Verdict.ERROR for row in r.rows)]
    if failed:
        print(f"damokit: error: reproductions failed: {', '.join(failed)} (see {report})", file=sys.stderr)
        return 1
    return 0


def _bench(args: argparse.Namespace) -> int:
    from damokit.benchmarking import run_benchmarks

    out = args.out or _default_out()
    for result in run_benchmarks(args.names, quick=args.quick, out_dir=out):
        print(result.format())
        print()
    print(f"results: {out}")
    return 0
