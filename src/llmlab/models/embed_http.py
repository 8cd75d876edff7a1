"""Embedding models behind a server: OpenAI-compatible ``/v1/embeddings`` and Ollama's ``/api/embed``.

The server, the API key, retries and the one-line errors are those of the generation backends,
because the requests go through the same client: an ``OpenAIModel`` or ``OllamaModel`` opened
without its generation check. So ``openai/NAME@http://host:port/v1``, ``base_url=``, ``api_key=``
and the environment variables mean here what they mean in ``openai.py`` and ``ollama.py``, and an
unreachable server, a refused key (401/403) or a model the server lacks fail the same way.

Texts go ``batch_size`` to a request (64 unless set). On load one short text is embedded (unless
``check=False``), which proves the server has the model and learns the vectors' dimension.

What it gives up: a server decides how it treats a text past its window (Ollama and llmlab serve cut
it; OpenAI refuses it) and whether its vectors are normalised, so ``info.normalized`` is None and
``info.max_seq_length`` is None unless the server says (Ollama's ``/api/show``).
"""

from __future__ import annotations

from ..errors import BackendError
from .embed import EmbeddingInfo, EmbeddingModel

PROBE = "llmlab"  # the text embedded on load


class HTTPEmbedder(EmbeddingModel):
    """What both share: the client, batching, the load check. Subclasses speak the protocol."""

    def __init__(self, model_name: str, name: str | None = None, *, batch_size: int = 64,
                 check: bool = True, **http_options):
        # a RemoteModel opened without its generation check: base URL, key, retries, errors
        client = self._client(model_name, **http_options)
        self.client = client
        super().__init__(EmbeddingInfo(name=client.info.name, backend=self.backend,
                                       batch_size=int(batch_size),
                                       extra={"base_url": client.base_url}))
        if check:
            self._describe()
            self.embed([PROBE])  # the model exists and embeds; its dimension

    def _client(self, model_name: str, **http_options):
        raise NotImplementedError

    def _describe(self) -> None:  # noqa: B027 - optional: what the server says about the model
        pass

    def _embed(self, texts: list[str]) -> tuple[list, int]:
        vectors, tokens = [], 0
        step = max(1, self.info.batch_size)
        for start in range(0, len(texts), step):
            batch = texts[start:start + step]
            got, n = self._request(batch)
            if not isinstance(got, list) or len(got) != len(batch):
                raise BackendError(f"the {self.backend} server at {self.client.base_url} returned "
                                   f"{len(got) if isinstance(got, list) else 'no'} vectors for "
                                   f"{len(batch)} texts")
            vectors += got
            tokens += int(n or 0)
        return vectors, tokens

    def _request(self, texts: list[str]) -> tuple[list, int]:
        raise NotImplementedError

    def _json(self, response) -> dict:
        try:
            body = response.json()
        except ValueError as exc:
            raise BackendError(f"the {self.backend} server at {self.client.base_url} answered with "
                               f"something that is not JSON: {response.text[:120]!r}") from exc
        if not isinstance(body, dict):
            raise BackendError(f"the {self.backend} server at {self.client.base_url} answered "
                               f"{type(body).__name__}, not a JSON object")
        return body

    def close(self) -> None:
        self.client.close()


class OpenAIEmbedder(HTTPEmbedder):
    """``POST {base_url}/embeddings`` with ``encoding_format: float``."""

    backend = "openai"

    def _client(self, model_name: str, **http_options):
        from .openai import OpenAIModel

        return OpenAIModel(model_name, check=False, **http_options)

    def _request(self, texts: list[str]) -> tuple[list, int]:
        r = self.client.request("POST", "/embeddings", json_body={
            "model": self.info.name, "input": texts, "encoding_format": "float"})
        body = self._json(r)
        data = body.get("data")
        if not isinstance(data, list):
            raise BackendError(f"the openai server at {self.client.base_url} answered /embeddings "
                               "without a data list")
        data = sorted(data, key=lambda d: d.get("index", 0) if isinstance(d, dict) else 0)
        vectors = [d.get("embedding") if isinstance(d, dict) else None for d in data]
        if any(not isinstance(v, list) for v in vectors):
            raise BackendError(f"the openai server at {self.client.base_url} sent an embedding that "
                               "is not a list of numbers")
        usage = body.get("usage") or {}
        return vectors, usage.get("prompt_tokens") or 0


class OllamaEmbedder(HTTPEmbedder):
    """``POST {host}/api/embed`` (Ollama 0.3.4 and later, and llmlab serve)."""

    backend = "ollama"

    def _client(self, model_name: str, **http_options):
        from .ollama import OllamaModel

        return OllamaModel(model_name, check=False, **http_options)

    def _describe(self) -> None:
        """The window and dimension where ``/api/show`` tells them (Ollama does; llmlab serve not)."""
        r = self.client.request("POST", "/api/show", json_body={"model": self.info.name}, missing_ok=True)
        if r.status_code >= 400:
            return  # the embedding request that follows says what is wrong
        show = self._json(r)
        model_info = show.get("model_info") or {}
        arch = model_info.get("general.architecture")
        if arch:
            length = model_info.get(f"{arch}.context_length")
            self.info.max_seq_length = int(length) if length else None
            dim = model_info.get(f"{arch}.embedding_length")
            self.info.dimension = int(dim) if dim else None
        self.info.extra["capabilities"] = show.get("capabilities") or []

    def _request(self, texts: list[str]) -> tuple[list, int]:
        r = self.client.request("POST", "/api/embed", json_body={"model": self.info.name, "input": texts})
        body = self._json(r)
        if "error" in body:
            raise BackendError(f"the ollama server at {self.client.base_url} failed to embed: "
                               f"{body['error']}")
        return body.get("embeddings"), body.get("prompt_eval_count") or 0
