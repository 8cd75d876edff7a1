"""Models served by Ollama, through its native API (``/api/chat``, ``/api/generate``, NDJSON).

The server is ``base_url=`` (or ``ollama/name@http://host:port``), else ``$LLMLAB_OLLAMA_HOST``,
else Ollama's own ``$OLLAMA_HOST``, else ``http://127.0.0.1:11434``; an API key (for a proxy or
Ollama's cloud) comes from ``api_key=``, ``$LLMLAB_OLLAMA_API_KEY`` or ``$OLLAMA_API_KEY``.

A chat goes to ``/api/chat``, where Ollama applies the model's template; a plain string goes to
``/api/generate`` with ``raw: true``, completed as it is, as on every llmlab backend.
``GenerationConfig`` maps onto Ollama's options (``num_predict``, ``temperature`` 0 for greedy,
``top_k``, ``top_p``, ``seed``, ``stop``, ``repeat_penalty``).

What it gives up: Ollama's API has no tokenizer and returns no log-probabilities of the prompt, so
``encode``/``tokenize`` and ``score`` raise ``NotSupportedError`` (the generation's own token counts
come from the server), and the context window is not checked here. Ollama silently truncates a
prompt longer than its ``num_ctx``; pass ``num_ctx=`` to set the window it allocates.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from ..chat import Message
from ..config import GenerationConfig
from ..errors import BackendError, NotSupportedError, RemoteModelNotFoundError
from .base import Chunk, ModelInfo, Token, Usage
from .remote import RemoteModel, env_first, split_url

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
    capabilities = frozenset()
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
        super().__init__(info, normalize_host(base_url), api_key, **http_options)
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

    def list_models(self) -> list[str]:
        r = self.request("GET", "/api/tags")
        return [m.get("name") or m.get("model") for m in r.json().get("models", [])]

    # --- generation ------------------------------------------------------------------------------

    def stream(self, prompt: str | list[Message], config: GenerationConfig,
               cancel: threading.Event | None = None) -> Iterator[Chunk]:
        body = {"model": self.info.name, "stream": True,
                "options": ollama_options(config, self.num_ctx)}
        if isinstance(prompt, str):
            path, key = "/api/generate", "response"
            body.update(prompt=prompt, raw=True)
        else:
            path, key = "/api/chat", "message"
            body["messages"] = [m.to_dict() for m in prompt]
        n = 0
        with self.open("POST", path, json_body=body) as response:
            for event in self.json_lines(response):
                if "error" in event:
                    raise BackendError(f"the ollama server failed while generating: {event['error']}")
                piece = event.get(key) or ""
                if key == "message":
                    piece = (piece or {}).get("content") or ""
                if event.get("done"):
                    usage = Usage(int(event.get("prompt_eval_count") or 0), int(event.get("eval_count") or n))
                    yield Chunk(piece, finish_reason=_finish(event.get("done_reason")), usage=usage)
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


def _parameter(parameters: str, key: str) -> str | None:
    """A value from the ``parameters`` text of ``/api/show`` (``"num_ctx 4096\\nstop ..."``)."""
    for line in parameters.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0] == key:
            return parts[1].strip().strip('"')
    return None


def _finish(reason: str | None) -> str:
    return {"length": "length", "stop": "stop", None: "stop", "": "stop"}.get(reason, reason or "stop")
