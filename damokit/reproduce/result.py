"""Structured results of a miniature reproduction: what the paper claims beside what we measured."""

from __future__ import annotations

import enum
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from damokit.benchmarking import machine_conditions

__all__ = ["Verdict", "ClaimRow", "ReproResult", "conditions", "paired_verdict", "verdict_from"]


class Verdict(str, enum.Enum):
    HOLDS = "holds"
    DOES_NOT_HOLD = "does not hold at this scale"
    NOT_COMPARABLE = "not comparable"
    WITHIN_NOISE = "within seed noise"
    NOT_IMPLEMENTED = "not yet implemented"
    PENDING = "pending: not run yet"
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


def paired_verdict(differences: Sequence[float], *, min_se: float = 2.0) -> tuple[Verdict, str]:
    """Verdict on "the difference is positive" from per-seed paired differences, and a summary for the note.

    Holds when the mean exceeds ``min_se`` standard errors of the mean, does not hold when it is below minus
    that, and is within seed noise otherwise; a single seed has no noise estimate and decides by the sign.
    Pair the differences by seed (same data subset and initialisation) so that shared variance cancels.
    """
    d = [float(x) for x in differences]
    mean = statistics.fmean(d)
    if len(d) < 2:
        return verdict_from(mean > 0), f"Δ {mean:+.4f} (one seed: no noise estimate)"
    se = statistics.stdev(d) / math.sqrt(len(d))
    summary = f"paired Δ {mean:+.4f} ± {se:.4f} (s.e. over {len(d)} seeds; holds beyond {min_se:g} s.e.)"
    if mean > min_se * se:
        return Verdict.HOLDS, summary
    if mean < -min_se * se:
        return Verdict.DOES_NOT_HOLD, summary
    return Verdict.WITHIN_NOISE, summary


def conditions(seed: int | None = None, **extra: Any) -> dict[str, Any]:
    """The run conditions every report states: seed, then the machine (threads, versions, CPU)."""
    return {"seed": seed, **machine_conditions(**extra)}
