"""The ``llmlab`` command: the app, error handling and the foundation commands.

Every ``LlmlabError`` is printed as one line on stderr with exit code 1; Ctrl-C exits 130 after
logging what was generated so far. Heavy libraries (llama_cpp, torch) are imported only inside the
commands that need them, so ``llmlab --help`` stays fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import LlmlabError

app = typer.Typer(
    name="llmlab", no_args_is_help=True, add_completion=False,
    help="Load, prompt, evaluate and probe language models on your own machine.",
    context_settings={"help_option_names": ["-h", "--help"]},
)

ModelOpt = Annotated[str, typer.Option(
    "--model", "-m", help="backend/name, alias or path (see `llmlab models`)")]
# remote models at fleet scale (models/fleet.py), for every command that runs many items
ConcurrencyOpt = Annotated[int, typer.Option(
    "--concurrency", "-j", help="items in flight at once to remote models (openai/, ollama/); a model "
    "name may list several servers: openai/NAME@URL1,URL2")]
RpmOpt = Annotated[int | None, typer.Option(
    "--rpm", help="remote models: at most this many requests a minute", show_default=False)]
TpmOpt = Annotated[int | None, typer.Option(
    "--tpm", help="remote models: at most this many tokens a minute (estimated before sending)",
    show_default=False)]
BalanceOpt = Annotated[str | None, typer.Option(
    "--balance", help="remote models with several servers: least-busy (default) | round-robin",
    show_default=False)]


@app.callback()
def _main(db: Annotated[Path | None, typer.Option(
        "--db", help="call log database (default: $LLMLAB_DB, else the user data directory)")] = None):
    if db is not None:
        os.environ["LLMLAB_DB"] = str(db)


def err(message: str) -> None:
    print(f"llmlab: {message}", file=sys.stderr)


def run() -> None:
    """Console entry point: one line per error, never a traceback for a user error."""
    for arg in sys.argv[1:]:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:  # bytes the locale could not decode (a Latin-1 terminal, a file name)
            shown = os.fsencode(arg)
            err(f"error: the argument {shown!r} is not UTF-8 text; set the terminal to UTF-8, or "
                "pipe the text through 'iconv -t utf-8' and pass '-' to read it from stdin")
            sys.exit(1)
    try:
        code = app(standalone_mode=False)  # returns the code of a typer.Exit raised in a command
    except LlmlabError as exc:
        err(f"error: {exc}")
        sys.exit(1)
    except KeyboardInterrupt as exc:  # a run's RunInterrupted says what is stored and how to resume
        err(str(exc) or "interrupted")
        sys.exit(130)
    except typer.Abort:
        err("aborted")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # usage errors (typer's own copy of click's) carry their own formatting
        show, code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            sys.exit(code)
        raise
    sys.exit(code if isinstance(code, int) else 0)


# Commands live in their own modules; importing them registers them on `app`.
from . import foundation  # noqa: E402,F401,I001
from . import info_cmd  # noqa: E402,F401,I001
from . import eval_cmd  # noqa: E402,F401,I001
from . import serve_cmd  # noqa: E402,F401,I001
from . import probe_cmd  # noqa: E402,F401,I001
from . import bench_cmd  # noqa: E402,F401,I001
from . import cost_cmd  # noqa: E402,F401,I001
from . import doctor_cmd  # noqa: E402,F401,I001
from . import runs_cmd  # noqa: E402,F401,I001
from . import similarity_cmd  # noqa: E402,F401,I001
from . import rag_cmd  # noqa: E402,F401,I001
from . import flow_cmd  # noqa: E402,F401,I001
from . import agent_cmd  # noqa: E402,F401,I001
from . import arena_cmd  # noqa: E402,F401,I001
from . import ui_cmd  # noqa: E402,F401,I001
from . import generate_cmd  # noqa: E402,F401,I001
from . import tune_cmd  # noqa: E402,F401,I001
from . import tune_export_cmd  # noqa: E402,F401,I001
# (each feature adds its command module here)
