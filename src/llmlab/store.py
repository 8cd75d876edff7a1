"""The SQLite store: every call (and, later, every run) llmlab makes, queryable and exportable.

Schema changes are append-only numbered migrations, applied in order and recorded in the
``_migrations`` table (the pattern of simonw/llm's ``migrations.py``). Never edit a migration that has
shipped; add the next one. A database that is locked, corrupt or not a database gives a
``StoreError`` naming the file, and nothing in it is touched.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .config import default_db_path
from .errors import StoreError

if TYPE_CHECKING:
    from .models.base import Response

MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = []


def migration(fn: Callable[[sqlite3.Connection], None]):
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_calls(db: sqlite3.Connection) -> None:
    db.execute("""
        CREATE TABLE calls (
            id INTEGER PRIMARY KEY,
            ts TEXT NOT NULL,
            model TEXT NOT NULL,
            backend TEXT NOT NULL,
            model_path TEXT,
            model_sha256 TEXT,
            settings TEXT NOT NULL,
            prompt TEXT,
            messages TEXT,
            response TEXT NOT NULL,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            load_s REAL,
            ttft_s REAL,
            prefill_tps REAL,
            decode_tps REAL,
            total_s REAL,
            finish_reason TEXT,
            interrupted INTEGER NOT NULL DEFAULT 0,
            error TEXT
        )""")
    db.execute("CREATE INDEX calls_ts ON calls(ts)")


@migration
def m002_file_hashes(db: sqlite3.Connection) -> None:
    # sha256 of a model file is costly (100s of MB), so it is cached by path, size and mtime
    db.execute("""
        CREATE TABLE file_hashes (
            path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
            sha256 TEXT NOT NULL)""")


@migration
def m003_calls_dropped(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE calls ADD COLUMN dropped_messages INTEGER NOT NULL DEFAULT 0")


@migration
def m004_eval_runs(db: sqlite3.Connection) -> None:
    # one row per system (model x strategy x method x repeat) evaluated on a dataset; a run found
    # again by its fingerprint is resumed: its finished results are kept, the rest computed
    db.execute("""
        CREATE TABLE eval_runs (
            id INTEGER PRIMARY KEY,
            fingerprint TEXT NOT NULL,
            created TEXT NOT NULL,
            finished TEXT,
            dataset TEXT,
            dataset_sha256 TEXT,
            task TEXT NOT NULL,
            model TEXT NOT NULL,
            strategy TEXT,
            method TEXT NOT NULL,
            repeat INTEGER NOT NULL DEFAULT 0,
            settings TEXT NOT NULL,
            n_items INTEGER NOT NULL
        )""")
    db.execute("CREATE INDEX eval_runs_fingerprint ON eval_runs(fingerprint)")
    db.execute("""
        CREATE TABLE eval_results (
            run_id INTEGER NOT NULL REFERENCES eval_runs(id),
            item_id TEXT NOT NULL,
            gold TEXT,
            pred TEXT,
            raw TEXT,
            scores TEXT,
            seconds REAL,
            ts TEXT NOT NULL,
            PRIMARY KEY (run_id, item_id)
        )""")


@migration
def m010_probe_runs(db: sqlite3.Connection) -> None:
    # one row per model x probe suite; figures (JSON) cite the record numbers of probe_results,
    # so every figure can be traced to the prompts, raw answers and verdicts behind it
    db.execute("""
        CREATE TABLE probe_runs (
            id INTEGER PRIMARY KEY,
            started TEXT NOT NULL,
            finished TEXT,
            suite TEXT NOT NULL,
            suite_path TEXT,
            suite_sha256 TEXT,
            model TEXT NOT NULL,
            judge TEXT NOT NULL,
            options TEXT NOT NULL,
            figures TEXT NOT NULL
        )""")
    db.execute("""
        CREATE TABLE probe_results (
            run_id INTEGER NOT NULL REFERENCES probe_runs(id),
            record INTEGER NOT NULL,
            check_name TEXT NOT NULL,
            item_id TEXT NOT NULL,
            grp TEXT,
            sample INTEGER NOT NULL,
            prompt TEXT NOT NULL,
            input TEXT NOT NULL,
            answer TEXT NOT NULL,
            verdict TEXT,
            reason TEXT,
            detail TEXT,
            settings TEXT,
            call_id INTEGER,
            error TEXT,
            PRIMARY KEY (run_id, record)
        )""")


@migration
def m011_calls_runtime(db: sqlite3.Connection) -> None:
    # how the model was loaded (context window, threads, llama.cpp's weight layout): what shapes
    # speed, and for a sliding-window or repacked model sometimes the output too
    db.execute("ALTER TABLE calls ADD COLUMN runtime TEXT")

class Store:
    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: str | Path | None = None, *, write: bool = True) -> Store:
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
            raise StoreError(_explain(exc, path)) from exc
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
                db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, _now()))

    def transaction(self):
        return _Transaction(self.conn)

    def execute(self, sql: str, params=()) -> sqlite3.Cursor:
        try:
            return self.conn.execute(sql, params)
        except sqlite3.DatabaseError as exc:
            raise StoreError(_explain(exc, self.path)) from exc

    # --- calls ---------------------------------------------------------------------------------

    def log_response(self, r: Response) -> int:
        """Write one generation to the log; returns its id."""
        row = {"ts": _now(), **r.record()}
        row["model_sha256"] = self.file_sha256(r.model.info.path) if r.model.info.path else None
        cols = ", ".join(row)
        marks = ", ".join("?" * len(row))
        cur = self.execute(f"INSERT INTO calls ({cols}) VALUES ({marks})", list(row.values()))
        r.log_id = cur.lastrowid
        return cur.lastrowid

    def calls(self, limit: int | None = 20, model: str | None = None) -> list[dict]:
        """Most recent calls first, as dicts (settings and messages decoded)."""
        sql = "SELECT * FROM calls"
        params: list = []
        if model:
            sql += " WHERE model = ? OR backend || '/' || model = ?"
            params += [model, model]
        sql += " ORDER BY id DESC"
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        out = []
        for row in self.execute(sql, params):
            d = dict(row)
            d["settings"] = json.loads(d["settings"])
            d["messages"] = json.loads(d["messages"]) if d["messages"] else None
            d["runtime"] = json.loads(d["runtime"]) if d.get("runtime") else None
            d["interrupted"] = bool(d["interrupted"])
            out.append(d)
        return out

    # --- evaluation runs -------------------------------------------------------------------------

    def eval_run(self, fingerprint: str, meta: dict, new: bool = False) -> tuple[int, dict[str, dict]]:
        """The latest run with this fingerprint and its finished results by item id; a new run
        (no results) when there is none or ``new`` is set."""
        row = self.execute("SELECT id FROM eval_runs WHERE fingerprint = ? ORDER BY id DESC LIMIT 1",
                           (fingerprint,)).fetchone()
        if row is None or new:
            cols = ["fingerprint", "created", *meta]
            values = [fingerprint, _now(), *(json.dumps(v) if isinstance(v, dict) else v
                                             for v in meta.values())]
            cur = self.execute(f"INSERT INTO eval_runs ({', '.join(cols)}) VALUES "
                               f"({', '.join('?' * len(cols))})", values)
            return cur.lastrowid, {}
        return row["id"], self.eval_results(row["id"])

    def add_eval_result(self, run_id: int, item_id: str, result: dict) -> None:
        """Store one finished item at once (autocommit), so a kill loses at most the item in hand."""
        self.execute(
            "INSERT OR REPLACE INTO eval_results (run_id, item_id, gold, pred, raw, scores, seconds, ts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, item_id, result.get("gold"), result.get("pred"), result.get("raw"),
             json.dumps(result["scores"]) if result.get("scores") is not None else None,
             result.get("seconds"), _now()))

    def finish_eval_run(self, run_id: int) -> None:
        self.execute("UPDATE eval_runs SET finished = ? WHERE id = ?", (_now(), run_id))

    def eval_results(self, run_id: int) -> dict[str, dict]:
        out = {}
        for row in self.execute("SELECT * FROM eval_results WHERE run_id = ? ORDER BY rowid", (run_id,)):
            d = dict(row)
            d["scores"] = json.loads(d["scores"]) if d["scores"] else None
            out[d["item_id"]] = d
        return out

    def eval_runs(self, limit: int | None = 20) -> list[dict]:
        """Most recent evaluation runs first, with how many items each has finished."""
        sql = ("SELECT r.*, (SELECT COUNT(*) FROM eval_results WHERE run_id = r.id) AS done "
               "FROM eval_runs r ORDER BY r.id DESC")
        rows = self.execute(sql + (" LIMIT ?" if limit else ""), (limit,) if limit else ())
        return [{**dict(row), "settings": json.loads(row["settings"])} for row in rows]

    def file_sha256(self, path: str | Path) -> str | None:
        p = Path(path)
        try:
            st = p.stat()
        except OSError:
            return None
        key = str(p.resolve())
        row = self.execute("SELECT size, mtime_ns, sha256 FROM file_hashes WHERE path = ?",
                           (key,)).fetchone()
        if row and row["size"] == st.st_size and row["mtime_ns"] == st.st_mtime_ns:
            return row["sha256"]
        h = hashlib.sha256()
        with p.open("rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
        digest = h.hexdigest()
        self.execute("INSERT OR REPLACE INTO file_hashes VALUES (?, ?, ?, ?)",
                     (key, st.st_size, st.st_mtime_ns, digest))
        return digest

    def close(self) -> None:
        self.conn.close()

    # --- probe runs ------------------------------------------------------------------------------

    def save_probe_run(self, run: dict) -> int:
        """Write a probe run (``ProbeRun.to_dict()``) and all its records in one transaction."""
        with self.transaction():
            cur = self.execute(
                "INSERT INTO probe_runs (started, finished, suite, suite_path, suite_sha256, model, judge,"
                " options, figures) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run["started"], run["finished"], run["suite"], run["suite_path"], run["suite_sha256"],
                 run["model"], run["judge"], json.dumps(run["options"]), json.dumps(run["figures"])))
            run_id = cur.lastrowid
            self.conn.executemany(
                "INSERT INTO probe_results (run_id, record, check_name, item_id, grp, sample, prompt, input,"
                " answer, verdict, reason, detail, settings, call_id, error)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, r["id"], r["check"], r["item"], r["group"], r["sample"], r["prompt"],
                  json.dumps(r["input"]), r["answer"], r["verdict"], r["reason"],
                  json.dumps(r["detail"], default=str), json.dumps(r["settings"]), r["call_id"], r["error"])
                 for r in run["records"]])
        return run_id

    def probe_runs(self, limit: int | None = 20) -> list[dict]:
        """Most recent probe runs first, figures decoded."""
        sql = "SELECT * FROM probe_runs ORDER BY id DESC" + (" LIMIT ?" if limit else "")
        return [{**dict(row), "options": json.loads(row["options"]), "figures": json.loads(row["figures"])}
                for row in self.execute(sql, (limit,) if limit else ())]

    def probe_results(self, run_id: int) -> list[dict]:
        """The records of one probe run, in order; ``record`` is the number its figures cite."""
        rows = self.execute("SELECT * FROM probe_results WHERE run_id = ? ORDER BY record", (run_id,))
        return [{**dict(row), "input": json.loads(row["input"]), "detail": json.loads(row["detail"] or "{}"),
                 "settings": json.loads(row["settings"] or "{}")} for row in rows]


class _Transaction:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
        return False


def _explain(exc: sqlite3.DatabaseError, path: Path) -> str:
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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
