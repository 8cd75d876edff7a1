"""Models served by Ollama, through its native API (``/api/chat``, ``/api/generate``, NDJSON).

The server is ``base_url=`` (or ``ollama/name@http://host:port``), else ``$LLMLAB_OLLAMA_HOST``,
else Ollama's own ``$OLLAMA_HOST``, else ``http://127.0.0.1:11434``; an API key (for a proxy or
Ollama's cloud) comes from ``api_key=``, ``$LLMLAB_OLLAMA_API_KEY`` or ``$OLLAMA_API_KEY``.

A chat goes to ``/api/chat``, where Ollama applies the model's template; a plain string goes to
``/api/generate`` with ``raw: true``, completed as it is, as on every llmlab backend.
``GenerationConfig`` maps onto Ollama's options (``num_predict``, ``temperature`` 0 for greedy,
``top_k``, ``top_p``, ``seed``, ``stop``, ``repeat_penalty``).

Structured output: ``json_schema`` is sent as Ollama's ``format`` (``"json"`` for any object), and the
answer is validated, re-asked and refused as ``remote.py`` describes. Tool calls: ``tools`` go in
Ollama's ``/api/chat`` shape; a call arrives whole (its arguments a JSON object) and becomes one
``ToolCallDelta``; the finish reason is then ``tool_calls``. An assistant turn's calls are sent with
their arguments as an object, a tool result with ``tool_name`` (its call's tool). Ollama's API has no
``tool_choice``, so llmlab emulates it honestly: ``"none"`` sends no tools, a tool's name sends that
tool alone, and ``"required"`` or a name is checked on the answer: a text answer is asked for again,
then one ``OutputError``, never taken as a call. A model whose ``/api/show`` capabilities lack
``tools`` does not declare ``tools``.

What it gives up: Ollama's API has no tokenizer and returns no log-probabilities of the prompt, so
``encode``/``tokenize`` and ``score`` raise ``NotSupportedError`` (the generation's own token counts
come from the server), and the context window is not checked here. Ollama silently truncates a
prompt longer than its ``num_ctx``; pass ``num_ctx=`` to set the window it allocates.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..chat import Message
from ..config import GenerationConfig
from ..errors import BackendError, NotSupportedError, PromptError, RemoteModelNotFoundError
from ..schema import ANY_OBJECT
from .base import Chunk, ModelInfo, Token, ToolCallDelta, Usage
from .constrained import forced_tool
from .remote import RemoteModel, env_first, split_url

if TYPE_CHECKING:
    import threading

DEFAULT_HOST = "http://127.0.0.1:11434"


def normalize_host(host: str) -> str:
    """Ollama's ``OLLAMA_HOST`` forms (``0.0.0.0``, ``host:port``, ``https://host``) -> a URL."""
    from urllib.parse import urlsplit

    host = host.strip().rstrip("/")
    parts = urlsplit(host if "://" in host else f"http://{host}")
    hostname = parts.hostname or "127.0.0.1"
    if hostname == "0.0.0.0":
        hostname = "127.0.0.1"  # the address a server listens on is not one to connect to
    if ":" in hostname:
        hostname = f"[{hostname}]"
    port = parts.port or (443 if parts.scheme == "https" else 11434)
    return f"{parts.scheme}://{hostname}:{port}{parts.path}"


def ollama_options(config: GenerationConfig, num_ctx: int | None = None) -> dict:
    options = {
        "num_predict": config.max_new_tokens,
        "temperature": 0.0 if config.greedy else float(config.temperature),
        "top_k": config.top_k,
        "top_p": config.top_p,
        "repeat_penalty": config.repeat_penalty,
    }
    if config.seed is not None:
        options["seed"] = config.seed
    if config.stop:
        options["stop"] = list(config.stop)
    if num_ctx:
        options["num_ctx"] = num_ctx
    return options


class OllamaModel(RemoteModel):
    backend = "ollama"
    key_hint = "$OLLAMA_API_KEY"

    def __init__(self, model_name: str, name: str | None = None, base_url: str | None = None,
                 api_key: str | None = None, n_ctx: int | None = None, num_ctx: int | None = None,
                 check: bool = True, **http_options):
        model_name, url = split_url(model_name)
        base_url = base_url or url or env_first("LLMLAB_OLLAMA_HOST", "OLLAMA_HOST") or DEFAULT_HOST
        api_key = api_key or env_first("LLMLAB_OLLAMA_API_KEY", "OLLAMA_API_KEY")
        num_ctx = n_ctx or num_ctx  # llmlab's name for the window, or Ollama's
        self.num_ctx = num_ctx
        info = ModelInfo(name=model_name, backend=self.backend, context_length=num_ctx)
        hosts = ",".join(normalize_host(h) for h in str(base_url).split(",") if h.strip())  # a pool
        super().__init__(info, hosts, api_key, **http_options)
        if check:
            self._describe()

    @property
    def url_hint(self) -> str:
        return "ollama/NAME@http://HOST:PORT or $OLLAMA_HOST"

    def _describe(self) -> None:
        """Fill the model card from ``/api/show``; fails clearly on an unknown model."""
        r = self.request("POST", "/api/show", json_body={"model": self.info.name}, missing_ok=True)
        if r.status_code == 404:
            raise RemoteModelNotFoundError(
                f"the ollama server at {self.base_url} has no model {self.info.name!r}"
                f"{self._available_hint()} (pull it with: ollama pull {self.info.name})")
        show = r.json()
        details = show.get("details") or {}
        model_info = show.get("model_info") or {}
        arch = model_info.get("general.architecture") or details.get("family")
        trained = model_info.get(f"{arch}.context_length") if arch else None
        num_ctx = self.num_ctx or _parameter(show.get("parameters") or "", "num_ctx")
        self.info.architecture = arch
        self.info.parameters = model_info.get("general.parameter_count")
        self.info.quantization = details.get("quantization_level")
        self.info.trained_context_length = int(trained) if trained else None
        self.info.context_length = int(num_ctx) if num_ctx else None
        licence = (show.get("license") or "").strip()
        self.info.license = licence.splitlines()[0][:80] if licence else None
        caps = show.get("capabilities") or []
        self.info.instruct = bool(show.get("template")) if "completion" in caps or not caps else None
        self.info.extra.update(format=details.get("format"), ollama_template=show.get("template"),
                               capabilities=caps)
        if caps and "tools" not in caps:  # Ollama says which models take tools; this one does not
            self.capabilities = self.capabilities - {"tools"}

    def list_models(self) -> list[str]:
        r = self.request("GET", "/api/tags")
        return [m.get("name") or m.get("model") for m in r.json().get("models", [])]

    # --- generation ------------------------------------------------------------------------------

    def _stream(self, prompt: str | list[Message], config: GenerationConfig,
                cancel: threading.Event | None = None) -> Iterator[Chunk]:
        self.refuse_raw_tools(prompt, config)
        body = {"model": self.info.name, "stream": True,
                "options": ollama_options(config, self.num_ctx)}
        if isinstance(prompt, str):
            path, key = "/api/generate", "response"
            body.update(prompt=prompt, raw=True)
        else:
            path, key = "/api/chat", "message"
            body["messages"] = ollama_messages(prompt)
        if config.json_schema is not None:
            body["format"] = "json" if config.json_schema == ANY_OBJECT else config.json_schema
        if config.tools and config.tool_choice != "none":
            # Ollama has no tool_choice: a tool's name sends that tool alone, and "required" or a
            # name is checked on the answer (re-asked, then one clear error; see remote.py)
            forced = forced_tool(config)
            body["tools"] = [t for t in config.tools if forced in (None, "*", t["function"]["name"])]
        n = 0
        calls = 0
        with self.open("POST", path, json_body=body) as response:
            for event in self.json_lines(response):
                if "error" in event:
                    raise BackendError(f"the ollama server failed while generating: {event['error']}")
                message = (event.get(key) or {}) if key == "message" else {}
                piece = (message.get("content") or "") if key == "message" else (event.get(key) or "")
                deltas = []
                for call in message.get("tool_calls") or []:
                    fn = call.get("function") or {}
                    args = fn.get("arguments")
                    deltas.append(ToolCallDelta(calls, call.get("id"), fn.get("name"),
                                                args if isinstance(args, str) else json.dumps(args or {})))
                    calls += 1
                if deltas:
                    n += 1
                    yield Chunk("", usage=self.running(n))
                    yield Chunk("", tool_calls=deltas)
                if event.get("done"):
                    usage = Usage(int(event.get("prompt_eval_count") or 0), int(event.get("eval_count") or n))
                    finish = "tool_calls" if calls else _finish(event.get("done_reason"))
                    yield Chunk(piece, finish_reason=finish, usage=usage)
                    return
                if piece:
                    n += 1
                    yield from self.counted(piece, n)
        raise BackendError(f"the ollama server at {self.base_url} closed the stream before it was done")

    # --- what Ollama does not offer --------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        raise NotSupportedError(
            "Ollama's API has no tokenizer endpoint, so llmlab cannot count tokens for ollama/ "
            "models (the server reports the counts of each generation)")

    def tokenize(self, text: str) -> list[Token]:
        self.encode(text)
        return []

    def score(self, context, continuations):
        raise NotSupportedError(
            "Ollama's API returns no log-probabilities of the prompt, so ollama/ models cannot "
            "score; use --method generate, or an OpenAI-compatible server with echo+logprobs "
            "(openai/NAME@URL, e.g. llmlab serve or llama.cpp's server)")


def ollama_messages(messages: list[Message]) -> list[dict]:
    """Messages in Ollama's shape: an assistant's tool calls with their arguments as an object, and
    a tool result naming its tool (``tool_name``, found from the call it answers) where known."""
    names = {c.id: c.name for m in messages for c in m.tool_calls}
    out = []
    for m in messages:
        d = {"role": m.role, "content": m.content}
        if m.tool_calls:
            d["tool_calls"] = [{"function": {"name": c.name, "arguments": _arguments(c)}}
                               for c in m.tool_calls]
        if m.tool_call_id is not None and names.get(m.tool_call_id):
            d["tool_name"] = names[m.tool_call_id]
        out.append(d)
    return out


def _arguments(call) -> dict:
    try:
        args = json.loads(call.arguments or "{}")
    except ValueError:
        args = None
    if not isinstance(args, dict):
        raise PromptError(f"the call of {call.name!r} in this chat has arguments that are not a JSON "
                          f"object ({call.arguments[:80]!r}); Ollama takes only an object")
    return args


def _parameter(parameters: str, key: str) -> str | None:
    """A value from the ``parameters`` text of ``/api/show`` (``"num_ctx 4096\\nstop ..."``)."""
    for line in parameters.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0] == key:
            return parts[1].strip().strip('"')
    return None


def _finish(reason: str | None) -> str:
    return {"length": "length", "stop": "stop", None: "stop", "": "stop"}.get(reason, reason or "stop")
