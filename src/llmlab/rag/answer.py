"""Answers grounded in numbered sources: retrieve, fit the excerpts into the model's window, cite.

The prompt is two chat messages: a system message asking for an answer from the sources only, each
claim cited by number ("[2]"), and a user message listing the excerpts' texts as ``[1]``,
``[2]``..., then the question (where each excerpt comes from is kept for the answer's source list,
not put in the prompt: SmolLM2-135M given file names and offsets copied them out as its answer).
Excerpts are dropped from the lowest-ranked up until the prompt (counted with the answering model's
own ``count_tokens``) plus ``max_new_tokens`` fits its context window; the prompt then says how many
were left out and why. If not even the best one fits, that is a one-line ``RagError``, never an
answer from an empty context.

After the answer, ``parse_citations`` reads every ``[n]`` / ``[n, m]``; numbers that point to no
excerpt are dropped and counted (``Answer.invalid``), and ``Answer.sources`` lists the cited ones.

What it gives up: a model that ignores the instruction cites nothing, and then nothing is listed
(``Answer.citations`` is empty: the caller can see it); citations are not checked against what the
excerpt says.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RagError
from .collection import Collection
from .retrieval import Retrieved, check_retriever, retrieve

SYSTEM = ("You answer questions using only the numbered sources you are given. After each claim, cite "
          "the source it comes from by its number in square brackets, like [1] or [2]. If the sources "
          "do not contain the answer, say that they do not.")
_CITATION = re.compile(r"\[\s*(\d+(?:\s*[,;]\s*\d+)*)\s*\]")


@dataclass
class Answer:
    question: str
    text: str
    context: list[Retrieved]      # the excerpts in the prompt, numbered from 1 in this order
    citations: list[int]          # valid cited numbers, in the order first cited
    invalid: list[int]            # cited numbers that point to no excerpt (dropped)
    dropped: int = 0              # retrieved excerpts left out so the prompt fits the window
    response: object = field(default=None, repr=False)

    @property
    def sources(self) -> list[tuple[int, Retrieved]]:
        """The cited excerpts, as (number, excerpt)."""
        return [(n, self.context[n - 1]) for n in self.citations]


def parse_citations(text: str, n_sources: int) -> tuple[list[int], list[int]]:
    """(valid numbers in order of first citation, numbers out of range) for ``[n]``, ``[n, m]``.

    >>> parse_citations("Geneva [1][3], and [2, 9]; see [1].", 3)
    ([1, 3, 2], [9])
    """
    valid: list[int] = []
    invalid: list[int] = []
    for match in _CITATION.finditer(text):
        for part in re.split(r"[,;]", match.group(1)):
            n = int(part)
            bucket = valid if 1 <= n <= n_sources else invalid
            if n not in bucket:
                bucket.append(n)
    return valid, invalid


def build_messages(question: str, excerpts: list[Retrieved], dropped: int = 0) -> list:
    from ..chat import Message

    # the excerpt's text only: given its file and offsets too, a small model copies them out as its answer
    parts = [f"[{n}] {' '.join(hit.text.split())}" for n, hit in enumerate(excerpts, 1)]
    note = ""
    if dropped:
        note = (f"\n\n({dropped} more retrieved excerpt{'s were' if dropped > 1 else ' was'} left out "
                "because they did not fit in the model's context window.)")
    user = "Sources:\n\n" + "\n\n".join(parts) + note + f"\n\nQuestion: {question.strip()}\n" \
        "Answer in one or two sentences from the sources, and cite them by number, like [1]."
    return [Message("system", SYSTEM), Message("user", user)]


def fit(model, question: str, hits: list[Retrieved], max_new_tokens: int) -> tuple[list, int]:
    """The messages with as many of the best excerpts as fit, and how many were dropped."""
    window = model.info.context_length
    for n in range(len(hits), 0, -1):
        messages = build_messages(question, hits[:n], len(hits) - n)
        if not window or model.count_tokens(messages) + max_new_tokens <= window:
            return messages, len(hits) - n
    bare = model.count_tokens(build_messages(question, []))
    if window and bare + max_new_tokens > window:
        raise RagError(f"the question is too long: with the instructions it is {bare} tokens + "
                       f"{max_new_tokens} for the answer, beyond {window} tokens of context, before any "
                       "excerpt (shorten it, raise --n-ctx or lower --max-new-tokens)")
    need = model.count_tokens(build_messages(question, hits[:1]))
    raise RagError(f"not even the best excerpt fits: the prompt with it is {need} tokens + {max_new_tokens} "
                   f"for the answer, beyond {model.info.context_length} tokens of context (raise --n-ctx "
                   "or lower --max-new-tokens)")


def prepare(question: str, collection: str, model, *, k: int = 5, retriever: str = "hybrid",
            store: str | Path | None = None, max_new_tokens: int = 256,
            rerank=None) -> tuple[list, list[Retrieved], int]:
    """Retrieve for ``question`` and fit the grounded prompt to ``model``'s window (a loaded ``Model``).

    Returns (messages, the excerpts in the prompt numbered from 1, how many were dropped); what
    ``ask`` and the server's ``rag/`` models send to the model."""
    hits = retrieve(question, collection, retriever=retriever, k=k, store=store, rerank=rerank)
    if not hits:
        raise RagError(f"collection {collection} has nothing that matches the question; "
                       "nothing to answer from")
    messages, dropped = fit(model, question, hits, max_new_tokens)
    return messages, hits[:len(hits) - dropped], dropped


def ask(question: str, collection: str, *, model="smollm2", k: int = 5, retriever: str = "hybrid",
        store: str | Path | None = None, max_new_tokens: int = 256, temperature: float = 0.0,
        on_text: Callable[[str], None] | None = None, rerank=None) -> Answer:
    """Answer ``question`` from ``collection`` with ``model`` (a name or a loaded ``Model``).

    ``on_text`` receives the answer as it streams (the CLI prints it); ``rerank`` is the reranker
    of the ``hybrid+rerank`` retriever."""
    from ..config import GenerationConfig

    if isinstance(model, str):
        from ..models.registry import load_model

        Collection.open(collection, store)  # an unknown collection fails before the model loads
        check_retriever(retriever, rerank)
        model = load_model(model)
    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature)
    messages, context, dropped = prepare(question, collection, model, k=k, retriever=retriever, store=store,
                                         max_new_tokens=max_new_tokens, rerank=rerank)
    response = model.prompt(messages, config)
    for piece in response:
        if on_text:
            on_text(piece)
    valid, invalid = parse_citations(response.text, len(context))
    return Answer(question, response.text, context, valid, invalid, dropped, response)
