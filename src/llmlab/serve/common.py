"""What both APIs share: errors in each API's own format, settings, messages, running a generation.

An error is raised as ``ApiError`` (or any ``LlmlabError``) and rendered by the app in the format of
the API the request came to: OpenAI's ``{"error": {"message", "type", "param", "code"}}`` under
``/v1``, Ollama's ``{"error": "..."}`` under ``/api``. The message is always one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

from ..chat import Message, ToolCall
from ..config import GenerationConfig
from ..errors import (
    ConfigError,
    ContextOverflowError,
    LlmlabError,
    ModelNotFoundError,
    NotSupportedError,
    PromptError,
    RagError,
)
from ..models.events import TokenLogprob
from .models import QueueFull, Served, ServedModels, ShuttingDown, Work, run_generation

log = logging.getLogger("llmlab.serve")
DEFAULT_UNBOUNDED = 512  # new tokens when a request sets no limit and the window is unknown


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}


def api_error(exc: Exception) -> ApiError:
    """Any failure as an ApiError with the right status."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ShuttingDown):
        return ApiError(503, str(exc), code="server_shutting_down")
    if isinstance(exc, QueueFull):
        return ApiError(503, f"the queue for model {exc} is full; retry shortly", code="server_busy",
                        headers={"Retry-After": "1"})
    if isinstance(exc, ModelNotFoundError):
        return ApiError(404, str(exc), param="model", code="model_not_found")
    if isinstance(exc, (ContextOverflowError,)):
        return ApiError(400, str(exc), param="messages", code="context_length_exceeded")
    if isinstance(exc, (ConfigError, PromptError, NotSupportedError, RagError)):
        return ApiError(400, str(exc))
    if isinstance(exc, UnicodeError):  # JSON may spell a lone surrogate ("\ud800"); no text holds one
        return ApiError(400, "the request holds text that is not valid Unicode (a lone surrogate)",
                        code="invalid_text")
    if isinstance(exc, LlmlabError):
        return ApiError(500, str(exc), code="backend_error")
    return ApiError(500, f"internal error: {type(exc).__name__}: {exc}", code="internal_error")


def openai_body(err: ApiError) -> dict:
    kind = "invalid_request_error" if err.status < 500 else "server_error"
    if err.status == 401:
        kind = "authentication_error"
    return {"error": {"message": err.message, "type": kind, "param": err.param, "code": err.code}}


def ollama_body(err: ApiError) -> dict:
    return {"error": err.message}


def one_line_validation(errors) -> str:
    """FastAPI's validation errors as one line: ``messages: Field required; max_tokens: ...``."""
    parts = []
    for e in list(errors)[:3]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        msg = e.get("msg", "invalid")
        if e.get("type") == "json_invalid":
            return "the request body is not valid JSON"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "invalid request: " + "; ".join(parts)


def make_config(output: GenerationConfig | None = None, **settings) -> GenerationConfig:
    """A GenerationConfig from request fields, over ``output`` (``output_config()``'s schema and
    tools) where given; unset fields keep llmlab's defaults."""
    stop = settings.pop("stop", None)
    if isinstance(stop, str):
        stop = (stop,)
    try:
        return (output or GenerationConfig()).replace(stop=tuple(stop) if stop else None, **settings)
    except ConfigError as exc:
        raise ApiError(400, str(exc).replace("invalid generation setting: ", "invalid request: ")) from exc


def output_config(model, messages, *, schema=None, tools=None, tool_choice="auto",
                  params=("response_format", "tools", "tool_choice")) -> GenerationConfig:
    """What shapes the reply, checked once by ``GenerationConfig`` (the same checks as
    ``Model.prompt``): the JSON schema of the answer, the tools and the choice among them. A bad one
    is a 400 naming the request field (``params``) it came from.

    A conversation that holds tool calls or results but no tools (an agent's last turn, say) gets
    ``tool_choice="none"`` on a model without native tool calls, so its history is shown in the call
    format (``tools/calling.py``), which every chat template accepts, and the model answers in text.
    """
    config = GenerationConfig()
    if tools is not None and not isinstance(tools, (list, tuple)):
        raise ApiError(400, f"tools must be a list of tool definitions, got {type(tools).__name__}",
                       param=params[1])
    tools = tuple(tools or ())
    if not tools and tool_choice == "auto" and not model.can("tools") and any(
            m.tool_calls or m.role == "tool" for m in messages if isinstance(m, Message)):
        tool_choice = "none"
    fields = ("json_schema", "tools", "tool_choice")
    for param, name, value in zip(params, fields, (schema, tools, tool_choice), strict=True):
        try:
            config = config.replace(**{name: value})
        except ConfigError as exc:
            raise ApiError(400, str(exc), param=param) from exc
    return config


def as_shown(model, prompt, config: GenerationConfig | None):
    """The prompt as the model will read it, for counting its tokens: with tools on a model without
    native tool calls, ``Model.prompt`` rewrites the conversation in the call format with the tools
    described in the system turn (``tools.calling.prompt_with_tools``); otherwise it is as given."""
    if config is None or isinstance(prompt, str) or model.can("tools") or (
            not config.tools and config.tool_choice == "auto"):
        return prompt
    from ..tools.calling import shown_prompt

    return shown_prompt(model, prompt, config)


def budget(model, prompt, requested: int | None, output: GenerationConfig | None = None) -> int:
    """New tokens to allow: what was asked, at most what is left of the window (as Ollama and
    llama.cpp's server clamp it: clients send 100000 to mean "as much as fits"); unasked, all of it.
    A clamped value is said in the server's log. The prompt is counted as the model will read it
    (with ``output``'s tools described, ``as_shown``)."""
    ctx = model.info.context_length
    if not ctx:
        return requested if requested is not None else DEFAULT_UNBOUNDED
    try:
        used = model.count_tokens(as_shown(model, prompt, output))
    except LlmlabError:
        return requested if requested is not None else DEFAULT_UNBOUNDED
    if used >= ctx:
        raise ContextOverflowError(used, 1, ctx)
    left = ctx - used
    if requested is not None and requested <= left:
        return requested
    if requested is not None:
        log.warning("asked for %d new tokens; %d fit after the %d-token prompt, so %d it is",
                 requested, left, used, left)
    return left


def as_message(role: str, content, tool_calls=None, tool_call_id: str | None = None) -> Message:
    """A chat message from OpenAI/Ollama JSON: text, or a list of content parts (text only); an
    assistant turn's tool calls (either API's shape) and a tool turn's call id."""
    if role == "developer":
        role = "system"
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                raise ApiError(400, "only text content parts ({\"type\": \"text\", \"text\": \"...\"}) are "
                               "supported", param="messages")
        content = "".join(texts)
    if content is None:
        content = ""
    try:
        if not isinstance(tool_calls or [], list) or not all(isinstance(c, dict) for c in tool_calls or []):
            raise PromptError(f"a message's tool_calls must be a list of objects, got {tool_calls!r}")
        calls = tuple(ToolCall.from_dict(c) for c in tool_calls or ())
        return Message(role, content, calls, None if tool_call_id is None else str(tool_call_id))
    except PromptError as exc:
        raise ApiError(400, str(exc), param="messages") from exc


async def start(served: Served, fn):
    """Queue the work; wait for its first result, so errors before any output are a proper 4xx/5xx.

    Returns the rest of the results (an async iterator) and the first one (or None).
    """
    work = Work(fn)
    served.submit(work)
    results = work.results()
    try:
        first = await results.__anext__()
    except StopAsyncIteration:
        first = None
    except Exception:
        await results.aclose()
        raise
    return results, first


async def generation(models: ServedModels, name: str | None, prompt, config: GenerationConfig,
                     top_logprobs: int | None = None, request=None, grounded: bool = False):
    """Queue one generation; returns (served, async iterator of (kind, value)). A client of
    ``request`` that leaves while the request waits or its prompt is evaluated (before the first
    token, when no response has started) cancels it too. A rag model's name is taken only with
    ``grounded`` (the prompt is ``rag.ground()``'s)."""
    served = models.get(name, rag=grounded)
    if isinstance(prompt, list) and not served.model.info.chat_template:
        raise ApiError(400, f"model {served.name} has no chat template; use the completions endpoint")
    if top_logprobs is not None:
        want_logprobs(served.model)
        config = config.replace(logprobs=top_logprobs)
    results, first = await until_gone(request, start(served, run_generation(served.model, prompt, config)))

    async def chained():
        try:
            if first is not None:
                yield first
            async for item in results:
                yield item
        finally:
            await results.aclose()

    return served, chained()


async def collect(events, request=None, items: list | None = None):
    """A whole (non-streamed) answer from a generation's events: (text, log-probabilities, response).

    A client that leaves before the answer is complete (a timeout, a dropped connection) cancels the
    generation: nothing reads a non-streamed answer's body as it grows, so ``request``'s receive
    channel is watched for the disconnect, and on it the events are closed, which frees the model
    (or the engine slot) at its next step and logs the partial answer as interrupted.
    """
    pieces, items, response = [], list(items or []), None

    async def read():
        nonlocal response
        async for kind, value in events:
            if kind == "piece":
                pieces.append(value[0])
                items.extend(value[1])
            elif kind == "done":
                response, rest = value
                items.extend(rest)

    try:
        await until_gone(request, read())
    except ClientGone:
        await events.aclose()
        raise
    return "".join(pieces), items, response


async def until_gone(request, awaitable):
    """Await ``awaitable``, unless the client of ``request`` disconnects first: then it is cancelled
    and ``ClientGone`` raised. Without a request, just await it."""
    if request is None:
        return await awaitable
    task = asyncio.ensure_future(awaitable)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():  # the client left: stop working for nobody
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise ClientGone()
    return task.result()


class ClientGone(Exception):
    """The client closed the connection before its answer was ready; nothing is sent."""


async def _disconnected(request) -> None:
    while True:
        message = await request.receive()
        if message.get("type") == "http.disconnect":
            return


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def finish_reason(reason: str | None) -> str:
    return {"context": "length", "interrupted": "stop", None: "stop"}.get(reason, reason or "stop")


def want_logprobs(model, param: str = "logprobs") -> None:
    """A 400 unless the model can return token log-probabilities."""
    if not model.can("logprobs"):
        raise ApiError(400, f"log-probabilities are not available for {model.backend}/{model.info.name} "
                       "(llamacpp and hf models have them)", param=param)


def logprob_entry(lp: TokenLogprob) -> dict:
    """One token in OpenAI chat format (also what Ollama returns)."""
    return {"token": lp.token, "logprob": lp.logprob, "bytes": list(lp.token.encode("utf-8")),
            "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode("utf-8"))}
                             for t, v in lp.top]}


async def call(served: Served, compute, request=None):
    """Run ``compute()`` in the model's queue (serialized with its generations); returns its value.

    With ``request``, ``compute`` takes the work's cancel event, which is set when the client leaves,
    so a long computation (echo log-probabilities of a long prompt) can stop at its next batch.
    """
    if request is None:
        results, first = await start(served, lambda work: work.emit("value", compute()))
    else:
        results, first = None, None
        work_events = []

        def fn(work):
            work_events.append(work.cancelled)
            work.emit("value", compute(work.cancelled))

        try:
            results, first = await until_gone(request, start(served, fn))
        except ClientGone:
            for event in work_events:
                event.set()
            raise
    await results.aclose()
    return first[1] if first else None
