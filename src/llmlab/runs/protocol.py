"""What a kind of run is: it plans its units with stable keys, runs one unit, and summarises.

Evaluations, probes and benchmarks are all *kinds* of run. A kind says which units of work a run is
made of (``plan``), how to compute one (``run_unit``) and what the finished units add up to
(``summarise``); the one runner (``runner.py``) does the rest for every kind alike: it stores each
unit as it finishes, skips the units a stored run with the same fingerprint already has, shows the
progress and turns Ctrl-C into a resumable stop.

    unit key      stable across processes: the same plan gives the same keys ("sentiment/item-7",
                  "capitals/france/1", "2/smollm2"), which is how a restart knows what is done
    identity()    everything that shapes the results (data digest, model file digest, settings);
                  its digest is the run's fingerprint
    header()      what re-opening the run needs without the kind's inputs (names, labels, settings)
    result        a JSON-able dict; ``summarise`` sees results as read back from the store

What it gives up: a unit is the smallest thing that resumes; a kind whose work cannot be cut into
independent units (a 5-fold baseline) computes them together in ``start`` and hands them out one by
one.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar


@dataclass(frozen=True)
class Unit:
    key: str            # stable: the same plan gives the same keys in every process
    seq: int            # position in the plan
    payload: Any = None  # what run_unit needs; not stored


class RunKind(ABC):
    kind: ClassVar[str]          # "eval" | "probe" | "bench"
    model: str | None = None     # shown by `llmlab runs`
    subject: str | None = None   # the task, suite or what was measured
    label: str = ""              # the progress bar's description
    # the runner counts each unit's generations per model (``llmlab.tally``) and stores them with its
    # result under ``usage``; kinds that count their own tokens (evaluations, benchmarks) leave it off
    tally: ClassVar[bool] = False

    @abstractmethod
    def identity(self) -> dict:
        """Everything that shapes the results; the fingerprint is its digest."""

    @abstractmethod
    def header(self) -> dict:
        """JSON-able: what re-opening the run needs."""

    @abstractmethod
    def plan(self) -> list[Unit]:
        """The units of the run, in order, with stable keys."""

    def start(self, todo: list[Unit]) -> None:  # noqa: B027 (a hook: most kinds need nothing)
        """Called once before the units still to run (possibly none) are run."""

    @abstractmethod
    def run_unit(self, unit: Unit) -> dict:
        """Compute one unit; a JSON-able result."""

    @abstractmethod
    def summarise(self, results: dict[str, dict]) -> dict:
        """The run's summary from every unit's stored result (key -> result, in plan order)."""


def fingerprint(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def model_identity(model, store) -> dict:
    """A loaded model as a run's identity sees it: backend, name and the file's sha256 (or path)."""
    path = model.info.path
    sha = store.file_sha256(path) if store is not None and path and Path(path).is_file() else None
    ident = {"backend": model.backend, "name": model.info.name, "sha256": sha or path}
    if model.info.extra.get("adapter_sha256"):  # a LoRA adapter on top (hf/x+DIR): retrained, a new run
        ident["adapter_sha256"] = model.info.extra["adapter_sha256"]
    return ident
