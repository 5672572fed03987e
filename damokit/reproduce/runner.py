"""Run the selected reproductions and write the report (markdown table, JSON, plots)."""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from damokit import registry
from damokit.reproduce.papers import PAPERS
from damokit.reproduce.result import ClaimRow, ReproResult, Verdict

__all__ = ["run_reproductions", "write_report", "format_table"]

log = logging.getLogger(__name__)


def _not_implemented(key: str) -> ReproResult:
    paper = PAPERS[key]
    row = ClaimRow(
        claim=paper.title,
        metric="-",
        paper=None,
        source=f"arXiv {paper.arxiv}",
        ours=None,
        verdict=Verdict.NOT_IMPLEMENTED,
    )
    return ReproResult(paper=key, title=paper.title, rows=[row])


def run_reproductions(
    keys: Sequence[str] | None, *, quick: bool, out_dir: Path, progress: bool = True
) -> list[ReproResult]:
    """Run the reproductions ``keys`` (all ten papers when empty) and return their results.

    A paper without a registered reproduction yields one "not yet implemented" row. A reproduction that
    raises yields an "error" row carrying the exception, so the other papers still run; the CLI exits
    non-zero when any row is an error. Quick mode runs on one thread: its tiny models gain nothing from a
    second one, and two OpenMP threads stall badly whenever the other core is busy (measured: 317 vs 33 CPU-s
    for the TransReID-SSL quick run on a loaded machine).
    """
    import torch

    threads = torch.get_num_threads()
    if quick:
        torch.set_num_threads(1)
    try:
        return _run(keys, quick=quick, out_dir=out_dir, progress=progress)
    finally:
        torch.set_num_threads(threads)


def _run(keys: Sequence[str] | None, *, quick: bool, out_dir: Path, progress: bool) -> list[ReproResult]:
    from tqdm.auto import tqdm

    keys = list(keys) if keys else list(PAPERS)
    unknown = [k for k in keys if k not in PAPERS]
    if unknown:
        raise registry.unknown_name("reproduction", unknown[0], PAPERS)
    registered = set(registry.names("reproduction"))
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    bar = tqdm(keys, desc="reproduce", unit="paper", disable=not progress)
    for key in bar:
        bar.set_postfix_str(key)
        if key not in registered:
            results.append(_not_implemented(key))
            continue
        fn = registry.get("reproduction", key).fn
        start = time.perf_counter()
        try:
            result = fn(quick=quick, out_dir=out_dir)
        except Exception as err:  # recorded in the report and turned into a non-zero exit by the CLI
            log.exception("reproduction %s failed", key)
            row = ClaimRow(
                claim=PAPERS[key].title,
                metric="-",
                paper=None,
                source=f"arXiv {PAPERS[key].arxiv}",
                ours=None,
                verdict=Verdict.ERROR,
                note=f"{type(err).__name__}: {err}",
            )
            result = ReproResult(paper=key, title=PAPERS[key].title, rows=[row], notes=traceback.format_exc())
        result.conditions["wall_time_s"] = round(time.perf_counter() - start, 2)
        result.conditions["mode"] = "quick" if quick else "full"
        results.append(result)
    return results


def _fmt(value: float | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(results: Sequence[ReproResult]) -> str:
    """A markdown table with one row per claim: the paper's figure beside ours and a verdict."""
    lines = [
        "| paper | claim | metric | paper figure (source) | ours | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for res in results:
        for row in res.rows:
            cells = [
                res.paper,
                row.claim,
                row.metric,
                f"{_fmt(row.paper)} ({row.source})",
                _fmt(row.ours),
                row.verdict.value + (f": {row.note}" if row.note else ""),
            ]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def write_report(results: Sequence[ReproResult], out_dir: Path) -> Path:
    """Write ``report.md`` and ``results.json`` into ``out_dir``; return the report's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = ["# damokit miniature reproductions", "", format_table(results), ""]
    for res in results:
        if not res.conditions and not res.plots and not res.notes:
            continue
        parts += [f"## {res.paper}: {res.title}", ""]
        if res.conditions:
            parts.append("Conditions: " + ", ".join(f"{k}={v}" for k, v in res.conditions.items()))
            parts.append("")
        if res.notes:
            parts += [res.notes.strip(), ""]
        for plot in res.plots:
            rel = Path(plot).relative_to(out_dir) if Path(plot).is_relative_to(out_dir) else Path(plot)
            parts += [f"![{rel.stem}]({rel.as_posix()})", ""]
    report = out_dir / "report.md"
    report.write_text("\n".join(parts))
    (out_dir / "results.json").write_text(json.dumps([r.to_json() for r in results], indent=2, default=str))
    return report
