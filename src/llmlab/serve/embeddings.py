"""What the OpenAI and Ollama embedding routes share: the texts a request gives, and their vectors.

Each route keeps its own request and response shapes (``/v1/embeddings``, ``/api/embed``,
``/api/embeddings``); the served model is an ``EmbeddingModel`` (``load_embedder``), whatever its
backend, so ``-e openai/NAME@URL`` serves another server's vectors as well as ``-e minilm`` serves
MiniLM's.
"""

from __future__ import annotations

from .common import ApiError

EMPTY = "input must be a non-empty string or list of non-empty strings"


def texts_of(value, param: str | None = None) -> list[str]:
    """The texts of a request's ``input`` (a string or a list of them); a 400 when one is empty."""
    texts = [value] if isinstance(value, str) else list(value or [])
    if not texts or any(not isinstance(t, str) or not t for t in texts):
        raise ApiError(400, EMPTY, param=param)
    return texts


def embed(model, texts: list[str]) -> tuple[list[list[float]], int]:
    """Each text's vector as JSON numbers (as the model computed them), and the tokens read."""
    out = model.embeddings(texts)
    return out.vectors.tolist(), out.prompt_tokens
