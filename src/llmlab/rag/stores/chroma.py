"""The default store: ChromaDB embedded (``PersistentClient``), on disk, in this process.

One chroma directory holds every collection of a store (``data_dir()/rag/chroma`` unless
``--store DIR``). Collections use cosine distance (``configuration={"hnsw": {"space": "cosine"}}``)
and have no embedding function (``embedding_function=None``), so chroma never downloads its own
model; llmlab passes every vector in. Telemetry is off. Writes are batched under
``client.get_max_batch_size()``.

What it gives up: chroma's own locking is for threads, not processes; llmlab's lock file
(``collection.py``) keeps a second writer out. Scores are ``1 - cosine distance``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from ...errors import MissingDependencyError, RagError
from .base import Hit, VectorStore

READ_BATCH = 2000


def client(path: Path):
    try:
        import chromadb
        from chromadb.config import Settings
    except ImportError as exc:
        raise MissingDependencyError("chromadb", "rag") from exc
    logging.getLogger("chromadb.telemetry").setLevel(logging.CRITICAL)  # silent, even if it were on
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))


class ChromaStore(VectorStore):
    def __init__(self, path: Path, name: str):
        self.client = client(path)
        self.name = name
        self.collection = self.client.get_or_create_collection(
            name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}})

    def add(self, ids, vectors, texts, metadatas) -> None:
        step = max(1, int(self.client.get_max_batch_size()))
        for i in range(0, len(ids), step):
            self.collection.add(ids=ids[i:i + step], embeddings=vectors[i:i + step],
                                documents=texts[i:i + step], metadatas=metadatas[i:i + step])

    def delete_document(self, doc_id: str) -> None:
        self.collection.delete(where={"doc_id": doc_id})

    def query(self, vector, k: int) -> list[Hit]:
        k = min(k, self.count())
        if k <= 0:
            return []
        try:
            found = self.collection.query(query_embeddings=[vector], n_results=k,
                                          include=["documents", "metadatas", "distances"])
        except Exception as exc:  # chroma raises its own kinds (wrong dimension, a broken index)
            raise RagError(f"collection {self.name}: the query failed in chromadb: {exc}") from exc
        return [Hit(i, t, m, 1.0 - float(d)) for i, t, m, d in
                zip(found["ids"][0], found["documents"][0], found["metadatas"][0], found["distances"][0],
                    strict=True)]

    def get(self, ids: list[str]) -> list[Hit]:
        found = self.collection.get(ids=ids, include=["documents", "metadatas"])
        by_id = {i: Hit(i, t, m) for i, t, m in
                 zip(found["ids"], found["documents"], found["metadatas"], strict=True)}
        return [by_id[i] for i in ids if i in by_id]

    def count(self) -> int:
        return int(self.collection.count())

    def chunks(self) -> Iterator[Hit]:
        offset = 0
        while True:
            batch = self.collection.get(include=["documents", "metadatas"], limit=READ_BATCH, offset=offset)
            if not batch["ids"]:
                return
            for i, t, m in zip(batch["ids"], batch["documents"], batch["metadatas"], strict=True):
                yield Hit(i, t, m)
            offset += len(batch["ids"])

    def drop(self) -> None:
        self.client.delete_collection(self.name)
