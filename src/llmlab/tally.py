"""What one unit of a run spent, model by model: the generations it made, counted as they finish.

    >>> from llmlab.tally import tally
    >>> with tally() as spent:                       # doctest: +SKIP
    ...     model.generate("Hi"); judge.generate("Is it polite?")
    >>> spent.to_dict()                              # doctest: +SKIP
    {"llamacpp/smollm2": {"in_process": True, "calls": 1, "input_tokens": 9, "output_tokens": 12,
                          "cpu_s": 0.21, "seconds": 0.24}, "openai/gpt-4o-mini": {...}}

Every ``Response`` reports itself here when it ends (``count``), to each tally open in its thread, so
a unit that asks a model, a judge and a second model is counted per model without any of them
passing counts around; units run in threads at once keep theirs apart. The runner (``runs/``) opens
one around each unit of the kinds that ask for it (``RunKind.tally``) and stores it with the unit's
result under ``usage``; ``run_usage`` sums a run's stored units into ``cost.report``'s rows, so a
resumed or re-opened run is priced from everything it stored.

What it gives up: only generations are counted, not ``Model.score`` (a yes/no reranker), embedding
or retrieval, whose CPU time falls in no model's row; a call's CPU time is this process's (every
thread) while it ran, so calls of units run at once overlap in it (remote models, which are priced
by tokens or wall time).
"""

from __future__ import annotations

import threading
import time

_local = threading.local()
FIELDS = ("calls", "input_tokens", "output_tokens", "cpu_s", "seconds")


class Tally:
    """Per model (``backend/name``): calls, tokens in and out, CPU and wall seconds."""

    def __init__(self):
        self.models: dict[str, dict] = {}

    def add(self, model: str, in_process: bool, input_tokens: int, output_tokens: int,
            cpu_s: float | None, seconds: float) -> None:
        m = self.models.setdefault(model, {"in_process": in_process, "calls": 0, "input_tokens": 0,
                                           "output_tokens": 0, "cpu_s": 0.0, "seconds": 0.0})
        m["calls"] += 1
        m["input_tokens"] += input_tokens or 0
        m["output_tokens"] += output_tokens or 0
        m["cpu_s"] = None if cpu_s is None or m["cpu_s"] is None else m["cpu_s"] + cpu_s
        m["seconds"] += seconds or 0.0

    def to_dict(self) -> dict:
        return {k: dict(v) for k, v in self.models.items()}


class tally:  # noqa: N801 - used as a context manager, like open()
    """Count the generations finished in this thread while the block runs."""

    def __enter__(self) -> Tally:
        self.spent = Tally()
        _stack().append(self.spent)
        return self.spent

    def __exit__(self, *exc) -> None:
        _stack().remove(self.spent)


def _stack() -> list[Tally]:
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


def cpu_clock() -> float | None:
    """This process's CPU seconds (every thread), None where the platform cannot say."""
    try:
        return time.process_time()
    except OSError:
        return None


def count(response, cpu_start: float | None) -> None:
    """A finished ``Response``: its tokens and times go to every tally open in this thread."""
    stack = getattr(_local, "stack", None)
    if not stack:
        return
    model = response.model
    now = cpu_clock()
    cpu = None if cpu_start is None or now is None else now - cpu_start
    for spent in stack:
        spent.add(f"{model.backend}/{model.info.name}", bool(getattr(model, "in_process", True)),
                  response.usage.prompt_tokens, response.usage.completion_tokens, cpu,
                  response.timings.total_s or 0.0)


def run_usage(results, only: str | None = None) -> list[tuple[str, dict]]:
    """Per model, a run's usage from its units' stored results (``usage`` of each), in the shape
    ``cost.usage`` gives (``units`` is every unit, ``counted`` those that stored a tally): the rows
    of ``cost.report``. ``only`` keeps one model's row."""
    results = list(results)
    counted = [r["usage"] for r in results if isinstance(r.get("usage"), dict)]
    rows: dict[str, dict] = {}
    for spent in counted:
        for model, m in spent.items():
            if only is not None and model != only:
                continue
            row = rows.setdefault(model, {"model": model, "name": model, "in_process": m["in_process"],
                                          "units": len(results), "counted": len(counted), "calls": 0,
                                          "input_tokens": 0, "output_tokens": 0, "cpu_s": 0.0,
                                          "seconds": 0.0})
            row["calls"] += m["calls"]
            row["input_tokens"] += m["input_tokens"]
            row["output_tokens"] += m["output_tokens"]
            row["cpu_s"] = None if m["cpu_s"] is None or row["cpu_s"] is None else row["cpu_s"] + m["cpu_s"]
            row["seconds"] += m["seconds"]
    for row in rows.values():
        if row["counted"] < row["units"]:  # units stored before tallies were: their CPU time is unknown
            row["cpu_s"] = None
    return list(rows.items())


def cost_section(results, reopened: bool = False, only: str | None = None) -> tuple:
    """``cost.report`` over a run's units: (table, notes, model -> figures); the table is None when
    no unit asked a model anything."""
    from .cost import report

    rows = run_usage(results, only)
    if not rows:
        return None, [], {}
    return report(rows, reopened=reopened, what="model")


def cost_markdown(table, notes: list[str]) -> str:
    """The report's "Tokens and estimated cost" section in markdown ('' without a table)."""
    if table is None:
        return ""
    lines = ["## Tokens and estimated cost", "", table.to_markdown(), ""]
    return "\n".join(lines + [f"- {n}" for n in notes])


def print_cost(table, notes: list[str], console) -> None:
    """The cost table and its notes, dimmed, on a terminal."""
    if table is None:
        return
    console.print(table.to_rich())
    for note in notes:
        console.print(note, style="dim", markup=False)


def markdown_with_cost(tables: list, cost, notes: list[str]) -> str:
    """A report's tables in markdown, then its "Tokens and estimated cost" section (when it has one)."""
    parts = [t.to_markdown() for t in tables] + ([cost_markdown(cost, notes)] if cost is not None else [])
    return "\n\n".join(parts) + "\n"


def show_with_cost(tables: list, cost, notes: list[str], fmt: str, console) -> str | None:
    """A re-opened report (``llmlab runs show``) with its cost section: printed, or markdown or CSV
    text (CSV: the tables only)."""
    from .runs.table import show_tables

    if fmt == "markdown":
        return markdown_with_cost(tables, cost, notes)
    text = show_tables(tables, fmt, console)
    if fmt == "terminal":
        print_cost(cost, notes, console)
    return text
