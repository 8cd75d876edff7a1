"""The one runner: plan, skip what is stored, run the rest unit by unit into the store, summarise.

    >>> from llmlab.runs import execute
    >>> outcome = execute(kind, store, progress=bar)   # doctest: +SKIP
    >>> outcome.run_id, outcome.resumed, outcome.summary

Every kind (evaluation system, probe suite, benchmark) runs through ``execute``. Each finished unit
is written to the store at once, so Ctrl-C or a kill loses at most the unit in hand; the same run
started again (same kind, same fingerprint) finds the stored units and computes only the rest, and
``fresh=True`` starts a new run instead. Every result is round-tripped through JSON before it is
kept, so the summary of an interrupted-and-resumed run is computed from exactly the data an
uninterrupted run's summary is.

Ctrl-C raises ``RunInterrupted`` (a ``KeyboardInterrupt``) whose message says what is stored and
how to resume. Without a store (``store=None``) nothing resumes and nothing is kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import ConfigError
from .protocol import RunKind, fingerprint


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: the finished units are stored, and the same command resumes."""

    def __init__(self, kind: str, run_id: int | None, done: int, planned: int):
        self.kind, self.run_id, self.done, self.planned = kind, run_id, done, planned
        where = (f"{done} of {planned} units of {kind} run {run_id} are stored; run the same command "
                 f"again to resume (`llmlab runs` lists it)") if run_id is not None else "nothing was stored"
        super().__init__(f"interrupted: {where}")


@dataclass
class RunOutcome:
    run_id: int | None
    results: dict[str, dict]   # key -> result, in plan order
    resumed: int               # units found already stored
    summary: dict


def execute(kind: RunKind, store=None, *, fresh: bool = False, progress=None) -> RunOutcome:
    """Run ``kind`` to the end, resuming a stored run with the same fingerprint unless ``fresh``;
    ``progress`` is a rich ``Progress`` (``progress_bar()``) that gets one bar for this run."""
    units = kind.plan()
    keys = [u.key for u in units]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ConfigError(f"{kind.kind} run: two units have the key {dup!r}")
    run_id, done = None, {}
    if store is not None:
        run_id, done = store.open_run(kind.kind, fingerprint(kind.identity()), kind.header(),
                                      model=kind.model, subject=kind.subject, planned=len(units),
                                      fresh=fresh)
    wanted = set(keys)
    done = {k: v for k, v in done.items() if k in wanted}
    resumed = len(done)
    bar = progress.add_task(kind.label or kind.kind, total=len(units)) if progress is not None else None
    if bar is not None:
        progress.update(bar, completed=resumed)  # update (not add_task) marks a resumed-complete bar done
    todo = [u for u in units if u.key not in done]
    try:
        kind.start(todo)
        for unit in todo:
            result = json.loads(_dumps(kind.run_unit(unit)))
            if store is not None:
                store.add_unit(run_id, unit.key, unit.seq, result)
            done[unit.key] = result
            if bar is not None:
                progress.advance(bar)
    except RunInterrupted:
        raise
    except KeyboardInterrupt:
        raise RunInterrupted(kind.kind, run_id, len(done), len(units)) from None
    results = {k: done[k] for k in keys}
    summary = json.loads(_dumps(kind.summarise(results)))
    if store is not None:
        store.finish_run(run_id, summary)
    return RunOutcome(run_id, results, resumed, summary)


def _dumps(value) -> str:
    from ..store.runs import dumps

    return dumps(value)
