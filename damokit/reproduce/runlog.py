"""A full-mode reproduction's finished units of work, one JSON line each, so that a killed run resumes.

Full modes take hours on 2 cores. Each expensive unit (one training run, one seed) records its result, a JSON
object, under a key in ``out_dir/runs.jsonl`` (the line ``{"key": ..., **result}``) as soon as it finishes;
rerunning the reproduction into the same folder reads the log and skips what is there. Appending whole lines
keeps the log valid if the process dies mid-write (a cut-short last line is ignored), and grids over disjoint
keys can share one folder. Units whose result is tensors (a pre-trained backbone, a score vector) keep them in
``out_dir/artifacts/<name>.safetensors``, written atomically and read back without unpickling.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from damokit.engine.checkpoint import load_checkpoint, save_checkpoint

__all__ = ["RUN_LOG", "RunLog", "digest"]

RUN_LOG = "runs.jsonl"
_ARTIFACT_NAME = re.compile(r"[A-Za-z0-9_.=-]+")


def digest(settings: Any) -> str:
    """Ten hex digits naming a dataclass of settings, so results of other settings are never reused."""
    text = json.dumps(dataclasses.asdict(settings), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


class RunLog:
    """Finished units of ``out_dir``'s reproduction; ``RunLog(None)`` remembers nothing (quick modes)."""

    def __init__(self, out_dir: Path | None):
        self.path = Path(out_dir) / RUN_LOG if out_dir is not None else None
        self.done: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self.done[record.pop("key")] = record

    def get(self, key: str) -> dict[str, Any] | None:
        return self.done.get(key)

    def record(self, key: str, result: dict[str, Any]) -> None:
        self.done[key] = result
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write(json.dumps({"key": key, **result}) + "\n")

    def get_or_run(self, key: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The logged value of ``key``, or ``fn()`` run now and logged."""
        if key not in self.done:
            self.record(key, fn())
        return self.done[key]

    def tensors_or_run(self, name: str, fn: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The tensors saved as artifact ``name``, or ``fn()`` run now and saved (``RunLog(None)``: always run)."""
        if not _ARTIFACT_NAME.fullmatch(name):
            raise ValueError(f"artifact name {name!r} must use only letters, digits and _ . = -")
        if self.path is None:
            return fn()
        path = self.path.parent / "artifacts" / f"{name}.safetensors"
        if path.is_file():
            return load_checkpoint(path)["tensors"]
        tensors = fn()
        save_checkpoint(path, {"tensors": dict(tensors)})
        return tensors
