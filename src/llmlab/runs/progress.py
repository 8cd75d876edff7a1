"""The one progress display for runs: a rich bar per run with done/planned, elapsed time and ETA.

It draws on stderr, so a command's tables on stdout stay clean when piped. ``progress_bar(False)``
is a context that yields None, which every runner takes as "no progress shown".
"""

from __future__ import annotations

from contextlib import nullcontext


def progress_bar(show: bool = True, transient: bool = False, detail: str | None = None):
    """``detail``: a rich format string shown after the count (a run's own fields, such as a loss)."""
    if not show:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if detail:
        columns.append(TextColumn(detail))
    return Progress(*columns, TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=transient)
