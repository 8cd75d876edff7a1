"""What a vector store must do for llmlab, and nothing more: add, delete a document, query, get, count.

A store holds one collection's chunks: an id, the vector llmlab computed, the text and flat metadata
(``doc_id``, ``source``, ``page``, ``start``, ``end``). llmlab computes every vector itself and
passes it in, so a store never embeds anything. A new store is one file beside ``chroma.py`` and
``qdrant.py`` implementing this class, plus its ``--store`` scheme in ``__init__.py``.

What it gives up: no filters, no updates in place (a changed document is deleted and added again),
and ``chunks()`` reads the whole collection, which the BM25 index needs and a large remote store
would rather not do.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Hit:
    id: str
    text: str
    metadata: dict = field(default_factory=dict)
    score: float = 0.0  # higher is better (cosine similarity for dense search)


class VectorStore(ABC):
    @abstractmethod
    def add(self, ids: list[str], vectors, texts: list[str], metadatas: list[dict]) -> None:
        """Store chunks, batched as the store needs."""

    @abstractmethod
    def delete_document(self, doc_id: str) -> None:
        """Remove every chunk of one document (nothing happens for an unknown id)."""

    @abstractmethod
    def query(self, vector, k: int) -> list[Hit]:
        """The ``k`` nearest chunks to ``vector``, best first."""

    @abstractmethod
    def get(self, ids: list[str]) -> list[Hit]:
        """The chunks with these ids, in the order given (ids not stored are left out)."""

    @abstractmethod
    def count(self) -> int:
        """Chunks stored."""

    @abstractmethod
    def chunks(self) -> Iterator[Hit]:
        """Every chunk, in batches under the hood (for the BM25 index)."""

    @abstractmethod
    def drop(self) -> None:
        """Delete the whole collection."""
