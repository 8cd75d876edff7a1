"""``llmlab serve``: serve local models over the OpenAI-compatible and Ollama-compatible APIs.

    llmlab serve                                   # smollm2 on http://127.0.0.1:8000
    llmlab serve -m smollm2 -m llama3.2:1b=smollm2 -e minilm --port 11434
    llmlab serve --api-key secret                  # requests need Authorization: Bearer secret
    llmlab serve --parallel 8 --batch-prompts      # faster under load; answers may depend on the batch
    llmlab serve -m smollm2 -m rag/novels@smollm2 --store ./rag   # answers from a collection, with sources

The server listens on 127.0.0.1 unless ``--host`` says otherwise. FastAPI and uvicorn are imported
only when the command runs.
"""

from __future__ import annotations

import os
import socket
from typing import Annotated

import typer

from ..errors import ConfigError, MissingDependencyError
from .main import app, err


def _check_port(host: str, port: int) -> None:
    """Fail with one line when the address is taken, before minutes are spent loading models."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                              "(pick another --port)") from exc


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on (127.0.0.1 keeps it on this machine)")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (Ollama's is 11434)")] = 8000,
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="model to serve: alias, backend/name or path; NAME=MODEL serves it under "
        "another name too; rag/COLLECTION@MODEL answers from a collection with MODEL, sources in the "
        "response (repeatable; default smollm2)")] = None,
    embedding: Annotated[list[str] | None, typer.Option(
        "--embedding", "-e", help="embedding model for /v1/embeddings and /api/embed (minilm = the "
        "bundled all-MiniLM-L6-v2; repeatable)")] = None,
    store: Annotated[str | None, typer.Option(
        "--store", help="where rag/ models' collections live, as for llmlab rag --store (default: "
        "data dir/rag)")] = None,
    rag_k: Annotated[int, typer.Option("--rag-k", help="excerpts a rag/ model retrieves per question")] = 5,
    rag_retriever: Annotated[str, typer.Option(
        "--rag-retriever", help="how a rag/ model retrieves: dense, bm25 or hybrid")] = "hybrid",
    api_key: Annotated[str | None, typer.Option(
        "--api-key", help="require Authorization: Bearer KEY (default: $LLMLAB_API_KEY, else none)")] = None,
    parallel: Annotated[int, typer.Option(help="requests decoded together per GGUF model")] = 4,
    batch_prompts: Annotated[bool, typer.Option(
        "--batch-prompts", help="evaluate new prompts in the same llama.cpp batches as the running "
        "generations: faster under concurrent load, but a greedy answer may then depend on the "
        "other requests (default: each prompt alone, answers independent of the batch)")] = False,
    n_ctx: Annotated[int | None, typer.Option(
        "--n-ctx", help="context window of each request (default 4096 for a GGUF model)")] = None,
    queue_size: Annotated[int, typer.Option(help="requests that may wait per model before 503")] = 64,
    threads: Annotated[int | None, typer.Option(
        help="llama.cpp threads per GGUF model (default: every core but one)")] = None,
    max_body: Annotated[int, typer.Option(help="largest request body in bytes")] = 1 << 20,
    log: Annotated[bool, typer.Option("--log/--no-log", help="write each generation to the call log")]
    = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no access log")] = False,
    ui: Annotated[bool, typer.Option("--ui/--no-ui", help="the web UI at /ui (needs llmlab[ui])")] = True,
    grace: Annotated[float, typer.Option(
        help="on SIGTERM or Ctrl-C, seconds that running requests get to finish before they are "
        "ended with an error")] = 10.0,
    header_timeout: Annotated[float, typer.Option(
        help="seconds a connection may take to send its request headers, and to send each piece of "
        "its body")] = 10.0,
):
    """Serve local models over HTTP: OpenAI-compatible /v1 and Ollama-compatible /api."""
    for name, value, low in (("--port", port, 1), ("--parallel", parallel, 1),
                             ("--queue-size", queue_size, 1), ("--max-body", max_body, 1024),
                             ("--threads", threads or 1, 1)):
        if value < low or (name == "--port" and value > 65535):
            raise ConfigError(f"{name} must be >= {low}" + (" and <= 65535" if name == "--port" else "")
                              + f", got {value}")
    if api_key is not None and not api_key.strip():  # said on purpose: off, whatever the environment
        err("warning: --api-key is empty, so authentication is off: any client may use this server")
        api_key = None
    else:
        api_key = (api_key or os.environ.get("LLMLAB_API_KEY") or "").strip() or None
    if api_key is not None and not api_key.isascii():
        raise ConfigError("the API key must be ASCII text (HTTP headers carry no other)")
    _check_port(host, port)
    for name, seconds in (("--grace", grace), ("--header-timeout", header_timeout)):
        if not seconds > 0:
            raise ConfigError(f"{name} must be a number of seconds > 0, got {seconds}")
    try:
        from ..serve import server
        from ..serve.app import create_app
        from ..serve.loading import load_served
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "fastapi", "serve") from exc
    if host not in ("127.0.0.1", "localhost", "::1"):
        err(f"warning: listening on {host}, reachable from other machines"
            + ("" if api_key else "; consider --api-key"))
    models = load_served(model or [], embedding or [], parallel=parallel, n_ctx=n_ctx,
                         queue_size=queue_size, threads=threads, log=log, batch_prompts=batch_prompts,
                         rag_store=store, rag_k=rag_k, rag_retriever=rag_retriever)
    try:
        shown = f"[{host}]" if ":" in host else host
        err(f"serving {', '.join(models.by_name)} at http://{shown}:{port} "
            f"(OpenAI API: http://{shown}:{port}/v1, Ollama API: http://{shown}:{port}/api)")
        workbench = None
        if ui:
            try:
                import gradio  # noqa: F401

                from ..ui.workbench import Workbench

                first = (model or ["smollm2"])[0].split("=", 1)[-1]  # NAME=MODEL serves MODEL
                workbench = Workbench(default_model="smollm2" if first.startswith("rag/") else first,
                                      n_ctx=n_ctx, n_threads=threads)
                err(f"web UI: http://{shown}:{port}/ui")
            except ImportError:
                err("note: no web UI at /ui: it needs gradio (pip install 'llmlab[ui]')")
        app = create_app(models, api_key=api_key, max_body=max_body, body_timeout=header_timeout,
                         ui=workbench)
        server.run(app, models, host=host, port=port,
                   grace=grace, header_timeout=header_timeout, quiet=quiet)
    finally:
        models.close()  # waits for the workers, so every call is logged
