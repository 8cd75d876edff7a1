"""``llmlab doctor``: one line per component of the install, each checked in a child process."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .main import app


@app.command()
def doctor(
    component: Annotated[list[str] | None, typer.Option(
        "--component", "-c", help="check only this component (repeatable; default: all)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
):
    """Check that the install works: llama.cpp and the CPU path, each bundled model, the extras."""
    from ..checks import did_you_mean
    from ..doctor import CHECKS, diagnose
    from ..errors import ConfigError

    for name in component or []:
        if name not in CHECKS:
            raise ConfigError(f"unknown component {name!r}{did_you_mean(name, CHECKS)}; "
                              f"components: {', '.join(CHECKS)}")
    lines = diagnose(component, on_line=None if as_json else lambda line: print(line.render(), flush=True))
    if as_json:
        print(json.dumps([line.__dict__ for line in lines], indent=2))
    failed = [line.component for line in lines if not line.ok]
    if not as_json:
        print(f"{len(lines) - len(failed)} of {len(lines)} components work"
              + (f"; failing: {', '.join(failed)}" if failed else ""))
    raise typer.Exit(1 if failed else 0)
