"""The call log: one row per generation (``Response.record()``), and the cache of model-file hashes.

Every generation llmlab makes is written here by the model's logger, interrupted ones too, with the
sha256 of the model file. Hashing a model file (hundreds of MB) is costly, so the digest is cached
by path, size and modification time in ``file_hashes``.

What it gives up: a file changed in place with the same size and mtime keeps its old digest.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from .db import now

if TYPE_CHECKING:
    from ..models.response import Response


class CallStore:
    """The ``calls`` and ``file_hashes`` tables (mixed into ``Store``)."""

    def log_response(self, r: Response) -> int:
        """Write one generation to the log; returns its id."""
        row = {"ts": now(), **r.record()}
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
            d["tool_calls"] = json.loads(d["tool_calls"]) if d.get("tool_calls") else None
            d["interrupted"] = bool(d["interrupted"])
            out.append(d)
        return out

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
