"""Retrieval-augmented generation: ingest files into a collection, retrieve chunks, answer with citations.

    >>> from llmlab import rag
    >>> rag.ingest(["papers/"], "papers", progress=True)                      # doctest: +SKIP
    >>> rag.retrieve("What is BM25?", "papers", retriever="hybrid", k=5)        # doctest: +SKIP
    >>> answer = rag.ask("What is BM25?", "papers", model="smollm2")            # doctest: +SKIP
    >>> answer.text, answer.citations, answer.sources, answer.dropped           # doctest: +SKIP

Modules, one idea each: ``documents`` (files -> text), ``chunk`` (text -> token-counted chunks),
``collection`` (on-disk layout, manifest, embedder record, write lock), ``stores/`` (the ``--store``
string, the vector store interface, ChromaDB embedded or server, Qdrant local or server),
``ingestion``, ``bm25``, ``retrieval`` (dense, BM25, fusion, neighbours), ``rerank`` (cross-encoder or
yes/no log-probabilities), ``answer`` (grounded prompt, citations), ``answer_eval`` (reference
metrics, faithfulness judge), ``evaluate`` (``llmlab rag eval``, a run). Nothing heavy is imported
until a function runs. (The modules are not named after the functions, ``ingest`` and ``retrieve``,
so that importing one never hides the function of the same name on the package.)
"""

from __future__ import annotations

__all__ = ["Answer", "Retrieved", "ask", "ingest", "neighbours", "retrieve"]


def __getattr__(name: str):
    if name == "ingest":
        from .ingestion import ingest

        return ingest
    if name in ("retrieve", "Retrieved", "neighbours"):
        from . import retrieval

        return getattr(retrieval, name)
    if name in ("ask", "Answer"):
        from . import answer

        return getattr(answer, name)
    raise AttributeError(f"module 'llmlab.rag' has no attribute {name!r}")
