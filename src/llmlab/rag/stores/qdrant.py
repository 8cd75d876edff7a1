"""Qdrant through ``qdrant-client``: local mode on disk (``--store qdrant:DIR``) or a server/cluster
(``--store qdrant+http://HOST:PORT``), behind the same small ``VectorStore`` interface as chroma.

A collection is created on the first ``add`` (Qdrant needs the dimension), with cosine distance;
llmlab computes every vector. Qdrant point ids must be unsigned ints or UUIDs, so each chunk id
(``DOC-N``) becomes ``uuid5(CHUNK_IDS, id)``, and llmlab's own id is kept in the payload beside the
text and metadata: ``{"id", "text", "doc_id", "metadata"}``. ``delete_document`` is a filter on
``doc_id`` (a keyword payload index on a server), upserts go in batches of ``WRITE_BATCH`` and
``chunks()`` scrolls. Scores are Qdrant's cosine similarity (higher is better, as chroma's).

What it gives up: local mode is Qdrant's own pure-Python store, an exact (brute-force) search that
holds the collection in memory and locks DIR to one process (a second gets one line naming the
server form); Qdrant advises a server past ~20,000 points. No API key or TLS for a server
(``stores/__init__.py``). ``chunks()`` comes in point-id order, not insertion order.
"""

from __future__ import annotations

import atexit
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from ...errors import LlmlabError, MissingDependencyError, RagError, StoreUnreachableError
from .base import Hit, VectorStore

WRITE_BATCH = 256
READ_BATCH = 1000
CHUNK_IDS = uuid.UUID("6f1c2a52-8d1e-4f0e-9c55-7a4d3c1b2e90")  # llmlab's namespace for chunk ids
_CLIENTS: dict[str, object] = {}  # a path or URL -> QdrantClient: local mode allows one per directory


def _qdrant():
    try:
        import qdrant_client
        from qdrant_client import models
    except ImportError as exc:
        raise MissingDependencyError("qdrant-client", "rag") from exc
    return qdrant_client, models


def point_id(chunk_id: str) -> str:
    """The UUID Qdrant stores for a chunk id, the same in every process.

    >>> point_id("notes-3") == point_id("notes-3") != point_id("notes-4")
    True
    """
    return str(uuid.uuid5(CHUNK_IDS, chunk_id))


def _unreachable(location, exc: Exception) -> StoreUnreachableError:
    cause = exc.__context__ or exc  # qdrant wraps httpx's error; its own message is the repr
    reason = str(cause).splitlines()[0] if str(cause).strip() else type(cause).__name__
    return StoreUnreachableError(
        f"no Qdrant server answers at {location.url} ({reason}); start one with: docker run -p "
        f"{location.port}:6333 -v DIR:/qdrant/storage qdrant/qdrant (or the qdrant binary), or use "
        "--store qdrant:DIR for local mode")


def _is_connection_error(exc: Exception) -> bool:
    import httpx
    from qdrant_client.http.exceptions import ResponseHandlingException

    return isinstance(exc, (ResponseHandlingException, httpx.TransportError))


def connect(location):
    """The process's client for this location, reached now (a server is asked for its collections)."""
    key = location.url or str(location.path.resolve())
    if key in _CLIENTS and not location.url:
        return _CLIENTS[key]
    qdrant_client, _ = _qdrant()
    if location.url:
        made = _CLIENTS.get(key) or qdrant_client.QdrantClient(url=location.url, check_compatibility=False,
                                                                timeout=30)
        try:
            made.get_collections()  # asked every time: a server may have gone away since
        except Exception as exc:
            _CLIENTS.pop(key, None)
            made.close()
            if _is_connection_error(exc):
                raise _unreachable(location, exc) from exc
            raise RagError(f"the Qdrant server at {location.url} refused the connection: {exc}") from exc
    else:
        location.path.mkdir(parents=True, exist_ok=True)
        try:
            made = qdrant_client.QdrantClient(path=str(location.path))
        except RuntimeError as exc:  # portalocker: another process has the directory
            raise RagError(f"qdrant:{location.root} is open in another process (Qdrant's local mode allows "
                           "one at a time); wait for it to finish, or use a Qdrant server: --store "
                           "qdrant+http://HOST:6333") from exc
    _CLIENTS[key] = made
    return made


def close_all() -> None:
    """Close every client (at exit: closing later, from ``__del__``, fails as Python shuts down)."""
    while _CLIENTS:
        _CLIENTS.popitem()[1].close()


atexit.register(close_all)


class QdrantStore(VectorStore):
    def __init__(self, location, name: str):
        self.location = location
        self.name = name
        self.client = connect(location)
        self.models = _qdrant()[1]

    @contextmanager
    def _calling(self):
        """A server that went away is one line; any other answer from Qdrant names the store too."""
        try:
            yield
        except LlmlabError:
            raise
        except Exception as exc:
            if self.location.url and _is_connection_error(exc):
                raise _unreachable(self.location, exc) from exc
            from qdrant_client.http.exceptions import ApiException

            if isinstance(exc, ApiException | ValueError):
                where = self.location.url or f"qdrant:{self.location.root}"
                raise RagError(f"collection {self.name} in {where}: Qdrant refused it: "
                               f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
            raise

    def _exists(self) -> bool:
        return bool(self.client.collection_exists(self.name))

    def _doc(self, doc_id: str):
        m = self.models
        return m.Filter(must=[m.FieldCondition(key="doc_id", match=m.MatchValue(value=doc_id))])

    @staticmethod
    def _hit(point, score: float = 0.0) -> Hit:
        payload = point.payload or {}
        return Hit(payload.get("id", str(point.id)), payload.get("text", ""), payload.get("metadata", {}),
                   score)

    def add(self, ids, vectors, texts, metadatas) -> None:
        if not ids:
            return
        m = self.models
        with self._calling():
            if not self._exists():
                self.client.create_collection(self.name, vectors_config=m.VectorParams(
                    size=len(vectors[0]), distance=m.Distance.COSINE))
                if self.location.url:  # local mode has no payload indexes (and warns about them)
                    self.client.create_payload_index(self.name, "doc_id", m.PayloadSchemaType.KEYWORD)
            for i in range(0, len(ids), WRITE_BATCH):
                points = [m.PointStruct(id=point_id(c), vector=[float(x) for x in v],
                                        payload={"id": c, "text": t, "doc_id": meta.get("doc_id"),
                                                 "metadata": meta})
                          for c, v, t, meta in zip(ids[i:i + WRITE_BATCH], vectors[i:i + WRITE_BATCH],
                                                   texts[i:i + WRITE_BATCH], metadatas[i:i + WRITE_BATCH],
                                                   strict=True)]
                self.client.upsert(self.name, points=points, wait=True)

    def delete_document(self, doc_id: str) -> None:
        with self._calling():
            if self._exists():
                selector = self.models.FilterSelector(filter=self._doc(doc_id))
                self.client.delete(self.name, points_selector=selector, wait=True)

    def query(self, vector, k: int) -> list[Hit]:
        with self._calling():
            if k <= 0 or not self._exists():
                return []
            found = self.client.query_points(self.name, query=[float(x) for x in vector], limit=k,
                                             with_payload=True, with_vectors=False)
        return [self._hit(p, float(p.score)) for p in found.points]

    def get(self, ids: list[str]) -> list[Hit]:
        with self._calling():
            if not ids or not self._exists():
                return []
            found = self.client.retrieve(self.name, ids=[point_id(i) for i in ids], with_payload=True,
                                         with_vectors=False)
        by_id = {h.id: h for h in map(self._hit, found)}
        return [by_id[i] for i in ids if i in by_id]

    def count(self) -> int:
        with self._calling():
            return int(self.client.count(self.name, exact=True).count) if self._exists() else 0

    def chunks(self) -> Iterator[Hit]:
        with self._calling():
            if not self._exists():
                return
        offset = None
        while True:
            with self._calling():
                points, offset = self.client.scroll(self.name, limit=READ_BATCH, offset=offset,
                                                    with_payload=True, with_vectors=False)
            yield from map(self._hit, points)
            if offset is None:
                return

    def drop(self) -> None:
        with self._calling():
            if self._exists():
                self.client.delete_collection(self.name)
