"""The BM25 index of a collection (bm25s), kept on disk beside it and rebuilt only when it changed.

The index is built from every chunk in the store and saved in ``collections/NAME/bm25/`` with a
stamp: the manifest's version and the chunk count it was built from. A query loads the saved index
when the stamp matches and rebuilds it (under the collection's write lock) when it does not, so an
ingest costs the next BM25 query one rebuild and nothing after.

Words are lower-cased, English stop words dropped and the rest stemmed with PyStemmer's English
(Snowball) stemmer, for chunks and queries alike, so "proposals" finds "proposal".

What it gives up: English only (stop words and stemmer); a rebuild reads the whole collection, which
is fine for the thousands of chunks a laptop holds.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import MissingDependencyError

_LOADED: dict[Path, tuple[dict, object, list[str]]] = {}  # index directory -> (stamp, retriever, ids)


def _bm25s():
    try:
        import bm25s
    except ImportError as exc:
        raise MissingDependencyError("bm25s", "rag") from exc
    return bm25s


_STEMMER = []
TOKENIZER = "en-stopwords+snowball-english"  # in the stamp: an index made another way is rebuilt


def _stemmer():
    if not _STEMMER:
        try:
            import Stemmer
        except ImportError as exc:
            raise MissingDependencyError("PyStemmer", "rag") from exc
        _STEMMER.append(Stemmer.Stemmer("english"))
    return _STEMMER[0]


def _tokenize(texts: list[str], **options):
    return _bm25s().tokenize(texts, stopwords="en", stemmer=_stemmer().stemWords, show_progress=False,
                             **options)


def _stamp(coll) -> dict:
    return {"version": coll.manifest().get("version", 0), "count": coll.store.count(), "tokens": TOKENIZER}


def _build(coll, where: Path, stamp: dict):
    bm25s = _bm25s()
    ids, texts = [], []
    for hit in coll.store.chunks():
        ids.append(hit.id)
        texts.append(hit.text)
    retriever = bm25s.BM25()
    retriever.index(_tokenize(texts), show_progress=False)
    where.mkdir(parents=True, exist_ok=True)
    retriever.save(str(where))
    (where / "ids.json").write_text(json.dumps(ids))
    (where / "stamp.json").write_text(json.dumps(stamp))  # last: a half-saved index has no stamp
    return retriever, ids


def index(coll):
    """The collection's (retriever, chunk ids), from memory, from disk, or built now."""
    where = coll.dir / "bm25"
    stamp = _stamp(coll)
    cached = _LOADED.get(where)
    if cached and cached[0] == stamp:
        return cached[1], cached[2]
    stamp_file = where / "stamp.json"
    if stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        retriever, ids = _bm25s().BM25.load(str(where)), json.loads((where / "ids.json").read_text())
    else:
        with coll.writing():
            stamp_file.unlink(missing_ok=True)
            retriever, ids = _build(coll, where, stamp)
    _LOADED[where] = (stamp, retriever, ids)
    return retriever, ids


def search(coll, query: str, k: int) -> list[tuple[str, float]]:
    """The ``k`` best (chunk id, BM25 score), best first; chunks with no query word are left out."""
    retriever, ids = index(coll)
    if not ids:
        return []
    tokens = _tokenize([query], return_ids=False)
    vocab = retriever.vocab_dict
    tokens = [[t for t in tokens[0] if t in vocab]]
    if not tokens[0]:
        return []  # every word of the query is a stop word, or in no chunk
    docs, scores = retriever.retrieve(tokens, k=min(k, len(ids)), show_progress=False)
    return [(ids[int(d)], float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]

