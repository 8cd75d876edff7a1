"""Retrieval: the chunks of a collection that best match a query, by meaning, by words, or both.

    dense    the query embedded with the collection's own embedder, nearest chunks by cosine
    bm25     bm25s over the chunk texts (``bm25.py``)
    hybrid   reciprocal-rank fusion of the two: score = sum over lists of 1 / (60 + rank)
    hybrid+rerank  hybrid's top ``rerank_depth`` (20) reordered by a reranker (``rerank.py``:
             a cross-encoder, or any llmlab model that can score as a yes/no judge)

    >>> for hit in retrieve("Who is Renfield?", "novels", k=3):                # doctest: +SKIP
    ...     print(hit.rank, hit.source, hit.start, hit.end, round(hit.score, 4))

What it gives up: fusion reads the top ``max(4k, 20)`` of each list, so a chunk ranked lower in
both is never seen; scores are on each retriever's own scale (cosine similarity, BM25, RRF) and
are comparable only within one list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..checks import did_you_mean, whole_number
from ..errors import ConfigError
from . import bm25
from .collection import Collection, canonical_spec
from .stores.base import Hit

RETRIEVERS = ("dense", "bm25", "hybrid")           # need nothing but the collection
RERANKED = "hybrid+rerank"                          # needs a reranker (``rerank=``)
ALL_RETRIEVERS = (*RETRIEVERS, RERANKED)
RRF_K = 60


@dataclass
class Retrieved:
    rank: int
    id: str
    text: str
    score: float
    metadata: dict = field(default_factory=dict)

    @property
    def source(self) -> str:
        return self.metadata.get("source", "?")

    @property
    def page(self) -> int | None:
        return self.metadata.get("page")

    @property
    def start(self) -> int:
        return int(self.metadata.get("start", 0))

    @property
    def end(self) -> int:
        return int(self.metadata.get("end", 0))

    def where(self) -> str:
        """``file, page 3, chars 120-980`` (page only for a PDF)."""
        page = f", page {self.page}" if self.page is not None else ""
        return f"{Path(self.source).name}{page}, chars {self.start}-{self.end}"


def dense(coll: Collection, query: str, k: int, embedder: str | None = None) -> list[Hit]:
    from .ingestion import get_embedder

    spec = canonical_spec(embedder) if embedder else coll.meta["embedder"]
    coll.check_embedder(spec, command="query")
    model = get_embedder(spec)
    coll.check_embedder(spec, model.info.dimension, command="query")
    return coll.store.query(model.embed([query])[0].tolist(), k)


def lexical(coll: Collection, query: str, k: int) -> list[Hit]:
    found = bm25.search(coll, query, k)
    if not found:
        return []  # no word of the query is in any chunk
    scores = dict(found)
    hits = coll.store.get([i for i, _ in found])
    for hit in hits:
        hit.score = scores[hit.id]
    return hits


def fuse(lists: list[list[Hit]], k: int, rrf_k: int = RRF_K) -> list[Hit]:
    """Reciprocal-rank fusion: each list adds ``1 / (rrf_k + rank)`` (rank from 1) to a chunk."""
    scores: dict[str, float] = {}
    hits: dict[str, Hit] = {}
    for ranked in lists:
        for rank, hit in enumerate(ranked, 1):
            scores[hit.id] = scores.get(hit.id, 0.0) + 1.0 / (rrf_k + rank)
            hits.setdefault(hit.id, hit)
    best = sorted(scores, key=lambda i: -scores[i])[:k]
    return [Hit(i, hits[i].text, hits[i].metadata, scores[i]) for i in best]


def check_retriever(retriever: str, rerank=None) -> None:
    """A retriever name llmlab knows, and a reranker when it needs one (a one-line ConfigError)."""
    if retriever not in ALL_RETRIEVERS:
        raise ConfigError(f"unknown retriever {retriever!r}{did_you_mean(retriever, ALL_RETRIEVERS)}; "
                          f"choose one of {', '.join(ALL_RETRIEVERS)}")
    if retriever == RERANKED and rerank is None:
        raise ConfigError(f"retriever {RERANKED} needs a reranker: --rerank MODEL (an llmlab model that "
                          "can score, e.g. smollm2) or --rerank ce/DIR (a cross-encoder directory)")


def retrieve(query: str, collection: str, *, retriever: str = "hybrid", k: int = 5,
             store: str | Path | None = None, embedder: str | None = None, rerank=None,
             rerank_depth: int | None = None) -> list[Retrieved]:
    """The ``k`` best chunks of ``collection`` for ``query``, best first.

    ``rerank`` (a name for ``rerank.load_reranker`` or a loaded ``Reranker``) is used by
    ``hybrid+rerank`` only; it reorders hybrid's top ``rerank_depth`` (default 20, at least ``k``)."""
    check_retriever(retriever, rerank)
    whole_number("k", k)
    if not query or not query.strip():
        raise ConfigError("the query is empty")
    coll = Collection.open(collection, store)
    coll.location.connect()  # a store server that is down fails now, not after the embedder loads
    if retriever == "dense":
        hits = dense(coll, query, k, embedder)
    elif retriever == "bm25":
        hits = lexical(coll, query, k)
    elif retriever == "hybrid":
        depth = max(4 * k, 20)
        hits = fuse([dense(coll, query, depth, embedder), lexical(coll, query, depth)], k)
    else:
        from .rerank import DEFAULT_DEPTH, load_reranker
        from .rerank import rerank as reorder

        reranker = load_reranker(rerank)
        depth = max(k, rerank_depth or DEFAULT_DEPTH)
        candidates = fuse([dense(coll, query, max(4 * depth, 20), embedder),
                           lexical(coll, query, max(4 * depth, 20))], depth)
        hits = reorder(query, candidates, reranker, k)
    return [Retrieved(rank, h.id, h.text, h.score, h.metadata) for rank, h in enumerate(hits, 1)]


def neighbours(text: str, collection: str, *, k: int = 5, store: str | Path | None = None,
               embedder: str | None = None) -> list[Retrieved]:
    """The ``k`` chunks nearest to ``text`` by cosine similarity of their embeddings (the course's
    "similar sentences"), with the similarity as the score."""
    return retrieve(text, collection, retriever="dense", k=k, store=store, embedder=embedder)
