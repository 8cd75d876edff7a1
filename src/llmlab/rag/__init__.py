"""Retrieval-augmented generation: ingest files into a collection, retrieve chunks, answer with citations.

    >>> from llmlab import rag
    >>> rag.ingest(["papers/"], "papers", progress=True)                      # doctest: +SKIP
    >>> rag.retrieve("What is BM25?", "papers", retriever="hybrid", k=5)        # doctest: +SKIP
    >>> answer = rag.ask("What is BM25?", "papers", model="smollm2")            # doctest: +SKIP
    >>> answer.text, answer.citations, answer.sources, answer.dropped           # doctest: +SKIP

Modules, one idea each: ``documents`` (files -> text), ``chunk`` (text -> token-counted chunks),
``collection`` (on-disk layout, manifest, embedder record, write lock), ``stores/`` (the ``--store``
string, the vector store interface, ChromaDB embedded or server, Qdrant local or server),
``ingest``, ``bm25``, ``retrieve`` (dense, BM25, fusion, neighbours), ``rerank`` (cross-encoder or
yes/no log-probabilities), ``answer`` (grounded prompt, citations), ``answer_eval`` (reference
metrics, faithfulness judge), ``evaluate`` (``llmlab rag eval``, a run). Nothing heavy is imported
until a function runs.
"""

from __future__ import annotations

__all__ = ["Answer", "Retrieved", "ask", "ingest", "neighbours", "retrieve"]


def __getattr__(name: str):
    if name == "ingest":
        from .ingest import ingest

        return ingest
    if name in ("retrieve", "Retrieved", "neighbours"):
        from . import retrieve as module

        return getattr(module, name)
    if name in ("ask", "Answer"):
        from . import answer

        return getattr(answer, name)
    raise AttributeError(f"module 'llmlab.rag' has no attribute {name!r}")
