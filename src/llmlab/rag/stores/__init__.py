"""Where collections live: the one ``--store`` string every ``llmlab rag`` command takes, parsed here.

    DIR                       ChromaDB embedded in DIR/chroma (the default DIR: data_dir()/rag)
    chroma:DIR                the same, said explicitly
    chroma+http://HOST:PORT   a Chroma server (``chroma run --path DIR --host 127.0.0.1 --port PORT``)
    qdrant:DIR                Qdrant's local mode, on disk in DIR/qdrant (one process at a time)
    qdrant+http://HOST:PORT   a Qdrant server or cluster (port 6333 unless given)

    >>> parse_store("qdrant:~/vectors").engine, parse_store("chroma+http://127.0.0.1:8001").url
    ('qdrant', 'http://127.0.0.1:8001')

Each collection also has a local *sidecar* (meta.json, manifest.json, the BM25 index, the write lock;
see ``collection.py``): in DIR for the on-disk stores, and for a server in
``data_dir()/rag/servers/ENGINE-HOST-PORT/``. A string that starts ``word:`` is a scheme, so a
directory whose name has a colon is written ``./name:with:colon``; a ``Path`` is always a directory.

What it gives up: the sidecar of a server store is per machine, so two machines sharing one server
each keep their own manifest and BM25 index (each sees the other's chunks in dense search and in its
next BM25 rebuild, but re-ingests and prunes only its own files); one writer per collection is
enforced per machine only. No TLS or API keys (``+https``): a server is reached over plain HTTP, as
on 127.0.0.1 or a private network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ...checks import did_you_mean
from ...errors import ConfigError
from .base import Hit, VectorStore

__all__ = ["Hit", "StoreLocation", "VectorStore", "parse_store"]

SCHEMES = ("chroma", "chroma+http", "qdrant", "qdrant+http")
DEFAULT_PORTS = {"chroma": 8000, "qdrant": 6333}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$", re.S)


@dataclass(frozen=True)
class StoreLocation:
    engine: str                 # "chroma" or "qdrant"
    root: Path                  # the sidecar directory (collections/NAME/...)
    path: Path | None = None    # the engine's own files, for an on-disk store
    host: str | None = None     # a server
    port: int | None = None

    @property
    def url(self) -> str | None:
        return f"http://{self.host}:{self.port}" if self.host else None

    def describe(self) -> str:
        """How messages name the store: its directory, or its URL with where its records are kept."""
        return f"{self.engine}+{self.url} (records kept in {self.root})" if self.url else str(self.root)

    def connect(self) -> None:
        """Reach the store now, so a server that is down fails before anything is written or loaded."""
        if self.engine == "qdrant":
            from .qdrant import connect
        elif self.url:
            from .chroma import connect
        else:
            return  # embedded chroma: opened with the collection
        connect(self)

    def open(self, name: str) -> VectorStore:
        """The vector store of collection ``name`` (created on the engine if it has none yet)."""
        if self.engine == "qdrant":
            from .qdrant import QdrantStore

            return QdrantStore(self, name)
        if self.url:
            from .chroma import ChromaServerStore

            return ChromaServerStore(self, name)
        from .chroma import ChromaStore

        return ChromaStore(self.path, name)


def _default_root() -> Path:
    from ...config import data_dir

    return data_dir() / "rag"


def _server(engine: str, spec: str, rest: str) -> StoreLocation:
    parts = urlsplit("http:" + rest)
    try:
        port = parts.port or DEFAULT_PORTS[engine]
    except ValueError as exc:  # a port that is not a number or out of range
        raise ConfigError(f"store {spec!r}: the port is not a number from 1 to 65535") from exc
    if not rest.startswith("//") or not parts.hostname or parts.path.strip("/") or parts.query:
        raise ConfigError(f"store {spec!r} is not {engine}+http://HOST:PORT")
    host = parts.hostname
    safe = re.sub(r"[^A-Za-z0-9.-]", "_", host)
    root = _default_root() / "servers" / f"{engine}-{safe}-{port}"
    return StoreLocation(engine, root, host=host, port=port)


def _directory(root: Path, spec) -> Path:
    if root.exists() and not root.is_dir():
        raise ConfigError(f"store {str(spec)!r} is a file, not a directory; give a directory for the store "
                          "(it is created if it does not exist)")
    return root


def parse_store(store: str | Path | None = None) -> StoreLocation:
    """Where ``--store`` puts collections; an unknown scheme is a ``ConfigError`` with did-you-mean."""
    if isinstance(store, Path):  # a Path is always a directory, whatever its name looks like
        root = _directory(store.expanduser(), store)
        return StoreLocation("chroma", root, path=root / "chroma")
    if store is None:
        root = _default_root()
        return StoreLocation("chroma", root, path=root / "chroma")
    spec = str(store).strip()
    if not spec:
        raise ConfigError("--store is empty; give a directory, chroma+http://HOST:PORT, qdrant:DIR or "
                          "qdrant+http://HOST:PORT")
    match = _SCHEME.match(spec)
    if not match:
        root = _directory(Path(spec).expanduser(), spec)
        return StoreLocation("chroma", root, path=root / "chroma")
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme in ("chroma+http", "qdrant+http"):
        return _server(scheme.split("+")[0], spec, rest)
    if scheme in ("chroma", "qdrant"):
        if rest.startswith("//"):
            raise ConfigError(f"store {spec!r}: a {scheme} server is {scheme}+http://HOST:PORT, a directory "
                              f"{scheme}:DIR")
        if not rest.strip():
            raise ConfigError(f"store {spec!r} names no directory: {scheme}:DIR")
        root = _directory(Path(rest).expanduser(), spec)
        return StoreLocation(scheme, root, path=root / scheme)
    hint = did_you_mean(scheme, SCHEMES)
    if not hint and scheme in ("http", "https"):
        hint = " (name the engine: chroma+http://HOST:PORT or qdrant+http://HOST:PORT)"
    raise ConfigError(f"unknown store scheme {scheme!r} in {spec!r}{hint}; --store takes a directory, "
                      "chroma+http://HOST:PORT, qdrant:DIR or qdrant+http://HOST:PORT")
