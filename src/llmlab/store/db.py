"""The SQLite database under the store: opening, migrating, transactions and one-line errors.

This is the part every table family shares. ``Database.open`` creates or opens the file, applies the
numbered migrations that have not run yet (``migrations.py``) and, for a writer, checks now that a row
can be written, so a command refuses before generating instead of losing the call afterwards. A
database that is locked, corrupt or not a database gives a ``StoreError`` naming the file, and
nothing in it is touched.

What it gives up: one connection per ``Store``, in autocommit mode (each statement is its own
transaction unless ``transaction()`` groups them); no connection pool, no WAL tuning.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from ..checks import utc_now
from ..config import default_db_path
from ..errors import StoreError
from .migrations import MIGRATIONS


class Database:
    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn = conn
        # one statement (or transaction) at a time: calls of a concurrent run log from its threads
        self._lock = threading.RLock()
        self.path = path

    @classmethod
    def open(cls, path: str | Path | None = None, *, write: bool = True):
        """Open (and migrate) the database; with ``write``, fail now if it cannot take a row, so a
        command refuses before generating instead of losing the call afterwards."""
        path = Path(path).expanduser() if path else default_db_path()
        try:
            if not write and not path.exists():  # reading a log that is not there creates nothing
                conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(path, timeout=5, check_same_thread=False, isolation_level=None)
            conn.row_factory = sqlite3.Row
            store = cls(conn, path)
            store._migrate()
            if write:
                store._check_writable()
        except sqlite3.DatabaseError as exc:
            raise StoreError(explain(exc, path)) from exc
        except OSError as exc:
            raise StoreError(f"cannot open the call log {path}: {exc.strerror or exc}") from exc
        return store

    def _check_writable(self) -> None:
        """A write that is rolled back: a read-only file, folder or mount fails here."""
        db = self.conn
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("INSERT INTO _migrations VALUES ('_probe', '')")
        finally:
            db.execute("ROLLBACK")

    def _migrate(self) -> None:
        db = self.conn
        db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
        done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
        for name, fn in MIGRATIONS:
            if name in done:
                continue
            with self.transaction():
                fn(db)
                db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, now()))

    def transaction(self):
        return _Transaction(self.conn, self._lock)

    def execute(self, sql: str, params=()) -> sqlite3.Cursor:
        try:
            with self._lock:
                return self.conn.execute(sql, params)
        except sqlite3.DatabaseError as exc:
            raise StoreError(explain(exc, self.path)) from exc

    def close(self) -> None:
        self.conn.close()


class _Transaction:
    def __init__(self, conn: sqlite3.Connection, lock):
        self.conn, self.lock = conn, lock

    def __enter__(self):
        self.lock.acquire()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        try:
            self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self.lock.release()
        return False


def explain(exc: sqlite3.DatabaseError, path: Path) -> str:
    msg = str(exc)
    if "locked" in msg or "busy" in msg:
        return f"the call log {path} is locked by another process (try again, or use --db / $LLMLAB_DB)"
    if "readonly" in msg or "read-only" in msg:
        return (f"the call log {path} is read-only, so calls cannot be logged; make it writable, or "
                "point --db / $LLMLAB_DB elsewhere")
    if "not a database" in msg or "malformed" in msg or "corrupt" in msg:
        return (f"the call log {path} is corrupt or not an llmlab database ({msg}); it was left "
                "untouched; move it aside or point --db / $LLMLAB_DB elsewhere")
    return f"the call log {path} cannot be used: {msg}"


def now() -> str:
    return utc_now("milliseconds")
