"""``python -m damokit ...``: the ``damokit`` command where its console script is not installed."""

from damokit.cli import main

if __name__ == "__main__":  # guarded: spawned worker processes re-import this module
    raise SystemExit(main())
