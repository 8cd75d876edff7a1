"""The FastAPI app behind ``llmlab serve``: both APIs, the guard in front of them, and a few extras.

In front of every route sits one small ASGI guard: with an API key set, a request without
``Authorization: Bearer KEY`` gets 401; a body over the size limit gets 413 before it is read
whole. Errors come back in the format of the API that was called (see ``common.py``), and none of
them stops the server.

Extras in llama.cpp's server format, so llmlab's ``openai/`` backend can count tokens and render
the chat template of a served model and its requests running and waiting: ``GET /props?model=NAME``
and ``POST /tokenize``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict

from ..chat import check_text
from ..errors import LlmlabError
from .common import ApiError, ClientGone, api_error, call, ollama_body, one_line_validation, openai_body
from .models import QueueFull, ServedModels, ShuttingDown

log = logging.getLogger("llmlab.serve")
UI_PATH = "/ui"
OPEN_PATHS = {"/", "/health", "/api/version"}  # answer without a key, as health checks need


def _render(path: str, err: ApiError) -> JSONResponse:
    body = ollama_body(err) if path.startswith("/api/") else openai_body(err)
    return JSONResponse(body, status_code=err.status, headers=err.headers)


class Guard:
    """API key check and body size limit, before any route runs."""

    lifespan = "off"  # what uvicorn runs of the app's startup and shutdown (the UI needs "on")

    def __init__(self, app, api_key: str | None, max_body: int, body_timeout: float = 30.0):
        self.app = app
        self.api_key = api_key
        self.max_body = max_body
        self.body_timeout = body_timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path == UI_PATH or path.startswith(UI_PATH + "/"):
            # the web UI: gradio's own uploads, limits and login (the key is its password)
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.api_key and path not in OPEN_PATHS and not self._authorized(headers):
            err = ApiError(401, "missing or wrong API key (send Authorization: Bearer KEY)",
                           code="invalid_api_key")
            return await _render(path, err)(scope, receive, send)
        declared = headers.get("content-length")
        too_big = ApiError(413, f"the request body is larger than {self.max_body} bytes",
                           code="request_too_large")
        if declared and declared.isdigit() and int(declared) > self.max_body:
            return await _render(path, too_big)(scope, receive, send)
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        # read the body here, counting, so a chunked upload cannot exceed the limit either
        chunks, size, more = [], 0, True
        while more:
            try:  # a body that stops coming must not hold the connection forever
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except TimeoutError:
                late = ApiError(408, f"the request body did not arrive within {self.body_timeout:g} s",
                                code="request_timeout")
                return await _render(path, late)(scope, receive, send)
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return await _render(path, too_big)(scope, receive, send)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False
        if "json" not in headers.get("content-type", ""):
            # like Ollama, read the body as JSON whatever it is labelled (curl -d sends a form type)
            scope = dict(scope, headers=[(k, v) for k, v in scope.get("headers", [])
                                         if k.lower() != b"content-type"]
                         + [(b"content-type", b"application/json")])

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later calls wait for the disconnect, as streaming needs

        return await self.app(scope, replay, send)

    def _authorized(self, headers: dict) -> bool:
        auth = headers.get("authorization", "")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else headers.get("x-api-key", "")
        return hmac.compare_digest(given.encode(), self.api_key.encode())


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    content: str
    model: str | None = None
    add_special: bool = False
    parse_special: bool = True
    with_pieces: bool = False


def create_app(models: ServedModels, *, api_key: str | None = None, max_body: int = 1 << 20,
               body_timeout: float = 30.0, ui=None):
    """The server's app. ``ui`` (a ``llmlab.ui.Workbench``) mounts the web UI at ``/ui``; it loads
    its own copies of the models it is asked for, since the served ones belong to the serving
    engine's threads. With ``api_key`` the UI asks for a login: user ``llmlab``, the key as password."""
    from . import ollama_api, openai_api

    app = FastAPI(title="llmlab serve", version="1", docs_url="/docs", redoc_url=None)
    app.state.models = models
    app.state.started = int(time.time())
    app.include_router(openai_api.router)
    app.include_router(ollama_api.router)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return _render(request.url.path, ApiError(400, one_line_validation(exc.errors())))

    async def _failed(request: Request, exc: Exception):
        err = api_error(exc)
        if err.status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, err.message)
        return _render(request.url.path, err)

    # expected failures are answered by the exception middleware; anything else by the last resort
    for kind in (ApiError, LlmlabError, QueueFull, ShuttingDown, UnicodeError, Exception):
        app.add_exception_handler(kind, _failed)

    @app.exception_handler(ClientGone)
    async def _gone(request: Request, exc: ClientGone):
        return Response(status_code=499)  # nobody is listening; the generation was stopped

    from starlette.exceptions import HTTPException

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        return _render(request.url.path, ApiError(exc.status_code, str(exc.detail)))

    @app.get("/", include_in_schema=False)
    async def root():
        return PlainTextResponse("llmlab is running")

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": list(models.by_name)}

    @app.get("/props")
    async def props(model: str | None = None):
        served = models.get(model, rag=True)
        info = served.model.info  # a rag model's: its answering model's
        return {"chat_template": info.chat_template or "", "bos_token": info.bos_token,
                "eos_token": info.eos_token,
                # the file name, not where it lives on the server's disk
                "model_path": Path(info.path).name if info.path else info.name,
                "default_generation_settings": {"n_ctx": info.context_length},
                "requests": served.load()}

    @app.post("/tokenize")
    async def tokenize(req: TokenizeRequest):
        check_text(req.content, "content")
        served = models.get(req.model, rag=True)
        model = served.model
        if req.add_special:  # BOS where the model adds one, control-token text read as tokens
            return {"tokens": await call(served, lambda: model.encode(req.content))}
        if req.with_pieces or not req.parse_special:  # as plain text (pieces only this way)
            tokens = await call(served, lambda: model.tokenize(req.content))
            if req.with_pieces:
                return {"tokens": [{"id": t.id, "piece": t.text} for t in tokens]}
            return {"tokens": [t.id for t in tokens]}
        return {"tokens": await call(served, lambda: model.token_ids(req.content, special=True))}

    guard = Guard(app, api_key, max_body, body_timeout)
    if ui is not None:
        from ..ui.app import mount

        mount(app, ui, UI_PATH, auth=("llmlab", api_key) if api_key else None)
        guard.lifespan = "on"  # gradio starts its queue in the app's startup
    return guard
