"""The web UI's conversations and setting presets (``conversations``, ``presets``).

A conversation is kept whole after every turn: its messages (with each reply's timings and token
counts), the model and the settings it was held with, so it reopens after a restart exactly as it
was left and exports with everything needed to repeat it.
"""

from __future__ import annotations

import json

from .db import now


class ConversationStore:
    """The ``conversations`` and ``presets`` tables (mixed into ``Store``)."""

    def save_conversation(self, conversation: dict) -> int:
        """Insert a conversation (no ``id``) or replace the one with its ``id``; returns the id."""
        row = {"updated": now(), "title": conversation.get("title") or "",
               "model": conversation.get("model") or "",
               "settings": json.dumps(conversation.get("settings") or {}),
               "system": conversation.get("system") or "",
               "messages": json.dumps(conversation.get("messages") or [])}
        cid = conversation.get("id")
        if cid is not None and self.execute("SELECT 1 FROM conversations WHERE id = ?", (cid,)).fetchone():
            sets = ", ".join(f"{k} = ?" for k in row)
            self.execute(f"UPDATE conversations SET {sets} WHERE id = ?", [*row.values(), cid])
            return int(cid)
        row["created"] = row["updated"]
        marks = ", ".join("?" * len(row))
        cur = self.execute(f"INSERT INTO conversations ({', '.join(row)}) VALUES ({marks})",
                           list(row.values()))
        return cur.lastrowid

    def conversation(self, cid: int) -> dict | None:
        row = self.execute("SELECT * FROM conversations WHERE id = ?", (cid,)).fetchone()
        return None if row is None else _conversation(row)

    def conversations(self, limit: int | None = 50) -> list[dict]:
        """The latest conversations first."""
        sql = "SELECT * FROM conversations ORDER BY updated DESC, id DESC"
        rows = self.execute(sql + " LIMIT ?", (limit,)) if limit else self.execute(sql)
        return [_conversation(r) for r in rows]

    def delete_conversation(self, cid: int) -> None:
        self.execute("DELETE FROM conversations WHERE id = ?", (cid,))

    def save_preset(self, name: str, settings: dict) -> None:
        self.execute("INSERT INTO presets (name, ts, settings) VALUES (?, ?, ?) ON CONFLICT(name) "
                     "DO UPDATE SET ts = excluded.ts, settings = excluded.settings",
                     (name, now(), json.dumps(settings)))

    def presets(self) -> dict[str, dict]:
        return {r["name"]: json.loads(r["settings"])
                for r in self.execute("SELECT name, settings FROM presets ORDER BY name")}


def _conversation(row) -> dict:
    d = dict(row)
    d["settings"] = json.loads(d["settings"])
    d["messages"] = json.loads(d["messages"])
    return d
