"""Structured results of a miniature reproduction: what the paper claims beside what we measured."""

from __future__ import annotations

import enum
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Verdict", "ClaimRow", "ReproResult", "conditions", "verdict_from"]


class Verdict(str, enum.Enum):
    HOLDS = "holds"
    DOES_NOT_HOLD = "does not hold at this scale"
    NOT_COMPARABLE = "not comparable"
    NOT_IMPLEMENTED = "not yet implemented"
    ERROR = "error"


@dataclass
class ClaimRow:
    """One claim of the paper and our measurement of it.

    Attributes:
        claim: the statement, e.g. "FEDformer-f beats Autoformer on ETTh1-96 (MSE)".
        metric: what is compared, e.g. "MSE ratio FEDformer/Autoformer".
        paper: the paper's figure (number or text); ``None`` when the paper gives none.
        source: where the paper's figure comes from ("Table 2", "spec §5").
        ours: our measured figure; ``None`` when not run.
        verdict: see ``Verdict``.
        note: conditions that differ from the paper (scale, data), in a few words.
    """

    claim: str
    metric: str
    paper: float | str | None
    source: str
    ours: float | str | None
    verdict: Verdict
    note: str = ""


@dataclass
class ReproResult:
    """What one paper's reproduction returns; the CLI prints it and the runner writes it to disk."""

    paper: str
    title: str
    rows: list[ClaimRow]
    conditions: dict[str, Any] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)
    notes: str = ""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["rows"] = [{**asdict(r), "verdict": r.verdict.value} for r in self.rows]
        out["plots"] = [str(p) for p in self.plots]
        return out


def verdict_from(holds: bool, comparable: bool = True) -> Verdict:
    """Map a measured comparison to a verdict."""
    if not comparable:
        return Verdict.NOT_COMPARABLE
    return Verdict.HOLDS if holds else Verdict.DOES_NOT_HOLD


def conditions(seed: int | None = None, **extra: Any) -> dict[str, Any]:
    """The run conditions every report states: seed, threads, versions, CPU."""
    import torch

    return {
        "seed": seed,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        **extra,
    }
