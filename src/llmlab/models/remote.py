"""What the HTTP backends (``ollama/``, ``openai/``) share: one httpx client, retries, clear errors.

A remote model is a name on a server. Requests that fail on the way (connection refused, timeouts,
HTTP 429 and 5xx) are retried with exponential backoff, honouring ``Retry-After``; a stream is
retried only until its first byte, since a half-delivered answer cannot be replayed. Whatever still
fails becomes one ``BackendError`` subclass with a one-line message naming the server:

    ServerUnreachableError    nothing answers at the base URL (refused, DNS, timeout)
    AuthenticationError       HTTP 401/403: the API key is missing or wrong
    RemoteModelNotFoundError  the server does not have the model (lists the ones it has)
    ServerBusyError           still 429/503 after the retries

A server usually applies the chat template itself and may not expose a tokenizer, so ``fit()``
checks the context window only when both the window and a tokenizer are known; otherwise the prompt
goes as it is and the server's own usage figures are what gets logged. Every streamed chunk carries
a running token count (one per streamed event), so a stream cut off part-way is still counted
without a tokenizer.

A request that fails on a kept-alive connection before any answer (``Server disconnected without
sending a response``: llama-server closes a connection after a few requests) is sent again at once on
a new one, twice at most, before it counts as the server's failure. Counted as one, each such race
set the only server aside for seconds: ``llmlab eval -j 8`` against llama-server ran at 0.78x of the
server's capacity, and one request at a time sometimes at 0.37 items/s.

A model name may carry its server: ``ollama/llama3.2:1b@http://127.0.0.1:11434``.

Structured output and tool calls are passed through to the server in its own API's shape (see each
backend); what comes back is checked, and asked for again, by ``constrained.py``.

A server that refuses a request because of its tools or output format (an HTTP error whose message
names them) is one ``NotSupportedError`` line. Such a request is not retried on HTTP 500: servers
that cannot do them answer 500 (llama-cpp-python's does), and asking again repeats the failure.
"""

from __future__ import annotations

import email.utils
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..chat import Message, Overflow
from ..config import GenerationConfig
from ..errors import (
    AuthenticationError,
    BackendError,
    ConnectionDroppedError,
    MissingDependencyError,
    NotSupportedError,
    RemoteModelNotFoundError,
    ServerBusyError,
    ServerUnreachableError,
)
from .base import Chunk, Model, ModelInfo, Usage
from .constrained import checked_stream
from .constrained import one_line as _one_line
from .fleet import Pool, RateLimit, Server, estimate_tokens

if TYPE_CHECKING:
    import threading

RETRY_STATUS = {429, 500, 502, 503, 504}
# A kept-alive connection the server closed between two requests fails at once, before any byte of
# an answer: sent again on a new connection, not counted against the server (below).
STALE_RETRIES = 2
SPECIAL_MARGIN = 4  # tokens a prompt may hold beyond one per byte (BOS, a leading space)
# request fields that ask a server for a feature it may not have: (what to call it, a word that a
# server's refusal of it contains)
FEATURES = {"tools": ("tool calling", "tool"), "tool_choice": ("tool calling", "tool"),
            "response_format": ("structured output", "format"), "format": ("structured output", "format")}


def _stale_errors() -> tuple:
    import httpx

    return (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


def env_first(*names: str) -> str | None:
    """The first of these environment variables that is set and non-empty."""
    for name in names:
        if value := os.environ.get(name, "").strip():
            return value
    return None


def split_url(model_name: str) -> tuple[str, str | None]:
    """``"llama3.2:1b@http://host:11434"`` -> ``("llama3.2:1b", "http://host:11434")``."""
    name, sep, url = str(model_name).partition("@")
    if sep and url.startswith(("http://", "https://")):
        return name, url
    return str(model_name), None


def error_message(response) -> str:
    """The server's own words from an error response, in OpenAI, Ollama or FastAPI shape."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason_phrase or "").strip()[:300]
    if isinstance(body, dict):
        err = body.get("error", body.get("detail", body))
        if isinstance(err, dict):
            err = err.get("message", err)
        return str(err)[:300]
    return str(body)[:300]


def _features(body) -> list[str]:
    """The optional features a request body asks for (its keys in ``FEATURES``)."""
    return [k for k in FEATURES if isinstance(body, dict) and body.get(k)]


class RemoteModel(Model):
    """Base of the HTTP backends: subclasses set ``default_url`` and implement the protocol."""

    default_url = ""
    key_hint = "--api-key"
    server_templates = True
    in_process = False

    capabilities = frozenset({"tools", "grammar"})  # passed to the server, checked on what comes back

    def __init__(self, info: ModelInfo, base_url: str, api_key: str | None = None,
                 timeout: float = 120.0, connect_timeout: float = 5.0, retries: int = 3,
                 backoff: float = 0.5, transport=None, output_retries: int = 2,
                 balance: str = "least-busy", cooldown: float = 5.0, rpm: int | None = None,
                 tpm: int | None = None):
        try:
            import httpx
        except ImportError as exc:
            raise MissingDependencyError("httpx", "all") from exc
        super().__init__(info)
        urls = [u.strip().rstrip("/") for u in base_url.split(",") if u.strip()]  # a pool: fleet.py
        self.base_url = urls[0]
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        self.output_retries = max(0, int(output_retries))
        headers = {"User-Agent": "llmlab"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        servers = [Server(url, httpx.Client(
            base_url=url, headers=headers, timeout=httpx.Timeout(timeout, connect=connect_timeout),
            trust_env=False, transport=transport))  # an httpx transport: a test's fake server, a proxy, ...
            for url in urls]
        self.pool = Pool(servers, balance, cooldown)
        self.http = servers[0].http  # the first server answers what any would (models, tokens)
        self.limit = RateLimit(rpm, tpm) if rpm or tpm else None
        self.info.extra["base_url"] = ",".join(urls)

    # --- requests with retries -------------------------------------------------------------------

    def request(self, method: str, path: str, *, json_body=None, missing_ok: bool = False):
        """One request, retried on connection errors, 429 and 5xx; returns the httpx response.

        With ``missing_ok`` a 404/405 is returned to the caller (probing for an optional endpoint).
        """
        with self.open(method, path, json_body=json_body, stream=False, missing_ok=missing_ok) as r:
            return r

    @property
    def concurrent(self) -> bool:
        return True  # one httpx client per server, shared safely by threads

    @contextmanager
    def open(self, method: str, path: str, *, json_body=None, stream: bool = True,
             missing_ok: bool = False):
        """Open a (streaming) response once the status is good; retries happen before any byte.
        ``path`` is under the base URL, or with ``~/`` under the server's root (``/v1`` left off).

        A server of the pool that fails is set aside and the request goes to another at once; the
        retries (with backoff) are counted only while no server is left (``fleet.py``). A connection
        that drops after the status is one ``ConnectionDroppedError`` (a run re-runs that unit)."""
        import httpx

        attempt, force, problem, stale = 0, False, None, 0
        asks = _features(json_body)
        retry_status = RETRY_STATUS - {500} if asks else RETRY_STATUS
        if self.limit is not None:
            self.limit.wait(estimate_tokens(json_body))
        while True:
            server = self.pool.pick(force)
            if server is None:  # every server failed a moment ago (in another thread): wait as a retry
                if attempt >= self.retries:
                    raise problem or ServerUnreachableError(
                        f"every {self.backend} server of {self.pool.urls} is failing; are they running?")
                time.sleep(self._delay(attempt, None))
                attempt, force = attempt + 1, True
                continue
            force = False
            try:
                where = server.root + path[1:] if path.startswith("~/") else path
                req = server.http.build_request(method, where, json=json_body)
                response = server.http.send(req, stream=stream)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout,
                    httpx.RemoteProtocolError, httpx.WriteError, httpx.ReadError) as exc:
                if stale < STALE_RETRIES and isinstance(exc, _stale_errors()):
                    self.pool.release(server)  # sent again at once, on a new connection
                    stale += 1
                    continue
                self.pool.done(server, ok=False)
                problem = self._unreachable(exc, server.url)
                if self.pool.any_up():
                    continue
                if attempt >= self.retries:
                    raise problem from exc
                time.sleep(self._delay(attempt, None))
                attempt, force = attempt + 1, True
                continue
            if response.status_code in retry_status and (self.pool.any_up(server) or attempt < self.retries):
                response.close()
                self.pool.done(server, ok=False)
                if not self.pool.any_up():
                    time.sleep(self._delay(attempt, response.headers.get("retry-after")))
                    attempt, force = attempt + 1, True
                continue
            healthy = response.status_code < 500  # a refusal (4xx) is the request's fault, not the server's
            try:
                if not (missing_ok and response.status_code in (404, 405)):
                    self._check(response, path, asks)
                yield response
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.ReadTimeout) as exc:
                healthy = False
                raise ConnectionDroppedError(
                    f"the {self.backend} server at {server.url} dropped the connection in the middle of "
                    f"an answer ({type(exc).__name__}: {_one_line(exc, 80)})") from exc
            finally:
                response.close()
                self.pool.done(server, ok=healthy)
            return

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        delay = self.backoff * 2 ** attempt
        if retry_after:
            try:
                delay = float(retry_after)
            except ValueError:
                when = email.utils.parsedate_to_datetime(retry_after)
                delay = when.timestamp() - time.time() if when else delay
        return min(max(delay, 0.0), 30.0)

    def _unreachable(self, exc: Exception, url: str | None = None) -> ServerUnreachableError:
        kind = type(exc).__name__
        what = "timed out" if "Timeout" in kind else f"could not be reached ({kind}: {exc})"
        return ServerUnreachableError(
            f"the {self.backend} server at {url or self.base_url} {what}; is it running? "
            f"(set the URL with {self.url_hint})")

    @property
    def url_hint(self) -> str:
        return "the model name's @URL suffix or the environment"

    def _check(self, response, path: str, asks: list[str] = ()) -> None:
        status = response.status_code
        if status < 400:
            return
        response.read()
        message = error_message(response)
        where = f"{self.base_url}{path if path.startswith('/') else '/' + path}"
        if status in (401, 403):
            raise AuthenticationError(
                f"the {self.backend} server at {self.base_url} refused the request (HTTP {status}: "
                f"{message}); check the API key ({self.key_hint})")
        if status == 404 and "model" in message.lower():
            raise RemoteModelNotFoundError(
                f"the {self.backend} server at {self.base_url} has no model {self.info.name!r} "
                f"({message}){self._available_hint()}")
        transient = status in RETRY_STATUS and not (status == 500 and asks)  # see the docstring
        if asks and not transient:
            lowered = message.lower()
            named = [name for key, (name, stem) in FEATURES.items() if key in asks and stem in lowered]
            if named:
                raise NotSupportedError(
                    f"the {self.backend} server at {self.base_url} refused a request with "
                    f"{' and '.join(dict.fromkeys(named))} (HTTP {status}: {_one_line(message)}); "
                    "it may not support it")
        if transient:
            raise ServerBusyError(
                f"the {self.backend} server at {self.base_url} is still busy or failing after "
                f"{self.retries} retries (HTTP {status}: {message})")
        asked = ", ".join(dict.fromkeys(FEATURES[k][0] for k in asks))
        raise BackendError(f"{where} answered HTTP {status}: {_one_line(message) or '(no message)'}"
                           f"{f' (the request asked for {asked})' if asked else ''}")

    def _available_hint(self) -> str:
        try:
            names = self.list_models()
        except BackendError:
            return ""
        return f"; it has: {', '.join(names[:20])}" if names else "; it has no models"

    def list_models(self) -> list[str]:
        """Names of the models the server offers."""
        raise NotImplementedError

    # --- generation: the server's stream, checked where the request constrains it ---------------

    def stream(self, prompt: str | list[Message], config: GenerationConfig,
               cancel: threading.Event | None = None) -> Iterator[Chunk]:
        """The server's stream; buffered, checked and re-asked when the config constrains the answer
        (see the module docstring)."""
        yield from checked_stream(lambda: self._stream(prompt, config, cancel), config, self.output_retries,
                                  f"the {self.backend} server at {self.base_url}", cancel)

    def _stream(self, prompt: str | list[Message], config: GenerationConfig,
                cancel: threading.Event | None = None) -> Iterator[Chunk]:
        """One request's chunks as the server sends them: what each backend implements."""
        raise NotImplementedError

    def refuse_raw_tools(self, prompt, config: GenerationConfig) -> None:
        """Tool calls need a chat: a raw completion has no place for them in either API."""
        if isinstance(prompt, str) and config.tools and config.tool_choice != "none":
            raise NotSupportedError(
                f"{self.backend}/{self.info.name}: tool calls need a chat (a list of messages), "
                "not a raw string prompt")

    # --- streaming helpers -----------------------------------------------------------------------

    @staticmethod
    def running(n: int) -> Usage:
        return Usage(prompt_tokens=0, completion_tokens=n)

    def counted(self, piece: str, n: int) -> Iterator[Chunk]:
        """The n-th piece, preceded by the running count, so a stream cut off part-way is still
        counted without a tokenizer (``Response`` reads a chunk's usage only after yielding its text)."""
        yield Chunk("", usage=self.running(n))
        yield Chunk(piece)

    @staticmethod
    def json_lines(response, prefix: str = "") -> Iterator[dict]:
        """Decoded JSON objects from NDJSON (``prefix=""``) or SSE (``prefix="data:"``) lines."""
        for line in response.iter_lines():
            line = line.strip()
            if not line or (prefix and not line.startswith(prefix)):
                continue
            payload = line[len(prefix):].strip()
            if payload == "[DONE]":
                return
            try:
                yield json.loads(payload)
            except ValueError as exc:
                raise BackendError(f"the server sent a line that is not JSON: {payload[:120]!r}") from exc

    # --- the context window ----------------------------------------------------------------------

    has_tokenizer: bool = False

    def prompt_ids(self, prompt: str | list[Message]) -> list[int]:
        """For counting only: the server tokenizes what it is sent (and renders chats itself)."""
        return self.encode(self.prompt_text(prompt))

    def fit(self, prompt: str | list[Message], config: GenerationConfig,
            overflow: Overflow = "error") -> tuple[str | list[Message], int, int]:
        """Check the window when it and a tokenizer are known; else let the server judge (0 tokens)."""
        can_render = isinstance(prompt, str) or bool(self.info.chat_template)
        ctx = self.info.context_length
        if ctx and can_render and self.has_tokenizer:
            # a token covers at least one byte of its text (a few more for BOS and SentencePiece's
            # leading space), so a prompt of few enough bytes fits without asking the server to count
            if len(self.prompt_text(prompt).encode()) + SPECIAL_MARGIN + config.max_new_tokens <= ctx:
                return prompt, 0, 0
            return super().fit(prompt, config, overflow)
        return prompt, 0, 0

    def close(self) -> None:
        self.pool.close()
