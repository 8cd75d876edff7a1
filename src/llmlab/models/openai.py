"""Models behind an OpenAI-compatible API: OpenAI, LM Studio, vLLM, llama.cpp's servers, llmlab serve.

The server is ``base_url=`` (or ``openai/name@http://host:port/v1``), else ``$LLMLAB_OPENAI_BASE_URL``,
else ``$OPENAI_BASE_URL``, else ``https://api.openai.com/v1``; the key is ``api_key=``, else
``$LLMLAB_OPENAI_API_KEY``, else ``$OPENAI_API_KEY``. A URL with no path gets ``/v1``.

A chat goes to ``/v1/chat/completions`` (the server applies the chat template); a plain string goes
to ``/v1/completions`` and is completed as it is. Both stream as server-sent events, with usage
asked for in the last event. ``top_k`` and ``repeat_penalty`` are not in OpenAI's own API, so they
are sent to every server except api.openai.com (``extra_params=`` overrides that guess).

Structured output: ``json_schema`` is sent as ``response_format`` ``{"type": "json_schema",
"json_schema": {"name": "output", "schema": ..., "strict": true}}`` (``{"type": "json_object"}`` for
any object). A server that refuses that form (llama-cpp-python's answers HTTP 500, "Input should be
'text' or 'json_object'") is sent ``{"type": "json_object", "schema": ...}`` instead, the form
llama-cpp-python's server enforces with a grammar, and keeps getting it. The answer is validated,
re-asked and refused as ``remote.py`` describes. OpenAI's strict mode wants every property required
and ``additionalProperties: false``; it refuses other schemas, in one line.

Tool calls: ``tools`` and ``tool_choice`` (``"auto"``, ``"required"``, or ``{"type": "function", ...}``
for a name; ``"none"`` sends no tools) go as OpenAI's API has them; streamed ``delta.tool_calls``
become ``ToolCallDelta`` chunks and the finish reason ``tool_calls``. Messages with tool calls and
tool results are already in OpenAI's shape. llama-cpp-python's server (``--chat_format
chatml-function-calling``) cannot stream a call it chooses itself (``auto``): it ends the stream
empty, and the request is then made once more unstreamed; it fails on ``"required"`` (HTTP 500).

``score()`` works the way lm-evaluation-harness does it: ``/v1/completions`` with the context and
continuation as the prompt, ``echo: true`` and ``logprobs``, summing the log-probabilities of the
tokens that start inside the continuation. That needs a server that returns prompt log-probabilities
(llmlab serve, llama-cpp-python's server, vLLM); OpenAI's current models do not, and say so.

Tokens are counted through a llama.cpp-style endpoint where the server has one (``/tokenize`` of
llama.cpp's server and llmlab serve, ``/extras/tokenize`` of llama-cpp-python's); elsewhere
``encode``/``tokenize`` raise ``NotSupportedError`` and the context window is left to the server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cached_property
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from ..chat import Message, as_messages
from ..config import GenerationConfig
from ..errors import BackendError, NotSupportedError, RemoteModelNotFoundError, ServerUnreachableError
from ..schema import ANY_OBJECT
from .base import Chunk, ModelInfo, Token, ToolCallDelta, Usage
from .remote import RemoteModel, env_first, split_url

if TYPE_CHECKING:
    import threading

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def normalize_base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    return url if urlsplit(url).path not in ("", "/") else f"{url}/v1"


class OpenAIModel(RemoteModel):
    backend = "openai"
    capabilities = frozenset({"score", "tools", "grammar"})
    key_hint = "$OPENAI_API_KEY or api_key="

    def __init__(self, model_name: str, name: str | None = None, base_url: str | None = None,
                 api_key: str | None = None, extra_params: bool | None = None, check: bool = True,
                 **http_options):
        model_name, url = split_url(model_name)
        base_url = ",".join(normalize_base_url(u) for u in str(  # several: a pool of servers (fleet.py)
            base_url or url or env_first("LLMLAB_OPENAI_BASE_URL", "OPENAI_BASE_URL") or DEFAULT_BASE_URL
        ).split(",") if u.strip())
        api_key = api_key or env_first("LLMLAB_OPENAI_API_KEY", "OPENAI_API_KEY")
        super().__init__(ModelInfo(name=model_name, backend=self.backend), base_url, api_key, **http_options)
        self.root = self.base_url.removesuffix("/v1")
        self._schema_style = "json_schema"  # or "json_object", once a server has refused json_schema
        self.extra_params = extra_params if extra_params is not None else \
            urlsplit(self.base_url).hostname != "api.openai.com"
        if check:
            self._describe()

    @property
    def url_hint(self) -> str:
        return "openai/NAME@http://HOST:PORT/v1 or $OPENAI_BASE_URL"

    def list_models(self) -> list[str]:
        return [m.get("id") for m in self._models()]

    def _models(self) -> list[dict]:
        r = self.request("GET", "/models", missing_ok=True)
        return r.json().get("data", []) if r.status_code < 400 else []

    def _describe(self) -> None:
        """Check the model exists; read its window and chat template where the server tells them."""
        entries = self._models()
        entry = next((m for m in entries if m.get("id") == self.info.name), None)
        if entries and entry is None:
            names = ", ".join(m.get("id", "?") for m in entries[:20])
            raise RemoteModelNotFoundError(
                f"the openai server at {self.base_url} has no model {self.info.name!r}; it has: {names}")
        entry = entry or {}
        meta = entry.get("meta") or {}
        ctx = entry.get("max_model_len") or entry.get("context_length") or meta.get("n_ctx") \
            or meta.get("n_ctx_train")
        self.info.context_length = int(ctx) if ctx else None
        self.info.trained_context_length = meta.get("n_ctx_train") or self.info.context_length
        self.info.parameters = meta.get("n_params")
        # llama.cpp's server (and llmlab serve) tell the chat template, so prompts can be counted
        r = self.request("GET", f"~/props?model={quote(self.info.name)}", missing_ok=True) \
            if self._is_local_server() else None
        if r is not None and r.status_code < 400:
            props = r.json()
            self.info.chat_template = props.get("chat_template") or None
            self.info.bos_token = props.get("bos_token") or ""
            self.info.eos_token = props.get("eos_token") or ""
            n_ctx = (props.get("default_generation_settings") or {}).get("n_ctx")
            self.info.context_length = self.info.context_length or n_ctx
        self.info.instruct = True if self.info.chat_template else None

    def _is_local_server(self) -> bool:
        return urlsplit(self.base_url).hostname != "api.openai.com"

    # --- generation ------------------------------------------------------------------------------

    def _params(self, config: GenerationConfig) -> dict:
        params = {
            "model": self.info.name,
            "max_tokens": config.max_new_tokens,
            "temperature": 0.0 if config.greedy else float(config.temperature),
            "top_p": 1.0 if config.greedy else config.top_p,
        }
        if config.seed is not None:
            params["seed"] = config.seed
        if config.stop:
            params["stop"] = list(config.stop)
        if self.extra_params:
            params["top_k"] = config.top_k
            params["repeat_penalty"] = config.repeat_penalty
        return params

    def _request_body(self, prompt: str | list[Message], config: GenerationConfig) -> tuple[str, dict]:
        self.refuse_raw_tools(prompt, config)
        body = self._params(config)
        body.update(stream=True, stream_options={"include_usage": True})
        if isinstance(prompt, str):
            path = "/completions"
            body["prompt"] = prompt
        else:
            path = "/chat/completions"
            body["messages"] = [m.to_dict() for m in prompt]
        if config.json_schema is not None:
            body["response_format"] = response_format(config.json_schema, self._schema_style)
        if config.tools and config.tool_choice != "none":
            body["tools"] = list(config.tools)
            body["tool_choice"] = config.tool_choice if config.tool_choice in ("auto", "required") else \
                {"type": "function", "function": {"name": config.tool_choice}}
        return path, body

    def _stream(self, prompt: str | list[Message], config: GenerationConfig,
                cancel: threading.Event | None = None) -> Iterator[Chunk]:
        raw = isinstance(prompt, str)
        n = 0
        finish = None
        usage = None
        called = False
        for event in self._answer(prompt, config):
            if event.get("usage"):
                u = event["usage"]
                usage = Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0))
            for choice in event.get("choices") or []:
                delta = choice.get("delta") or choice.get("message") or {}
                piece = choice.get("text") if raw else delta.get("content")
                calls = tool_call_deltas(delta.get("tool_calls"))
                if piece or calls:
                    n += 1
                    called = called or bool(calls)
                    yield Chunk("", usage=self.running(n))
                    yield Chunk(piece or "", tool_calls=calls)
                finish = choice.get("finish_reason") or finish
        if called:
            finish = "tool_calls"  # some servers say "stop" after a call
        yield Chunk("", finish_reason=finish or "stop", usage=usage or self.running(n))

    def _answer(self, prompt: str | list[Message], config: GenerationConfig) -> Iterator[dict]:
        path, body = self._request_body(prompt, config)
        try:
            yield from self._events(path, body)
        except NotSupportedError as exc:  # raised before any event
            if "response_format" not in body or self._schema_style != "json_schema" \
                    or "structured output" not in str(exc):
                raise
            # llama-cpp-python's server knows only {"type": "json_object", "schema": ...} (an
            # extension some servers share): use that form with this server from now on
            self._schema_style = "json_object"
            yield from self._events(*self._request_body(prompt, config))

    def _events(self, path: str, body: dict) -> Iterator[dict]:
        """The stream's decoded events. A stream that ends before its first event, where a request
        with tools was sent, is asked for once more whole (``stream: false``): llama-cpp-python's
        server cannot stream a tool call it chooses itself (``tool_choice: auto``) and, having sent
        its headers, ends the stream empty."""
        seen = False
        with self.open("POST", path, json_body=body) as response:
            for event in self.json_lines(response, prefix="data:"):
                if "error" in event:
                    err = event["error"]
                    raise BackendError(f"the openai server failed while generating: "
                                       f"{err.get('message', err) if isinstance(err, dict) else err}")
                seen = True
                yield event
        if seen:
            return
        if "tools" not in body:
            raise BackendError(f"the openai server at {self.base_url} ended the stream without an "
                               "answer (its own log may say why)")
        whole = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        answer = self.request("POST", path, json_body=whole).json()
        if not answer.get("choices"):
            raise BackendError(f"the openai server at {self.base_url} sent no answer: {str(answer)[:120]}")
        yield answer

    # --- log-probabilities -----------------------------------------------------------------------

    def score(self, context: str | list[Message], continuations: list[str]) -> list[float]:
        """Sum of the log-probabilities of each continuation's tokens after the context."""
        if not isinstance(context, str):
            if not self.info.chat_template:
                raise NotSupportedError(
                    f"scoring a chat needs its chat template, which the server at {self.base_url} "
                    "does not publish (/props); pass the context as a plain string")
            context = self.render(as_messages(context))
        return [self._score_one(context, c) for c in continuations]

    def _score_one(self, context: str, continuation: str) -> float:
        if self._tokenizer_kind == "llama-cpp-python":
            # measured on llama-cpp-python 0.3: each echoed token gets the log-probability from the
            # position after it (an off-by-one in that server), so its scores would be silently wrong
            raise NotSupportedError(
                f"the server at {self.base_url} is llama-cpp-python's, whose echo log-probabilities "
                "are shifted by one token, so llmlab will not score with it; use llmlab serve or "
                "llama.cpp's own server")
        text = context + continuation
        body = {"model": self.info.name, "prompt": text, "max_tokens": 1, "temperature": 0.0,
                "echo": True, "logprobs": 1}
        r = self.request("POST", "/completions", json_body=body)
        choices = r.json().get("choices") or [{}]
        lp = choices[0].get("logprobs") or {}
        tokens, values = lp.get("tokens"), lp.get("token_logprobs")
        if not tokens or values is None:
            raise NotSupportedError(
                f"the server at {self.base_url} returned no prompt log-probabilities for echo=true "
                "(OpenAI's chat models do not; llama-cpp-python's server needs --logits_all true)")
        offsets = lp.get("text_offset") or _offsets(tokens)
        total, seen = 0.0, False
        start, end = len(context), len(text)
        for tok, value, off in zip(tokens, values, offsets, strict=False):
            # a token that straddles the boundary carries continuation text, so it counts
            if off + len(tok) > start and off < end:
                if value is None:
                    raise BackendError(f"the server gave no log-probability for token {tok!r}")
                total += float(value)
                seen = True
        if not seen:
            raise BackendError(f"the server's echo did not cover the continuation {continuation!r}")
        return total

    # --- tokens ----------------------------------------------------------------------------------

    @cached_property
    def _tokenizer_kind(self) -> str | None:
        """Which llama.cpp-style tokenize endpoint the server has, if any (probed once)."""
        probes = (("llamacpp", "~/tokenize", {"content": "a"}),
                  ("llama-cpp-python", "~/extras/tokenize", {"input": "a", "model": self.info.name}))
        for kind, path, body in probes:
            try:
                r = self.request("POST", path, json_body=body, missing_ok=True)
            except ServerUnreachableError:
                return None
            except BackendError:
                continue
            try:
                ok = r.status_code < 400 and isinstance(r.json().get("tokens"), list)
            except ValueError:
                ok = False
            if ok:
                return kind
        return None

    @property
    def has_tokenizer(self) -> bool:  # type: ignore[override]
        return self._tokenizer_kind is not None

    def _no_tokenizer(self) -> NotSupportedError:
        return NotSupportedError(
            f"the server at {self.base_url} has no tokenize endpoint (llama.cpp's /tokenize or "
            "llama-cpp-python's /extras/tokenize), so llmlab cannot count tokens for this model")

    def _tokenize(self, text: str, special: bool) -> list:
        kind = self._tokenizer_kind
        if kind == "llamacpp":
            body = {"content": text, "add_special": special, "parse_special": special,
                    "with_pieces": not special}
            r = self.request("POST", "~/tokenize", json_body=body)
            return r.json()["tokens"]
        if kind == "llama-cpp-python":  # always adds BOS and parses special tokens
            ids = self.request("POST", "~/extras/tokenize",
                               json_body={"input": text, "model": self.info.name}).json()["tokens"]
            if not special:
                bos = self._empty_prefix
                ids = ids[len(bos):] if ids[:len(bos)] == bos else ids
            return ids
        raise self._no_tokenizer()

    @cached_property
    def _empty_prefix(self) -> list[int]:
        return self.request("POST", "~/extras/tokenize",
                            json_body={"input": "", "model": self.info.name}).json()["tokens"]

    def encode(self, text: str) -> list[int]:
        return [t["id"] if isinstance(t, dict) else int(t) for t in self._tokenize(text, special=True)]

    def tokenize(self, text: str) -> list[Token]:
        out = []
        for t in self._tokenize(text, special=False):
            if isinstance(t, dict):
                piece = t.get("piece")
                out.append(Token(t["id"], piece if isinstance(piece, str) else
                                 bytes(piece or []).decode("utf-8", errors="replace")))
            else:
                r = self.request("POST", "~/extras/detokenize",
                                 json_body={"tokens": [t], "model": self.info.name})
                out.append(Token(int(t), r.json().get("text", "")))
        return out


def response_format(schema: dict, style: str = "json_schema") -> dict:
    """``response_format`` for a JSON schema: OpenAI's ``json_schema`` form, ``json_object`` for the
    any-object schema, or (``style="json_object"``) the ``{"type": "json_object", "schema": ...}``
    form of llama-cpp-python's server."""
    if schema == ANY_OBJECT:
        return {"type": "json_object"}
    if style == "json_object":
        return {"type": "json_object", "schema": schema}
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": True}}


def tool_call_deltas(items) -> list[ToolCallDelta]:
    """OpenAI's streamed ``delta.tool_calls`` (or a whole ``message.tool_calls``) as deltas."""
    out = []
    for i, item in enumerate(items or []):
        fn = item.get("function") or {}
        args = fn.get("arguments")
        if args is not None and not isinstance(args, str):  # a server that sends an object
            args = json.dumps(args)
        index = item.get("index")
        out.append(ToolCallDelta(index if isinstance(index, int) else i, item.get("id"), fn.get("name"),
                                 args or ""))
    return out


def _offsets(tokens: list[str]) -> list[int]:
    out, pos = [], 0
    for tok in tokens:
        out.append(pos)
        pos += len(tok)
    return out
