"""Ingest: files -> pages -> chunks -> vectors -> the collection, skipping what has not changed.

Each file's sha256 is kept in the collection's manifest. A file whose hash is recorded is skipped;
a new or changed one has its old chunks deleted and its new ones added, then its manifest entry
written. The entry is first written as ``pending``, so a document cut off by Ctrl-C or a crash is
known to be unfinished: the next ingest deletes its chunks, and redoes it if that ingest names its
file (else it is simply gone, as if never ingested). ``prune=True`` removes documents whose file no
longer exists; that is the one way to remove a document (no ``drop-doc`` command in this slice).

Work is planned first (read and chunk every new or changed file, which is quick), then embedded
with a progress bar over chunks, so the ETA is the embedding's. A file that cannot be read is
reported in ``IngestReport.failed`` with a one-line reason; the other files are still ingested.

Chunks are counted in the embedder's own tokens; an embedder on a server (``openai/NAME@URL``,
``ollama/NAME@URL``) does not lend its tokenizer, so its chunks are counted in the bundled MiniLM's
WordPiece tokens instead (a test checks the chunks equal those of MiniLM in process).

What it gives up: one writer per collection (a second gets ``CollectionBusyError`` at once); a file
moved elsewhere is a new document (ids come from the path), and the old one stays until pruned.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LlmlabError, RagError, StoreUnreachableError
from .chunk import DEFAULT_OVERLAP, DEFAULT_SIZE, check_sizes, chunk_text, max_chunk_tokens
from .collection import Collection, canonical_spec, collection_names
from .documents import document_id, file_sha256, find_files, read_pages
from .stores import parse_store

_EMBEDDERS: dict[str, object] = {}


def get_embedder(spec: str):
    """One loaded embedder per spec per process: ingest and every query share it."""
    if spec not in _EMBEDDERS:
        from ..models.embedders import load_embedder

        _EMBEDDERS[spec] = load_embedder(spec[3:] if spec.startswith("st/") else spec)
    return _EMBEDDERS[spec]


@dataclass
class IngestReport:
    collection: str
    files: int = 0
    added: list[str] = field(default_factory=list)      # new documents
    replaced: list[str] = field(default_factory=list)   # changed files (and unfinished ones redone)
    unchanged: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, one-line reason)
    chunks_added: int = 0
    chunks_total: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"collection {self.collection}: {len(self.added)} added, {len(self.replaced)} replaced, "
                f"{len(self.unchanged)} unchanged, {len(self.pruned)} pruned, {len(self.failed)} failed; "
                f"{self.chunks_added} chunks written, {self.chunks_total} in the collection "
                f"({self.seconds:.1f} s)")


@dataclass
class _Planned:
    path: Path
    doc_id: str
    sha: str
    chunks: list[tuple[str, dict]]  # (text, metadata)
    replacing: bool


def _plan(path: Path, embedder, sha: str, replacing: bool, size: int, overlap: int) -> _Planned:
    doc_id = document_id(path)
    chunks = []
    for page in read_pages(path):
        for c in chunk_text(page.text, embedder, size=size, overlap=overlap):
            meta = {"doc_id": doc_id, "source": str(path), "start": c.start, "end": c.end,
                    "tokens": c.tokens, "chunk": len(chunks)}
            if page.page is not None:
                meta["page"] = page.page
            chunks.append((c.text, meta))
    if not chunks:
        raise RagError(f"{path}: no text to ingest (the file is empty)")
    return _Planned(path, doc_id, sha, chunks, replacing)


def ingest(paths: list[str | Path], collection: str, *, embedder: str = "minilm",
           store: str | Path | None = None,
           chunk_size: int = DEFAULT_SIZE, overlap: int = DEFAULT_OVERLAP, prune: bool = False,
           reembed: bool = False, progress: bool = False) -> IngestReport:
    """Add files and folders to a collection (created on first use) and return what was done.

    >>> ingest(["notes/"], "notes").summary()                                  # doctest: +SKIP
    'collection notes: 3 added, 0 replaced, 0 unchanged, 0 pruned, 0 failed; 41 chunks written, ...'
    """
    start = time.perf_counter()
    location = parse_store(store)  # an unknown --store scheme fails first
    files = find_files(paths)
    spec = canonical_spec(embedder)
    location.connect()  # a store server that is down fails here, before anything is loaded or written
    exists = collection in collection_names(store)
    if exists and not reembed:
        Collection.open(collection, store).check_embedder(spec, command="ingest")
    check_sizes(None, chunk_size, overlap)  # bad sizes fail now, even when nothing needs embedding
    loaded: list = []

    def embedder_now():
        """The model, the model whose tokens size the chunks, and the chunk sizes, loaded the first time
        a file needs them (a no-op ingest loads none)."""
        if not loaded:
            model = counter = get_embedder(spec)
            if not model.can("tokenize"):
                # a server does not lend its tokenizer: chunks are counted in the bundled MiniLM's
                # WordPiece tokens instead (200 of them are far below any embedding server's window)
                counter = get_embedder(canonical_spec("minilm"))
            cap = max_chunk_tokens(model) if model is counter else None
            loaded.extend([model, counter, *check_sizes(cap, chunk_size, overlap)])
        return loaded

    if not exists or reembed:
        dimension = embedder_now()[0].info.dimension
    coll = Collection(collection, store) if exists else Collection.create(collection, store, spec, dimension)
    report = IngestReport(collection, files=len(files))
    with coll.writing():
        if reembed and exists:
            coll.drop()
            Collection.create(collection, store, spec, dimension)
        manifest = coll.manifest()
        docs = manifest["documents"]
        planned: list[_Planned] = []
        for doc_id, entry in list(docs.items()):  # unfinished last time: redo or remove
            if entry.get("pending") and Path(entry["source"]) not in files:
                coll.store.delete_document(doc_id)
                del docs[doc_id]
                coll.save_manifest(manifest)
        for path in files:
            try:
                sha = file_sha256(path)
                entry = docs.get(document_id(path))
                if entry and entry.get("sha256") == sha and not entry.get("pending"):
                    report.unchanged.append(str(path))
                    continue
                _, counter, size, chunk_overlap = embedder_now()
                planned.append(_plan(path, counter, sha, entry is not None, size, chunk_overlap))
            except LlmlabError as exc:
                report.failed.append((str(path), str(exc)))
            except OSError as exc:
                report.failed.append((str(path), f"{path}: cannot read it ({exc.strerror or exc})"))
        if planned:
            _write(coll, manifest, planned, loaded[0], report, progress)
        if prune:
            for doc_id, entry in list(docs.items()):
                if not Path(entry["source"]).exists():
                    coll.store.delete_document(doc_id)
                    del docs[doc_id]
                    coll.save_manifest(manifest)
                    report.pruned.append(entry["source"])
        report.chunks_total = coll.store.count()
    report.seconds = time.perf_counter() - start
    return report


def _write(coll: Collection, manifest: dict, planned: list[_Planned], model, report: IngestReport,
           progress: bool) -> None:
    from ..runs.progress import progress_bar

    docs = manifest["documents"]
    total = sum(len(p.chunks) for p in planned)
    current = None
    try:
        with progress_bar(progress and total > 0) as bar:
            task = bar.add_task(f"embedding {coll.name}", total=total) if bar else None
            for p in planned:
                current = p
                docs[p.doc_id] = {"source": str(p.path), "pending": True}
                coll.save_manifest(manifest)  # from here on, an interruption means "redo this one"
                vectors = []
                texts = [t for t, _ in p.chunks]
                step = max(1, model.info.batch_size)
                for i in range(0, len(texts), step):
                    vectors.extend(model.embed(texts[i:i + step]).tolist())
                    if bar:
                        bar.advance(task, len(texts[i:i + step]))
                coll.store.delete_document(p.doc_id)
                coll.store.add([f"{p.doc_id}-{m['chunk']}" for _, m in p.chunks], vectors, texts,
                               [m for _, m in p.chunks])
                docs[p.doc_id] = {"source": str(p.path), "sha256": p.sha, "chunks": len(p.chunks)}
                coll.save_manifest(manifest)
                (report.replaced if p.replacing else report.added).append(str(p.path))
                report.chunks_added += len(p.chunks)
                current = None
    except KeyboardInterrupt as exc:
        done = len(report.added) + len(report.replaced)
        left = f"; {current.path} was not finished and will be redone by the next ingest" if current else ""
        raise KeyboardInterrupt(f"interrupted: {done} of {len(planned)} documents stored in collection "
                                f"{coll.name}{left}") from exc
    except StoreUnreachableError as exc:  # the server went away mid-ingest: the manifest says what is stored
        done = len(report.added) + len(report.replaced)
        left = f"; {current.path} is recorded as unfinished and will be redone" if current else ""
        raise StoreUnreachableError(f"{exc}; {done} of {len(planned)} documents were stored in collection "
                                    f"{coll.name} before it stopped answering{left}") from exc
