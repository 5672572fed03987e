"""Miniature reproductions: one module per paper, each registering a function that returns a ReproResult.

``damokit reproduce`` runs the selected ones and writes ``report.md``, ``results.json`` and plots.
"""

from damokit.reproduce.papers import PAPERS, Paper
from damokit.reproduce.result import ClaimRow, ReproResult, Verdict, conditions, verdict_from
from damokit.reproduce.runner import run_reproductions, write_report

__all__ = [
    "PAPERS",
    "Paper",
    "ClaimRow",
    "ReproResult",
    "Verdict",
    "conditions",
    "verdict_from",
    "run_reproductions",
    "write_report",
]
