"""Retrieval-augmented models in ``llmlab serve``: ``-m rag/COLLECTION@MODEL`` answers from a collection.

    llmlab serve -m smollm2 -m rag/novels@smollm2 --store ./rag-store --rag-k 5

A rag model is a name, not another loaded model: its requests run through MODEL's queue and engine
(one loaded copy, shared with a plain ``-m MODEL``), and each generation is logged to the call log
as MODEL's, with the grounded prompt (the numbered excerpts, the question) as its messages.

A chat request's last user message is the question. ``rag.answer.prepare`` retrieves the best
``--rag-k`` excerpts and fits the grounded prompt (rag's system message, the numbered excerpts, the
question) into the served model's window, keeping room for the request's token limit (unset, or
the whole window or more as clients send it to mean "as much as fits": 256 are kept, and the answer
may then use all that is left). The response carries the sources beside the answer: ``sources``
(each excerpt in the prompt: ``n``, file name, ``page``, ``start``, ``end``, ``text``, ``score``,
``cited``), ``citations``, ``invalid_citations`` and ``dropped`` -- top-level fields of a whole
answer, and of the last chunk of a stream (OpenAI: the one before ``[DONE]``; Ollama: the ``done``
line). Nothing retrieved, or not even the best excerpt fitting, is a 400 in the API's own format.

What it gives up: each question is answered on its own. The conversation's earlier turns and the
client's system message are not sent: retrieval reads only the last question, an earlier answer's
citation numbers point at other excerpts, and a small window is better spent on sources; so a
follow-up such as "and then?" retrieves poorly. A raw prompt (``/v1/completions``, ``/api/generate``
with ``raw``) has no question to retrieve for and is refused; a plain ``/api/generate`` prompt is
the question. Retrieval runs in one thread per server, so questions are retrieved one at a time.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..chat import Message
from ..errors import ConfigError, RagError, StoreUnreachableError
from .common import ApiError

PREFIX = "rag/"
DEFAULT_RESERVE = 256  # tokens kept for the answer when a request sets no limit (rag ask's default)
_retrieval: ThreadPoolExecutor | None = None  # one thread: the embedder and the stores are shared


def is_rag(target: str) -> bool:
    """``rag/NAME@MODEL`` (a relative path ``rag/x.gguf`` that exists is a model file, not this)."""
    return target.startswith(PREFIX) and not Path(target).exists()


@dataclass
class RagModel:
    name: str                     # as served: rag/novels@smollm2
    collection: str
    target: str                   # the model spec that answers: smollm2, ollama/llama3.2:1b@URL, ...
    store: str | None = None      # as ``llmlab rag --store`` takes it
    k: int = 5
    retriever: str = "hybrid"

    @classmethod
    def parse(cls, spec: str, *, store: str | None = None, k: int = 5, retriever: str = "hybrid") -> RagModel:
        """``"rag/novels@smollm2"`` -> collection ``novels`` answered by ``smollm2`` (split at the first
        ``@``: a collection name has none, a model spec may: ``rag/novels@ollama/llama3.2:1b@URL``)."""
        collection, sep, target = spec.removeprefix(PREFIX).partition("@")
        if not (sep and collection.strip() and target.strip()):
            raise ConfigError(f"cannot read rag model spec {spec!r}; use rag/COLLECTION@MODEL, "
                              "e.g. rag/novels@smollm2")
        return cls(spec, collection.strip(), target.strip(), store, k, retriever)

    def check(self) -> None:
        """The collection exists and the settings are valid; cheap, so it runs before any model loads."""
        from ..checks import did_you_mean, whole_number
        from ..rag.collection import Collection
        from ..rag.retrieval import RETRIEVERS

        if self.retriever not in RETRIEVERS:
            hint = did_you_mean(self.retriever, RETRIEVERS)
            raise ConfigError(f"unknown retriever {self.retriever!r}{hint} for --rag-retriever; choose one "
                              f"of {', '.join(RETRIEVERS)}")
        whole_number("--rag-k", self.k)
        Collection.open(self.collection, self.store)  # one line with did-you-mean if it is not there

    def warm(self) -> None:
        """Load the collection's embedder and open its stores now, so a missing piece fails at start-up
        and the first question is as quick as the next."""
        from ..rag.retrieval import retrieve

        retrieve("warm-up", self.collection, retriever=self.retriever, k=1, store=self.store)

    def describe(self) -> dict:
        return {"collection": self.collection, "model": self.target, "k": self.k, "retriever": self.retriever}


@dataclass
class Grounding:
    """The excerpts a grounded prompt holds (numbered from 1) and how many were left out."""

    context: list
    dropped: int

    def fields(self, answer: str) -> dict:
        """What a response carries beside the answer."""
        from ..rag.answer import parse_citations

        valid, invalid = parse_citations(answer, len(self.context))
        sources = [{"n": n, "source": Path(hit.source).name, "page": hit.page, "start": hit.start,
                    "end": hit.end, "text": hit.text, "score": hit.score, "cited": n in valid}
                   for n, hit in enumerate(self.context, 1)]
        return {"sources": sources, "citations": valid, "invalid_citations": invalid, "dropped": self.dropped}


def reserve(window: int | None, limit: int | None) -> int:
    """Tokens to keep for the answer while fitting excerpts: the request's limit, unless it is unset
    or at least the whole window (what clients send to mean "as much as fits")."""
    if limit is None or (window and limit >= window):
        return DEFAULT_RESERVE
    return limit


def question(messages: list[Message]) -> str:
    for m in reversed(messages):
        if m.role == "user" and m.content.strip():
            return m.content
    raise ApiError(400, "a rag model answers the last user message, and this request has none",
                   param="messages")


async def ground(rag: RagModel, model, messages: list[Message], limit: int | None
                 ) -> tuple[list[Message], Grounding]:
    """The grounded messages for the request's last question, fitted to ``model``'s window."""
    from ..rag.answer import prepare

    global _retrieval
    asked = question(messages)
    room = reserve(model.info.context_length, limit)
    if _retrieval is None:
        _retrieval = ThreadPoolExecutor(1, thread_name_prefix="serve-rag")
    loop = asyncio.get_running_loop()
    try:
        grounded, context, dropped = await loop.run_in_executor(_retrieval, lambda: prepare(
            asked, rag.collection, model, k=rag.k, retriever=rag.retriever, store=rag.store,
            max_new_tokens=room))
    except StoreUnreachableError as exc:  # the vector store is down: the server's trouble, worth a retry
        raise ApiError(503, str(exc), code="rag_store_unreachable") from exc
    except RagError as exc:  # nothing retrieved, or not even the best excerpt fits: the request's to fix
        message = str(exc).replace("--max-new-tokens", "max_tokens")  # the CLI's word for the limit
        raise ApiError(400, message, param="messages", code="rag_no_context") from exc
    return grounded, Grounding(context, dropped)

