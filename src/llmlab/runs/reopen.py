"""Past runs of any kind: the list (``llmlab runs``) and one run's report re-opened from the store.

Re-opening reads the run's header, units and summary and hands them to its kind, which builds the
same result object the run returned (an ``EvalResult``, ``ProbeRun``s, a ``BenchResult``); nothing
is loaded or computed again. Several ids re-open together when they are of one kind: the systems of
one evaluation give its comparison table and McNemar tests, several probe runs their summary.

What it gives up: an evaluation's texts are not stored (only ids, gold labels and predictions), and
an unfinished evaluation cannot be re-opened (its metrics need every item); an unfinished probe or
bench run shows what it has.
"""

from __future__ import annotations

import importlib

from ..errors import ConfigError
from .table import Column, Table

FORMATS = ("terminal", "markdown", "csv")
# each kind of run re-opens its own runs: ``show_runs(store, rows, fmt, console)`` in its module,
# imported by name when asked for (a lazy registry), so this package imports no kind of run
KINDS = {"eval": "llmlab.evals.runner", "probe": "llmlab.probes.report", "bench": "llmlab.bench_report",
         "rag": "llmlab.rag.evaluate", "flow": "llmlab.flows.run",
         "agent": "llmlab.tools.evaluate", "tune": "llmlab.tune.run", "benchmark": "llmlab.benchmarks.run",
         "generation": "llmlab.gentasks.report"}


def runs_table(rows: list[dict]) -> Table:
    """One row per run: id, kind, when, model, task or suite, units done/planned, state."""
    t = Table([Column("id", justify="right"), "kind", "when", "model", "task / suite",
               Column("units", justify="right"), "state"], title="runs (llmlab runs show ID re-opens one)",
              title_justify="left")
    for r in rows:
        t.add_row(str(r["id"]), r["kind"], _when(r["created"]), r["model"] or "", describe(r),
                  f"{r['done']}/{r['planned']}", r["state"])
    return t


def describe(row: dict) -> str:
    h = row["header"]
    if row["kind"] == "eval":
        words = [h.get("task") or row["subject"], h.get("strategy"), h.get("method")]
        if (h.get("repeats") or 1) > 1:
            words.append(f"#{(h.get('repeat') or 0) + 1}")
        return " · ".join(w for w in words if w and w != "-") or (row["subject"] or "")
    return row["subject"] or ""


def _when(ts: str) -> str:
    from datetime import datetime

    try:
        return datetime.fromisoformat(ts).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return ts


def load(store, ids: list[int]) -> list[dict]:
    """The stored runs with these ids (one kind), or a one-line ConfigError naming what is wrong."""
    if not ids:
        raise ConfigError("give the ID of a run (`llmlab runs` lists them)")
    rows = []
    for run_id in ids:
        row = store.run(run_id)
        if row is None:
            raise ConfigError(f"no run {run_id} in {store.path} (`llmlab runs` lists the runs there)")
        rows.append(row)
    kinds = sorted({r["kind"] for r in rows})
    if len(kinds) > 1:
        raise ConfigError(f"runs {', '.join(map(str, ids))} are of different kinds ({', '.join(kinds)}); "
                          "re-open runs of one kind together")
    return rows


def show(store, ids: list[int], fmt: str = "terminal", console=None) -> str | None:
    """Re-open runs: print them (``terminal``) or return their report as markdown or CSV text."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    rows = load(store, ids)
    kind = rows[0]["kind"]
    if kind not in KINDS:
        raise ConfigError(f"run {rows[0]['id']} is of a kind this llmlab does not know: {kind!r}")
    return importlib.import_module(KINDS[kind]).show_runs(store, rows, fmt, console)
