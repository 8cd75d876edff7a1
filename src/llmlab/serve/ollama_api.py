"""The Ollama-compatible API: ``/api/version``, ``/api/tags``, ``/api/ps``, ``/api/show``,
``/api/chat``, ``/api/generate``, ``/api/embed`` (and the older ``/api/embeddings``); NDJSON streams.

Ollama streams unless ``"stream": false``. Unset options take Ollama's documented defaults
(temperature 0.8, top_k 40, top_p 0.9, repeat_penalty 1.1, ``num_predict`` -1 = until the window
is full), so a client written for Ollama behaves the same here; temperature 0 is greedy. A plain
``/api/generate`` wraps the prompt (and ``system``) in the model's chat template; ``raw`` sends it
as it is. An empty prompt only "loads" the model, as in Ollama. A rag model (``rag.py``) answers
``/api/chat`` and a plain ``/api/generate`` prompt from its collection, the sources on the ``done`` line.

``format`` (``"json"`` or a JSON schema) on ``/api/chat`` and ``/api/generate`` becomes
``GenerationConfig.json_schema``, and ``tools`` on ``/api/chat`` become ``GenerationConfig.tools``;
the request then runs through ``Model.prompt`` as any other (see ``openai_api.py``). A call comes back
as ``message.tool_calls: [{"function": {"name", "arguments": {...}}}]`` with done reason ``stop``, as
Ollama answers. Both at once work too, where Ollama drops the calls (ollama issues 8095, 11185): the
reply is a call, or an answer shaped by the schema.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from .. import __version__
from ..chat import Message, check_text
from ..errors import BackendError
from .common import (
    ApiError,
    api_error,
    as_message,
    budget,
    call,
    collect,
    generation,
    logprob_entry,
    make_config,
    output_config,
)
from .embeddings import embed, texts_of
from .rag import ground

router = APIRouter(prefix="/api")


class Options(BaseModel):
    model_config = ConfigDict(extra="allow")  # num_ctx, num_thread, mirostat, ... are accepted, unused
    num_predict: int | None = None
    temperature: float | None = Field(None, ge=0)
    top_k: int | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    stop: list[str] | str | None = None
    repeat_penalty: float | None = Field(None, gt=0)


class OllamaMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str = ""
    tool_calls: list | None = None
    tool_name: str | None = None


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    stream: bool = True
    options: Options | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)


class ChatRequest(_Request):
    messages: list[OllamaMessage] = Field(default_factory=list)


class GenerateRequest(_Request):
    prompt: str = ""
    system: str | None = None
    raw: bool = False
    suffix: str | None = None


class ShowRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    name: str | None = None  # the older field name


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    input: str | list[str] | None = None
    prompt: str | None = None  # /api/embeddings


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")  # Ollama's wire format, not checks.utc_now


def _config(model, prompt, options: Options | None, output):
    o = options or Options()
    n = o.num_predict
    if n is not None and (n == 0 or n < -2):
        raise ApiError(400, f"invalid options.num_predict {n}: use >= 1, or -1 for no limit")
    return make_config(
        output, max_new_tokens=budget(model, prompt, n if n and n > 0 else None, output),
        temperature=0.8 if o.temperature is None else o.temperature,
        top_k=40 if o.top_k is None else o.top_k, top_p=0.9 if o.top_p is None else o.top_p,
        repeat_penalty=1.1 if o.repeat_penalty is None else o.repeat_penalty,
        seed=o.seed if o.seed is not None and o.seed >= 0 else None, stop=o.stop)


def _stats(response) -> dict:
    t, u = response.timings, response.usage
    ttft = t.ttft_s or 0.0
    return {"done": True, "done_reason": {"context": "length", "tool_calls": "stop", None: "stop"}.get(
                response.finish_reason, response.finish_reason),
            "total_duration": int((t.total_s or 0) * 1e9), "load_duration": 0,
            "prompt_eval_count": u.prompt_tokens, "prompt_eval_duration": int(ttft * 1e9),
            "eval_count": u.completion_tokens,
            "eval_duration": int(max((t.total_s or 0) - ttft, 0) * 1e9)}


def _refuse_unsupported(req: _Request, messages=()) -> None:
    """Ollama fields llmlab does not implement yet are refused, never silently ignored."""
    extra = req.model_extra or {}
    for name, what in (("images", "images"), ("template", "a request's own prompt template (template)")):
        if extra.get(name) not in (None, "", [], {}):
            raise ApiError(400, f"{what} is not supported by llmlab serve yet")
    if any((m.model_extra or {}).get("images") for m in messages):
        raise ApiError(400, "images in messages are not supported by llmlab serve yet")


def _schema(fmt):
    """Ollama's ``format`` as ``GenerationConfig.json_schema``: ``"json"`` is any JSON object."""
    if fmt in (None, ""):
        return None
    if fmt == "json":
        return True
    if isinstance(fmt, dict):
        return fmt
    raise ApiError(400, f"format must be \"json\" or a JSON schema object, got {fmt!r}")


def _messages(given: list[OllamaMessage]) -> list[Message]:
    """Ollama's messages as llmlab's. Ollama's tool calls carry no id and a tool result names its
    tool (``tool_name``) or nothing, so each call gets an id here and each result the id of the
    latest unanswered call of its tool (or of any tool)."""
    out, pending, n = [], [], 0
    for m in given:
        calls = []
        for asked in m.tool_calls or []:
            if isinstance(asked, dict) and not asked.get("id"):
                asked, n = {**asked, "id": f"call_{n}"}, n + 1
            calls.append(asked)
        call_id = None
        if m.role == "tool":
            match = [c for c in pending if m.tool_name in (None, c.name)]
            if match:
                call_id = match[-1 if m.tool_name else 0].id
                pending.remove(next(c for c in pending if c.id == call_id))
        message = as_message(m.role, m.content, calls, call_id)
        pending.extend(message.tool_calls)
        out.append(message)
    return out


def _arguments(call) -> dict:
    """A call's arguments as the object Ollama sends (the call format always writes one)."""
    value = call.parsed_arguments()
    if value is None:
        raise BackendError(f"the model called {call.name} with arguments that are not a JSON object: "
                           f"{call.arguments[:80]!r}")
    return value


async def _run(req: _Request, request: Request, prompt, key: str, tools=None):
    """Generate and answer as Ollama does: NDJSON lines, or one object with ``"stream": false``.
    A rag model's prompt is grounded first, and its sources go on the ``done`` line."""
    models = request.app.state.models
    served = models.get(req.model, rag=True)
    if tools and req.model in models.rag:
        raise ApiError(400, f"model {req.model} answers from its collection; it takes no tools")
    output = output_config(served.model, prompt if isinstance(prompt, list) else [],
                           schema=_schema((req.model_extra or {}).get("format")), tools=tools,
                           params=("format", "tools", "tools"))
    grounding = None
    if req.model in models.rag:
        n = (req.options or Options()).num_predict
        limit = n if n and n > 0 else None
        prompt, grounding = await ground(models.rag[req.model], served.model, prompt, limit)
    config = _config(served.model, prompt, req.options, output)
    top = (req.top_logprobs or 0) if req.logprobs else None
    served, events = await generation(models, req.model, prompt, config, top, request,
                                      grounded=grounding is not None)

    def calls(response) -> dict:
        if not response.calls:
            return {}
        made = [{"function": {"name": c.name, "arguments": _arguments(c)}} for c in response.calls]
        return {key: {"role": "assistant", "content": "", "tool_calls": made}}

    def sources(text: str) -> dict:
        return grounding.fields(text) if grounding is not None else {}

    def piece(text: str) -> dict:
        return {"role": "assistant", "content": text} if key == "message" else text

    def line(text: str, items) -> dict:
        out = {"model": req.model, "created_at": _now(), key: piece(text), "done": False}
        if req.logprobs:
            out["logprobs"] = [logprob_entry(x) for x in items]
        return out

    if req.stream:
        async def body():
            try:
                async for kind, value in events:
                    if kind == "piece":
                        yield (json.dumps(line(*value), ensure_ascii=False) + "\n").encode()
                    elif kind == "done":
                        response, rest = value
                        if response.calls:  # the call on its own line before the done line, as Ollama
                            yield (json.dumps({**line("", []), **calls(response)}, ensure_ascii=False)
                                   + "\n").encode()
                        yield (json.dumps({**line("", rest), **_stats(response), **sources(response.text)},
                                          ensure_ascii=False) + "\n").encode()
            except Exception as exc:  # headers are out: report the error as Ollama does, in-stream
                yield (json.dumps({"error": api_error(exc).message}) + "\n").encode()

        return StreamingResponse(body(), media_type="application/x-ndjson")
    text, items, response = await collect(events, request)
    return {**line(text, items), **calls(response), **_stats(response), **sources(text)}


def _loaded(req: _Request, key: str) -> dict:
    empty = {"role": "assistant", "content": ""} if key == "message" else ""
    return {"model": req.model, "created_at": _now(), key: empty, "done": True, "done_reason": "load"}


@router.post("/chat")
async def chat(req: ChatRequest, request: Request):
    request.app.state.models.get(req.model, rag=True)  # an unknown model is a 404 even when only loading
    _refuse_unsupported(req, req.messages)
    if not req.messages:
        return _loaded(req, "message")
    return await _run(req, request, _messages(req.messages), "message", (req.model_extra or {}).get("tools"))


@router.post("/generate")
async def generate(req: GenerateRequest, request: Request):
    served = request.app.state.models.get(req.model, rag=not req.raw)  # a raw prompt is no question
    if req.suffix:
        raise ApiError(400, "suffix (fill-in-the-middle) is not supported")
    _refuse_unsupported(req)
    if (req.model_extra or {}).get("tools"):
        raise ApiError(400, "tools are taken by /api/chat, not /api/generate")
    check_text(req.prompt, "the prompt")
    if req.system:
        check_text(req.system, "the system message")
    if not req.prompt:
        return _loaded(req, "response")
    if req.model in request.app.state.models.rag:
        prompt = [Message("user", req.prompt)]  # the question; rag sets its own system message
    elif req.raw or not served.model.info.chat_template:
        prompt = req.prompt if not req.system else f"{req.system}\n\n{req.prompt}"
    else:
        prompt = ([Message("system", req.system)] if req.system else []) + [Message("user", req.prompt)]
    return await _run(req, request, prompt, "response")


@router.get("/version")
async def version():
    return {"version": __version__}


def _details(served) -> dict:
    info = served.model.info if served.kind == "generate" else None
    arch = (info.architecture if info else None) or "bert"
    params = info.parameters if info else None
    return {"parent_model": "", "format": "gguf" if info and (info.path or "").endswith(".gguf") else
            "llmlab", "family": arch, "families": [arch],
            "parameter_size": f"{params / 1e6:.0f}M" if params else "",
            "quantization_level": (info.quantization if info else None) or ""}


@router.get("/tags")
async def tags(request: Request):
    out = []
    for name, served in request.app.state.models.by_name.items():
        info = served.model.info if served.kind == "generate" else None
        out.append({"name": name, "model": name, "modified_at": _now(),
                    "size": (info.file_size if info else None) or 0,
                    "digest": "", "details": _details(served)})
    return {"models": out}


@router.get("/ps")
async def running(request: Request):
    """Every served model is loaded for as long as the server runs."""
    models = (await tags(request))["models"]
    return {"models": [{**m, "expires_at": "9999-12-31T23:59:59Z", "size_vram": 0} for m in models]}


@router.post("/show")
async def show(req: ShowRequest, request: Request):
    name = req.model or req.name
    if not name:
        raise ApiError(400, "invalid request: model: Field required")
    models = request.app.state.models
    served = models.by_name.get(name)
    if served is None:
        models.get(name)  # raises the 404 that lists what is served
    if served.kind == "embed":
        return {"details": _details(served), "model_info": {}, "capabilities": ["embedding"],
                "parameters": "", "template": "", "license": "", "modified_at": _now()}
    info = served.model.info
    arch = info.architecture or "unknown"
    source = Path(info.path).name if info.path else info.name  # not where it lives on this disk
    return {"license": info.license or "", "modelfile": f"# served by llmlab from {source}",
            "parameters": f"num_ctx {info.context_length}" if info.context_length else "",
            "template": info.chat_template or "", "details": _details(served),
            "model_info": {"general.architecture": arch, "general.parameter_count": info.parameters,
                           f"{arch}.context_length": info.trained_context_length},
            # without native tool calls, any model that follows a grammar takes tools (tools/calling.py)
            "capabilities": ["completion"] + (["tools"] if served.model.can("tools")
                                              or served.model.can("grammar") else []),
            "modified_at": _now()}


@router.post("/embed")
async def embed_route(req: EmbedRequest, request: Request):
    served = request.app.state.models.get(req.model, kind="embed")
    texts = texts_of(req.input)
    vectors, n_tokens = await call(served, lambda: embed(served.model, texts))
    return {"model": req.model, "embeddings": vectors, "prompt_eval_count": n_tokens}


@router.post("/embeddings")
async def embeddings_legacy(req: EmbedRequest, request: Request):
    served = request.app.state.models.get(req.model, kind="embed")
    if not req.prompt:
        raise ApiError(400, "prompt must be a non-empty string")
    vectors, _ = await call(served, lambda: embed(served.model, [req.prompt]))
    return {"embedding": vectors[0]}
