"""The arena's votes (``arena_votes``): one row per vote, answers and settings kept beside it."""

from __future__ import annotations

import json

from .db import now


class ArenaStore:
    """The ``arena_votes`` table (mixed into ``Store``)."""

    def add_vote(self, vote: dict) -> int:
        """Store one vote; a battle is voted once (a second vote on it is refused by the database)."""
        row = {"ts": now(), **{k: vote.get(k) for k in (
            "battle", "model_a", "model_b", "winner", "prompt", "answer_a", "answer_b", "call_a", "call_b")},
               "anonymous": int(bool(vote.get("anonymous", True))),
               "settings": json.dumps(vote.get("settings") or {})}
        cols = ", ".join(row)
        cur = self.execute(f"INSERT INTO arena_votes ({cols}) VALUES ({', '.join('?' * len(row))})",
                           list(row.values()))
        return cur.lastrowid

    def votes(self) -> list[dict]:
        """Every vote, oldest first (the order online Elo reads them in)."""
        out = []
        for row in self.execute("SELECT * FROM arena_votes ORDER BY id"):
            d = dict(row)
            d["anonymous"] = bool(d["anonymous"])
            d["settings"] = json.loads(d["settings"])
            out.append(d)
        return out
