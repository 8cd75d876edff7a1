"""Runs of every kind in two tables: ``runs`` (one header per run) and ``units`` (one row per finished
unit of work, its result as JSON).

A run is found again by its kind and fingerprint (a digest of everything that shapes its results),
so the runner resumes the latest run with the same fingerprint and computes only the units it does
not have. Each unit is written the moment it finishes, in its own autocommit statement, so Ctrl-C or
a kill loses at most the unit in hand. The store does not know what a unit means: the run kind
(``llmlab.evals``, ``llmlab.probes``, ``llmlab.bench``) does, and re-opens a stored run from its
header, units and summary.

The last methods read the shapes of the old per-kind tables (``eval_runs``, ``probe_results``, ...),
which are views over these tables now: a reader's view of one kind (the tests check stored runs
through them), not what llmlab's own code reads.

What it gives up: results are JSON, so a value that JSON cannot hold (a tuple, a numpy number) comes
back as a list or a plain number; the runner round-trips every result, so a run read back and a run
just computed are the same data.
"""

from __future__ import annotations

import json

from .db import now


def dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, default=_plain)


def _plain(obj):
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


class RunStore:
    """The ``runs`` and ``units`` tables (mixed into ``Store``)."""

    def open_run(self, kind: str, fingerprint: str, header: dict, *, model: str | None = None,
                 subject: str | None = None, planned: int = 0, fresh: bool = False) -> tuple[int, dict]:
        """The latest run of ``kind`` with this fingerprint and its finished units by key; a new run
        (no units) when there is none or ``fresh`` is set."""
        row = None if fresh else self.execute(
            "SELECT id FROM runs WHERE kind = ? AND fingerprint = ? ORDER BY id DESC LIMIT 1",
            (kind, fingerprint)).fetchone()
        if row is not None:
            return row["id"], self.units(row["id"])
        cur = self.execute(
            "INSERT INTO runs (kind, fingerprint, created, model, subject, planned, header)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (kind, fingerprint, now(), model, subject, planned, dumps(header)))
        return cur.lastrowid, {}

    def add_unit(self, run_id: int, key: str, seq: int, result: dict) -> None:
        """Store one finished unit at once (autocommit), so a kill loses at most the unit in hand."""
        self.execute("INSERT OR REPLACE INTO units (run_id, key, seq, result, ts) VALUES (?, ?, ?, ?, ?)",
                     (run_id, key, seq, dumps(result), now()))

    def finish_run(self, run_id: int, summary: dict | None = None) -> None:
        self.execute("UPDATE runs SET finished = ?, summary = ? WHERE id = ?",
                     (now(), dumps(summary) if summary is not None else None, run_id))

    def units(self, run_id: int) -> dict[str, dict]:
        """A run's finished units, key -> result, in plan order."""
        rows = self.execute("SELECT key, result FROM units WHERE run_id = ? ORDER BY seq, rowid", (run_id,))
        return {row["key"]: json.loads(row["result"]) for row in rows}

    def run(self, run_id: int) -> dict | None:
        """One run's header row (header and summary decoded, ``done`` units counted), or None."""
        rows = self._runs("WHERE r.id = ?", (run_id,))
        return rows[0] if rows else None

    def runs(self, limit: int | None = 20, kind: str | None = None) -> list[dict]:
        """Most recent runs of any kind (or of ``kind``) first, with how many units each has done."""
        where, params = ("WHERE r.kind = ?", [kind]) if kind else ("", [])
        return self._runs(where + " ORDER BY r.id DESC" + (" LIMIT ?" if limit else ""),
                          params + ([limit] if limit else []))

    def _runs(self, tail: str, params) -> list[dict]:
        sql = "SELECT r.*, (SELECT COUNT(*) FROM units WHERE run_id = r.id) AS done FROM runs r " + tail
        out = []
        for row in self.execute(sql, params):
            d = dict(row)
            d["header"] = json.loads(d["header"])
            d["summary"] = json.loads(d["summary"]) if d["summary"] else None
            d["state"] = "finished" if d["finished"] else "interrupted"
            out.append(d)
        return out

    # --- the shapes of the old per-kind tables ---------------------------------------------------

    def eval_results(self, run_id: int) -> dict[str, dict]:
        """An evaluation run's results by item id (gold, pred, raw, scores, seconds)."""
        return {key: {"run_id": run_id, "item_id": key, **r} for key, r in self.units(run_id).items()}

    def eval_runs(self, limit: int | None = 20) -> list[dict]:
        """Most recent evaluation runs first, with how many items each has finished."""
        return [{"id": r["id"], "fingerprint": r["fingerprint"], "created": r["created"],
                 "finished": r["finished"], "model": r["model"], "done": r["done"], "n_items": r["planned"],
                 **{k: r["header"].get(k) for k in ("dataset", "dataset_sha256", "task", "strategy",
                                                    "method", "repeat", "settings")}}
                for r in self.runs(limit, kind="eval")]

    def probe_runs(self, limit: int | None = 20) -> list[dict]:
        """Most recent probe runs first, figures decoded."""
        return [{"id": r["id"], "started": r["created"], "finished": r["finished"], "suite": r["subject"],
                 "model": r["model"], **{k: r["header"].get(k) for k in ("suite_path", "suite_sha256",
                                                                        "judge", "options")},
                 "figures": (r["summary"] or {}).get("figures", [])}
                for r in self.runs(limit, kind="probe")]

    def probe_results(self, run_id: int) -> list[dict]:
        """The records of one probe run, in order; ``record`` is the number its figures cite."""
        return [{"run_id": run_id, "record": r["id"], "check_name": r["check"], "item_id": r["item"],
                 "grp": r["group"], **{k: r[k] for k in ("sample", "prompt", "input", "answer", "verdict",
                                                        "reason", "detail", "settings", "call_id", "error")}}
                for r in self.units(run_id).values()]
