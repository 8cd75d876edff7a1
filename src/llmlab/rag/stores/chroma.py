"""ChromaDB: embedded (``PersistentClient``, on disk, in this process; the default) or a server.

One chroma directory holds every collection of a store (``data_dir()/rag/chroma`` unless
``--store DIR``). Collections use cosine distance (``configuration={"hnsw": {"space": "cosine"}}``)
and have no embedding function (``embedding_function=None``), so chroma never downloads its own
model; llmlab passes every vector in. Telemetry is off. Writes are batched under
``client.get_max_batch_size()``.

``--store chroma+http://HOST:PORT`` is the same store through ``chromadb.HttpClient`` against a
server (``chroma run --path DIR --host 127.0.0.1 --port PORT``), for more than one process. A server
that is down, or goes away mid-ingest, is one ``StoreUnreachableError`` naming the URL and how to
start it; every call is wrapped, so no ``httpx`` error reaches the user.

What it gives up: chroma's own locking is for threads, not processes; llmlab's lock file
(``collection.py``) keeps a second writer out (on one machine). Scores are ``1 - cosine distance``.
HNSW search is approximate, so on a large collection a near tie may rank differently than an exact
search (Qdrant's local mode) would.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ...errors import LlmlabError, MissingDependencyError, RagError, StoreUnreachableError
from .base import Hit, VectorStore

READ_BATCH = 2000
_SERVERS: dict[tuple[str, int], object] = {}  # (host, port) -> HttpClient, one per process


def _chromadb():
    try:
        import chromadb
        from chromadb.config import Settings
    except ImportError as exc:
        raise MissingDependencyError("chromadb", "rag") from exc
    logging.getLogger("chromadb.telemetry").setLevel(logging.CRITICAL)  # silent, even if it were on
    return chromadb, Settings(anonymized_telemetry=False)


def client(path: Path):
    chromadb, settings = _chromadb()
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=settings)


def _unreachable(location, exc: Exception) -> StoreUnreachableError:
    cause = exc.__context__ if isinstance(exc, ValueError) and exc.__context__ else exc  # httpx's own words
    reason = str(cause).splitlines()[0] if str(cause).strip() else type(cause).__name__
    return StoreUnreachableError(
        f"no Chroma server answers at {location.url} ({reason}); start one with: chroma run --path DIR "
        f"--host {location.host} --port {location.port}")


def _is_connection_error(exc: Exception) -> bool:
    import httpx

    # HttpClient() itself turns a refused connection into this ValueError
    return isinstance(exc, httpx.TransportError) or (
        isinstance(exc, ValueError) and "could not connect to a chroma server" in str(exc).lower())


def connect(location):
    """The process's client for a Chroma server, checked to answer now (made, or asked for a heartbeat)."""
    key = (location.host, location.port)
    chromadb, settings = _chromadb()
    try:
        if key in _SERVERS:
            _SERVERS[key].heartbeat()
        else:
            _SERVERS[key] = chromadb.HttpClient(host=location.host, port=location.port, settings=settings)
    except Exception as exc:
        if _is_connection_error(exc):
            raise _unreachable(location, exc) from exc
        raise RagError(f"the Chroma server at {location.url} refused the connection: {exc}") from exc
    return _SERVERS[key]


class ChromaStore(VectorStore):
    def __init__(self, path: Path, name: str):
        self._open(client(path), name)

    def _open(self, chroma_client, name: str) -> None:
        self.client = chroma_client
        self.name = name
        self.collection = self.client.get_or_create_collection(
            name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}})

    @contextmanager
    def _calling(self):
        """Where a server store turns a dropped connection into one line; nothing to do in-process."""
        yield

    def _lost(self, exc: Exception) -> bool:
        return False

    def add(self, ids, vectors, texts, metadatas) -> None:
        with self._calling():
            step = max(1, int(self.client.get_max_batch_size()))
            for i in range(0, len(ids), step):
                self.collection.add(ids=ids[i:i + step], embeddings=vectors[i:i + step],
                                    documents=texts[i:i + step], metadatas=metadatas[i:i + step])

    def delete_document(self, doc_id: str) -> None:
        with self._calling():
            self.collection.delete(where={"doc_id": doc_id})

    def query(self, vector, k: int) -> list[Hit]:
        k = min(k, self.count())
        if k <= 0:
            return []
        with self._calling():
            try:
                found = self.collection.query(query_embeddings=[vector], n_results=k,
                                              include=["documents", "metadatas", "distances"])
            except Exception as exc:  # chroma raises its own kinds (wrong dimension, a broken index)
                if self._lost(exc):
                    raise
                raise RagError(f"collection {self.name}: the query failed in chromadb: {exc}") from exc
        return [Hit(i, t, m, 1.0 - float(d)) for i, t, m, d in
                zip(found["ids"][0], found["documents"][0], found["metadatas"][0], found["distances"][0],
                    strict=True)]

    def get(self, ids: list[str]) -> list[Hit]:
        if not ids:
            return []  # chromadb refuses an empty id list
        with self._calling():
            found = self.collection.get(ids=ids, include=["documents", "metadatas"])
        by_id = {i: Hit(i, t, m) for i, t, m in
                 zip(found["ids"], found["documents"], found["metadatas"], strict=True)}
        return [by_id[i] for i in ids if i in by_id]

    def count(self) -> int:
        with self._calling():
            return int(self.collection.count())

    def chunks(self) -> Iterator[Hit]:
        offset = 0
        while True:
            with self._calling():
                batch = self.collection.get(include=["documents", "metadatas"], limit=READ_BATCH,
                                            offset=offset)
            if not batch["ids"]:
                return
            for i, t, m in zip(batch["ids"], batch["documents"], batch["metadatas"], strict=True):
                yield Hit(i, t, m)
            offset += len(batch["ids"])

    def drop(self) -> None:
        with self._calling():
            self.client.delete_collection(self.name)


class ChromaServerStore(ChromaStore):
    """A collection on a Chroma server (``chromadb.HttpClient``); the same calls, over HTTP."""

    def __init__(self, location, name: str):
        self.location = location
        chroma_client = connect(location)
        with self._calling():
            self._open(chroma_client, name)

    def _lost(self, exc: Exception) -> bool:
        return _is_connection_error(exc)

    @contextmanager
    def _calling(self):
        try:
            yield
        except LlmlabError:
            raise
        except Exception as exc:
            if self._lost(exc):
                raise _unreachable(self.location, exc) from exc
            from chromadb.errors import ChromaError

            if isinstance(exc, ChromaError):  # the server answered with an error: say which server
                raise RagError(f"the Chroma server at {self.location.url}: {exc}") from exc
            raise
