"""``llmlab runs``: past runs of any kind (evaluations, probes, benchmarks, tuning), and re-opening one.

    llmlab runs                         # the 20 most recent runs: id, kind, when, model, task, units, state
    llmlab runs --kind probe -n 0       # every probe run
    llmlab runs show 12                 # re-open run 12's report: the tables it printed, nothing recomputed
    llmlab runs show 3 4 5              # the systems of one evaluation together: comparison and McNemar tests
    llmlab runs show 12 --format markdown > report.md

No model is loaded and nothing is computed: the report is rebuilt from what the run stored.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .main import app

runs_app = typer.Typer(help="List past runs of any kind, and re-open one's report.",
                       no_args_is_help=False, invoke_without_command=True)
app.add_typer(runs_app, name="runs")

FormatOpt = Annotated[str, typer.Option("--format", "-f", help="terminal | markdown | csv")]


@runs_app.callback(invoke_without_command=True)
def runs(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Option(
        "--kind", "-k", help="only runs of this kind: eval | benchmark | probe | bench | rag | flow | agent "
        "| tune")] = None,
    count: Annotated[int, typer.Option("--count", "-n", help="how many (0 = all)")] = 20,
    fmt: FormatOpt = "terminal",
):
    """Past runs, newest first: id, kind, when, model, task or suite, units done/planned, state."""
    if ctx.invoked_subcommand is not None:
        return
    from ..errors import ConfigError
    from ..runs.reopen import FORMATS, KINDS, runs_table
    from ..store import Store

    if count < 0:
        raise ConfigError(f"--count must be >= 0 (0 = all), got {count}")
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    store = Store.open(write=False)
    try:
        table = runs_table(store.runs(limit=count or None, kind=kind))
    finally:
        store.close()
    _emit(table, fmt)


@runs_app.command("show")
def show(
    ids: Annotated[list[int], typer.Argument(help="run id(s), as `llmlab runs` lists them",
                                             show_default=False)],
    fmt: FormatOpt = "terminal",
):
    """Re-open stored runs' report (the same tables the run printed) without loading a model."""
    from rich.console import Console

    from ..runs.reopen import show as show_runs
    from ..store import Store

    store = Store.open(write=False)
    try:
        text = show_runs(store, ids, fmt, Console())
    finally:
        store.close()
    if text is not None:
        print(text, end="" if text.endswith("\n") else "\n")


def _emit(table, fmt: str) -> None:
    if fmt == "markdown":
        print(table.to_markdown())
    elif fmt == "csv":
        print(table.to_csv(), end="")
    else:
        from rich.console import Console

        Console().print(table.to_rich())
