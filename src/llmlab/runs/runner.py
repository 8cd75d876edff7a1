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

from ..checks import whole_number
from ..errors import ConfigError, TransientError
from .protocol import RunKind, Unit, fingerprint

UNIT_TRIES = 3  # a unit whose server failed on the way is run this many times in all


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


def execute(kind: RunKind, store=None, *, fresh: bool = False, progress=None,
            concurrency: int = 1) -> RunOutcome:
    """Run ``kind`` to the end, resuming a stored run with the same fingerprint unless ``fresh``;
    ``progress`` is a rich ``Progress`` (``progress_bar()``) that gets one bar for this run;
    ``concurrency`` > 1 runs that many units at once in threads (for kinds whose units call
    remote servers), each stored as it finishes."""
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

    def finish(unit: Unit, result: dict) -> None:  # in this thread only: the store is not shared
        result = json.loads(_dumps(result))
        if store is not None:
            store.add_unit(run_id, unit.key, unit.seq, result)
        done[unit.key] = result
        if bar is not None:
            progress.advance(bar)

    try:
        kind.start(todo)
        if concurrency > 1 and len(todo) > 1:
            run_concurrently(kind, todo, concurrency, finish)
        else:
            for unit in todo:
                finish(unit, attempt(kind, unit))
    except RunInterrupted:
        raise
    except KeyboardInterrupt:
        raise RunInterrupted(kind.kind, run_id, len(done), len(units)) from None
    results = {k: done[k] for k in keys}
    summary = json.loads(_dumps(kind.summarise(results)))
    if store is not None:
        store.finish_run(run_id, summary)
    return RunOutcome(run_id, results, resumed, summary)


def check_concurrency(concurrency: int, models) -> int:
    """``concurrency`` when every model can take that many calls at once (remote ones), else one
    ConfigError line saying what to do instead."""
    whole_number("--concurrency", concurrency)
    if concurrency > 1:
        for m in models:
            if m is not None and not getattr(m, "concurrent", False):
                raise ConfigError(
                    f"--concurrency {concurrency} is for remote models (openai/, ollama/): "
                    f"{m.backend}/{m.info.name} computes one item at a time in this process; serve it "
                    "with `llmlab serve --parallel N` and evaluate openai/NAME@URL instead")
    return concurrency


def attempt(kind: RunKind, unit: Unit, tries: int = UNIT_TRIES) -> dict:
    """``kind.run_unit(unit)``, run again when a server failed on the way (a ``TransientError``:
    unreachable, busy, a dropped connection), which another server of a pool or a moment may cure.
    For a kind that asks (``tally``) the result carries what its generations spent, per model, under
    ``usage`` (failed tries included: their tokens were spent too)."""
    if not kind.tally:
        return _tries(kind, unit, tries)
    from ..tally import tally

    with tally() as spent:
        result = _tries(kind, unit, tries)
    return {**result, "usage": spent.to_dict()}


def _tries(kind: RunKind, unit: Unit, tries: int) -> dict:
    for n in range(tries):
        try:
            return kind.run_unit(unit)
        except TransientError:
            if n == tries - 1:
                raise
    raise AssertionError("unreachable")


def run_concurrently(kind: RunKind, todo: list[Unit], concurrency: int, finish) -> None:
    """Units in ``concurrency`` threads, handed to ``finish`` here as each completes; at most
    ``2 x concurrency`` are submitted ahead. On an error or Ctrl-C nothing new starts; the units in
    flight are waited for and kept, then the error is raised."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    whole_number("--concurrency", concurrency)
    pending = iter(todo)
    running: dict = {}
    error: BaseException | None = None
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"llmlab-{kind.kind}")
    try:
        while True:
            while error is None and len(running) < 2 * concurrency:
                unit = next(pending, None)
                if unit is None:
                    break
                running[pool.submit(attempt, kind, unit)] = unit
            if not running:
                break
            try:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt as exc:
                error = exc
                for future in running:
                    future.cancel()
                continue
            for future in finished:
                unit = running.pop(future)
                if future.cancelled():
                    continue
                if future.exception() is not None:
                    error = error or future.exception()
                    continue
                finish(unit, future.result())
    finally:
        pool.shutdown(wait=error is None or not isinstance(error, KeyboardInterrupt), cancel_futures=True)
    if error is not None:
        raise error


def _dumps(value) -> str:
    from ..store.runs import dumps

    return dumps(value)
