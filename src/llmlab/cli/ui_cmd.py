"""``llmlab ui``: the web UI in a browser (chat, arena, evaluations, runs, probes, RAG).

    llmlab ui                      # http://127.0.0.1:7860
    llmlab ui --port 8080 -m gemma3-270m

The same app is at ``/ui`` under ``llmlab serve``. It works offline: no request leaves the machine.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .foundation import NCtx, Threads
from .main import app


@app.command("ui")
def ui_command(
    host: Annotated[str, typer.Option("--host", help="address to listen on")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(
        "--port", help="port (default: the first free from 7860)")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="the model pages start with")] = "smollm2",
    n_ctx: NCtx = None, threads: Threads = None,
):
    """Open the web UI (Gradio) on HOST:PORT."""
    from ..ui.app import launch
    from ..ui.workbench import Workbench

    wb = Workbench(default_model=model, n_ctx=n_ctx, n_threads=threads)
    launch(wb, host=host, port=port)
