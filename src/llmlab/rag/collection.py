"""A named collection: its vector store, what embedded it, which files it holds, and its write lock.

On disk, under the store directory (``data_dir()/rag`` unless ``--store DIR``; for a server store
``data_dir()/rag/servers/ENGINE-HOST-PORT``, see ``stores/__init__.py``)::

    chroma/ or qdrant/            the vector store's files of every collection (an on-disk store)
    collections/NAME/meta.json    embedder spec and dimension, chunk size and overlap
    collections/NAME/manifest.json  documents: doc id -> source path, sha256, chunks; a version counter
    collections/NAME/bm25/        the BM25 index, stamped with the version it was built from
    collections/NAME/write.lock   held (fcntl.flock) by the one process writing the collection

The manifest is replaced atomically (write, then ``os.replace``) after each document's chunks are
stored, so an interrupted ingest leaves a document either recorded with all its chunks or not
recorded, and an unrecorded document is deleted and redone next time.

What it gives up: the lock is advisory and local (``fcntl``, POSIX only; not across NFS), and it
guards writers only: a reader during an ingest may see a document half replaced.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from pathlib import Path

from ..checks import did_you_mean, utc_now
from ..errors import (
    CollectionBusyError,
    CollectionNotFoundError,
    EmbedderMismatchError,
    LlmlabError,
    RagError,
)
from .stores import StoreLocation, parse_store

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$")


def store_dir(store: str | Path | None = None) -> Path:
    """The local directory of a store's collection records (its sidecar, for a server store)."""
    return parse_store(store).root


def collection_names(store: str | Path | None = None) -> list[str]:
    root = store_dir(store) / "collections"
    return sorted(p.name for p in root.iterdir() if (p / "meta.json").is_file()) if root.is_dir() else []


def _write_json(path: Path, data) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)  # atomic: a reader sees the old file or the new one, never half of one


class Collection:
    def __init__(self, name: str, store: str | Path | None = None):
        self.name = name
        self.location: StoreLocation = parse_store(store)
        self.root = self.location.root
        self.dir = self.root / "collections" / name
        self._store = None

    # --- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, name: str, store: str | Path | None = None) -> Collection:
        """An existing collection, or ``CollectionNotFoundError`` with the closest existing name."""
        self = cls(name, store)
        if not (self.dir / "meta.json").is_file():
            names = collection_names(store)
            where = self.location.describe()
            listed = f"; collections in {where}: {', '.join(names)}" if names else \
                (f"; {where} has no collections yet (create one with llmlab rag ingest PATH "
                 "--collection NAME)")
            raise CollectionNotFoundError(f"no collection named {name!r}{did_you_mean(name, names)}{listed}")
        return self

    @classmethod
    def create(cls, name: str, store: str | Path | None, spec: str, dimension: int | None) -> Collection:
        if not _NAME.match(name) or ".." in name:
            raise RagError(f"collection name {name!r} must be 3-63 letters, digits, '.', '_' or '-', "
                           "starting and ending with a letter or digit")
        self = cls(name, store)
        self.dir.mkdir(parents=True, exist_ok=True)
        _write_json(self.dir / "meta.json", {"name": name, "embedder": spec, "dimension": dimension,
                                             "created": utc_now()})
        return self

    # --- what it holds ---------------------------------------------------------------------------

    @property
    def meta(self) -> dict:
        return json.loads((self.dir / "meta.json").read_text())

    def manifest(self) -> dict:
        path = self.dir / "manifest.json"
        return json.loads(path.read_text()) if path.is_file() else {"version": 0, "documents": {}}

    def save_manifest(self, manifest: dict) -> None:
        manifest["version"] = int(manifest.get("version", 0)) + 1
        _write_json(self.dir / "manifest.json", manifest)

    @property
    def store(self):
        if self._store is None:
            self._store = self.location.open(self.name)
        return self._store

    def check_embedder(self, spec: str, dimension: int | None = None, command: str = "query") -> None:
        """Refuse vectors from another model: they would be compared with the stored ones as if alike.
        ``spec`` is ``canonical_spec()``'s; ``dimension`` is checked too when known."""
        meta = self.meta
        if meta["embedder"] != spec or (dimension and meta["dimension"] and meta["dimension"] != dimension):
            raise EmbedderMismatchError(
                f"collection {self.name} was embedded with {meta['embedder']} ({meta['dimension']} "
                f"dimensions), not {spec}; {command} it with --embedder {meta['embedder']}, or re-embed "
                f"it: llmlab rag ingest PATH... --collection {self.name} --embedder {spec} --reembed")

    # --- writing ---------------------------------------------------------------------------------

    @contextmanager
    def writing(self):
        """Hold the collection's write lock, or fail at once if another process holds it."""
        import fcntl

        self.dir.mkdir(parents=True, exist_ok=True)
        fh = open(self.dir / "write.lock", "a+")
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise CollectionBusyError(f"collection {self.name} is busy (another ingest is writing it); "
                                          "try again when it has finished") from exc
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}\n")
            fh.flush()
            yield self
        finally:
            fh.close()  # closing the file releases the lock

    def drop(self) -> None:
        """Delete the chunks, the manifest and the BM25 index (``--reembed``); meta.json stays."""
        import shutil

        try:
            self.store.drop()
        except LlmlabError:
            raise  # a server that is down: keep the manifest, which still describes what it holds
        except Exception:  # noqa: BLE001 - a collection the engine never created has nothing to drop
            pass
        self._store = None
        (self.dir / "manifest.json").unlink(missing_ok=True)
        shutil.rmtree(self.dir / "bm25", ignore_errors=True)


def canonical_spec(spec: str) -> str:
    """The name a collection records for an embedder, the same whichever alias loaded it:
    ``minilm`` for the bundled model, ``st/ABSOLUTE_DIR`` for a directory, ``openai/NAME`` as given."""
    from ..models.embedders import resolve_embedder

    backend, display, path = resolve_embedder(spec)
    if backend != "st":
        return spec.strip()
    from ..models.embedders import BUNDLED_EMBEDDERS

    path = Path(path).resolve()
    for alias, bundled in BUNDLED_EMBEDDERS.items():  # the bundled model named by its directory
        if bundled.installed() and Path(bundled.path()).resolve() == path:
            return alias
    return f"st/{path}"
