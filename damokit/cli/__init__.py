"""The ``damokit`` command. Thin: parse, call the library, print.

Each module of this package other than ``__init__`` adds one subcommand group through its
``add_parser(subparsers)`` function, so a method's commands live beside each other and not in one file.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    from damokit import __version__

    parser = argparse.ArgumentParser(
        prog="damokit",
        description="Ten published deep-learning methods as reusable, tested, fast PyTorch components.",
    )
    parser.add_argument("--version", action="version", version=f"damokit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from damokit.errors import DamokitError

    try:
        return int(args.func(args) or 0)
    except (DamokitError, ValueError, FileNotFoundError) as err:
        # user errors: one clear line, no stack trace (use -v for details)
        if args.verbose:
            raise
        print(f"damokit: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
