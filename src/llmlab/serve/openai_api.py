"""The OpenAI-compatible API: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings``; streaming as server-sent events, log-probabilities, ``echo`` for scoring.

Unset settings take OpenAI's defaults (temperature 1, top_p 1, no token limit but the window;
``max_tokens`` 16 for completions); ``top_k`` and ``repeat_penalty`` are accepted as llama.cpp's
server accepts them. Only ``n = 1`` is supported. ``/v1/completions`` with ``echo`` and ``logprobs``
returns the log-probability of every prompt token (``max_tokens: 0`` returns only those), which is
how lm-evaluation-harness, and llmlab's own ``openai/`` backend, score continuations. A rag model
(``rag.py``) answers chat requests with its sources beside the answer; ``/v1/completions`` refuses it.

``response_format`` (``json_object``, ``json_schema``) and ``tools``/``tool_choice`` on chat requests
become ``GenerationConfig.json_schema``, ``tools`` and ``tool_choice``, and the request runs through
``Model.prompt`` like any other (``models.run_generation``): a GGUF model's reply is decoded under a
grammar in the serving engine, and a model without native tool calls gets its tools through the
constrained call format of ``tools/calling.py``. A call comes back in OpenAI's ``tool_calls`` shape
with finish reason ``tool_calls``; streamed, when the reply is complete (the call format is one JSON
value, read once it closes), as the call's head and then its arguments, as OpenAI streams them.
One reply holds at most one call, whatever ``parallel_tool_calls`` says.
"""

from __future__ import annotations

import base64
import json
import struct

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ..chat import check_text
from ..errors import ContextOverflowError
from .common import (
    ApiError,
    api_error,
    as_message,
    budget,
    call,
    collect,
    finish_reason,
    generation,
    logprob_entry,
    make_config,
    new_id,
    now,
    openai_body,
    output_config,
    want_logprobs,
)
from .embeddings import embed, texts_of
from .rag import ground

router = APIRouter(prefix="/v1")


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")  # clients send many fields this server ignores

    model: str
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)
    repeat_penalty: float | None = Field(None, gt=0)
    seed: int | None = Field(None, ge=0)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict | None = None
    n: int = Field(1, ge=1, le=1)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list | None = None


class ChatRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)


class CompletionRequest(_Request):
    prompt: str | list[str]
    max_tokens: int | None = Field(16, ge=0)
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    input: str | list[str]
    encoding_format: str = Field("float", pattern="^(float|base64)$")


def _settings(req: _Request) -> dict:
    return {"temperature": 1.0 if req.temperature is None else req.temperature,
            "top_p": 1.0 if req.top_p is None else req.top_p,
            "top_k": req.top_k, "repeat_penalty": req.repeat_penalty, "seed": req.seed, "stop": req.stop}


def _usage(response) -> dict:
    u = response.usage
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens}


def _sse(obj) -> bytes:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()


def _stream(events, make_chunk, final_chunks, include_usage: bool, head: dict | None = None):
    async def body():
        try:
            if head is not None:
                yield _sse(head)
            async for kind, value in events:
                if kind == "piece":
                    yield _sse(make_chunk(*value))
                elif kind == "done":
                    for chunk in final_chunks(*value, include_usage):
                        yield _sse(chunk)
        except Exception as exc:  # after the headers went out, an error can only be an event
            yield _sse(openai_body(api_error(exc)))
        yield b"data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/models")
async def list_models(request: Request):
    data = []
    for name, served in request.app.state.models.by_name.items():
        info = served.model.info if served.kind == "generate" else None
        entry = {"id": name, "object": "model", "created": request.app.state.started, "owned_by": "llmlab"}
        if info is not None:
            entry["max_model_len"] = info.context_length
            entry["meta"] = {"n_ctx": info.context_length, "n_ctx_train": info.trained_context_length,
                             "n_params": info.parameters, "backend": served.model.backend}
        if name in request.app.state.models.rag:
            entry["rag"] = request.app.state.models.rag[name].describe()
        data.append(entry)
    return {"object": "list", "data": data}


@router.get("/models/{name:path}")
async def get_model(name: str, request: Request):
    for entry in (await list_models(request))["data"]:
        if entry["id"] == name:
            return entry
    raise ApiError(404, f"The model {name!r} does not exist", param="model", code="model_not_found")


@router.post("/chat/completions")
async def chat_completions(req: ChatRequest, request: Request):
    models = request.app.state.models
    served = models.get(req.model, rag=True)
    if req.logprobs:
        want_logprobs(served.model)
    extra = req.model_extra or {}
    if extra.get("functions"):
        raise ApiError(400, "the deprecated 'functions' field is not supported; send 'tools'",
                       param="functions")
    if extra.get("tools") and req.model in models.rag:
        raise ApiError(400, f"model {req.model} answers from its collection; it takes no tools",
                       param="tools")
    messages = [as_message(m.role, m.content, (m.model_extra or {}).get("tool_calls"),
                           (m.model_extra or {}).get("tool_call_id")) for m in req.messages]
    output = output_config(served.model, messages, schema=_schema(extra.get("response_format")),
                           tools=extra.get("tools"), tool_choice=_tool_choice(extra.get("tool_choice")))
    limit = req.max_completion_tokens or req.max_tokens
    grounding = None
    if req.model in models.rag:  # retrieve for the last question; the sources go with the answer
        messages, grounding = await ground(models.rag[req.model], served.model, messages, limit)
    config = make_config(output, max_new_tokens=budget(served.model, messages, limit, output),
                         **_settings(req))
    rid, created = new_id("chatcmpl"), now()

    def chunk(delta: dict, reason=None, logprobs=None) -> dict:
        return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": req.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": reason}]}

    def lp(items):
        return {"content": [logprob_entry(x) for x in items]} if req.logprobs else None

    served, events = await generation(models, req.model, messages, config, _top(req), request,
                                      grounded=grounding is not None)
    if req.stream:
        include_usage = bool((req.stream_options or {}).get("include_usage"))

        def final(response, rest, with_usage):
            # a call comes whole when the reply is decoded: its head (id, name), then its arguments
            for i, call in enumerate(response.calls):
                yield chunk({"tool_calls": [{"index": i, "id": call.id, "type": "function",
                                             "function": {"name": call.name, "arguments": ""}}]})
                yield chunk({"tool_calls": [{"index": i, "function": {"arguments": call.arguments}}]})
            last = [chunk({}, finish_reason(response.finish_reason), lp(rest))]
            if with_usage:
                last.append({"id": rid, "object": "chat.completion.chunk", "created": created,
                             "model": req.model, "choices": [], "usage": _usage(response)})
            if grounding is not None:  # the sources ride on the last chunk before [DONE]
                last[-1].update(grounding.fields(response.text))
            yield from last

        return _stream(events, lambda text, items: chunk({"content": text}, None, lp(items)), final,
                       include_usage, head=chunk({"role": "assistant", "content": ""}))
    text, items, response = await collect(events, request)
    message = {"role": "assistant", "content": text}
    if response.calls:
        message = {"role": "assistant", "content": text or None,
                   "tool_calls": [c.to_dict() for c in response.calls]}
    return {"id": rid, "object": "chat.completion", "created": created, "model": req.model,
            "choices": [{"index": 0, "message": message,
                         "logprobs": lp(items), "finish_reason": finish_reason(response.finish_reason)}],
            "usage": _usage(response), **(grounding.fields(text) if grounding is not None else {})}


def _schema(fmt):
    """``response_format`` as ``GenerationConfig.json_schema``: None for text, True for any JSON
    object. ``json_schema``'s ``strict`` changes nothing: the grammar always enforces the schema.
    ``json_object`` may carry a ``schema`` too, as llama.cpp's server accepts it."""
    if fmt is None:
        return None
    kind = fmt.get("type", "text") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return fmt.get("schema", True)
    if kind == "json_schema" and isinstance(fmt.get("json_schema"), dict):
        return fmt["json_schema"].get("schema", True)
    raise ApiError(400, "response_format must be {\"type\": \"text\"}, {\"type\": \"json_object\"} or "
                   "{\"type\": \"json_schema\", \"json_schema\": {\"name\": ..., \"schema\": {...}}}",
                   param="response_format")


def _tool_choice(choice) -> str:
    """OpenAI's ``tool_choice`` as ``GenerationConfig.tool_choice``: the string, or the name from
    ``{"type": "function", "function": {"name": ...}}``."""
    if choice is None:
        return "auto"
    if isinstance(choice, str):
        return choice
    fn = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(fn, dict) and isinstance(fn.get("name"), str):
        return fn["name"]
    raise ApiError(400, "tool_choice must be 'auto', 'none', 'required' or "
                   "{\"type\": \"function\", \"function\": {\"name\": ...}}", param="tool_choice")


def _top(req) -> int | None:
    """How many alternatives per token the request wants (None: no log-probabilities)."""
    if isinstance(req, ChatRequest):
        return (req.top_logprobs or 0) if req.logprobs else None
    return req.logprobs


@router.post("/completions")
async def completions(req: CompletionRequest, request: Request):
    try:
        return await _completions(req, request)
    except ContextOverflowError as exc:  # this endpoint has a prompt, not messages
        raise ApiError(400, str(exc), param="prompt", code="context_length_exceeded") from exc


async def _completions(req: CompletionRequest, request: Request):
    models = request.app.state.models
    prompt = req.prompt if isinstance(req.prompt, str) else (req.prompt[0] if len(req.prompt) == 1 else None)
    if prompt is None:
        raise ApiError(400, "send one prompt per request (a list of several is not supported)",
                       param="prompt")
    if not prompt:
        raise ApiError(400, "the prompt is empty", param="prompt")
    check_text(prompt, "the prompt")
    served = models.get(req.model)
    if req.logprobs is not None:
        want_logprobs(served.model)
    if req.max_tokens == 0 and not req.echo:
        raise ApiError(400, "max_tokens must be >= 1 unless echo is true", param="max_tokens")
    rid, created = new_id("cmpl"), now()
    echoed = []
    if req.echo and req.logprobs is not None:
        model = served.model
        model.require("echo", "echo with logprobs needs it")
        echoed = await call(served, lambda cancel: model.prompt_logprobs(prompt, req.logprobs, cancel),
                            request)
    if req.max_tokens == 0:  # echo only (max_tokens 0 needs echo, checked above)
        n = len(echoed) or await call(served, lambda: served.model.count_tokens(prompt))
        return _completion_body(rid, created, req, prompt, prompt, echoed, "length",
                                {"prompt_tokens": n, "completion_tokens": 0, "total_tokens": n})
    config = make_config(max_new_tokens=budget(served.model, prompt, req.max_tokens), **_settings(req))
    served, events = await generation(models, req.model, prompt, config, _top(req), request)
    head_text = prompt if req.echo else ""

    def chunk(text: str, items, reason=None) -> dict:
        return {"id": rid, "object": "text_completion", "created": created, "model": req.model,
                "choices": [{"index": 0, "text": text, "finish_reason": reason,
                             "logprobs": _legacy(items, 0) if req.logprobs is not None else None}]}

    if req.stream:
        def final(response, rest, with_usage):
            yield chunk("", rest, finish_reason(response.finish_reason))
            if with_usage:
                yield {"id": rid, "object": "text_completion", "created": created, "model": req.model,
                       "choices": [], "usage": _usage(response)}

        head = chunk(head_text, echoed) if req.echo else None
        return _stream(events, chunk, final, bool((req.stream_options or {}).get("include_usage")), head)
    text, items, response = await collect(events, request, echoed)
    return _completion_body(rid, created, req, prompt, head_text + text, items,
                            finish_reason(response.finish_reason), _usage(response))


def _completion_body(rid, created, req, prompt, text, items, reason, usage) -> dict:
    return {"id": rid, "object": "text_completion", "created": created, "model": req.model,
            "choices": [{"index": 0, "text": text, "finish_reason": reason,
                         "logprobs": _legacy(items, 0) if req.logprobs is not None else None}],
            "usage": usage}


def _legacy(items, offset: int) -> dict:
    """Log-probabilities in the completions format: parallel lists and text offsets."""
    offsets, pos = [], offset
    for x in items:
        offsets.append(pos)
        pos += len(x.token)
    return {"tokens": [x.token for x in items], "token_logprobs": [x.logprob for x in items],
            "top_logprobs": [dict(x.top) if x.top else None for x in items], "text_offset": offsets}


@router.post("/embeddings")
async def embeddings(req: EmbeddingRequest, request: Request):
    served = request.app.state.models.get(req.model, kind="embed")
    texts = texts_of(req.input, param="input")
    vectors, n_tokens = await call(served, lambda: embed(served.model, texts))
    data = []
    for i, v in enumerate(vectors):
        value = base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() \
            if req.encoding_format == "base64" else v
        data.append({"object": "embedding", "index": i, "embedding": value})
    return JSONResponse({"object": "list", "data": data, "model": req.model,
                         "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}})
