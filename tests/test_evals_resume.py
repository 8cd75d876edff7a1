"""Resuming: a run really interrupted midway (Ctrl-C in-process, SIGKILL of the CLI) continues where
it stopped, recomputes nothing it finished, and ends with the result of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmlab import evaluate
from llmlab.evals import methods
from llmlab.store import Store

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "reviews.csv"


class Interrupt:
    """Press Ctrl-C right after the k-th item is stored (the worst moment: between items)."""

    def __init__(self, after: int):
        self.after = after
        self.stored = 0

    def install(self, monkeypatch):
        original = Store.add_unit  # where every kind of run stores a finished unit (here: an item)

        def add(store, *args):
            original(store, *args)
            self.stored += 1
            if self.stored == self.after:
                raise KeyboardInterrupt

        monkeypatch.setattr(Store, "add_unit", add)


def count_predictions(monkeypatch) -> list:
    calls = []
    for cls in (methods.GenerateMethod, methods.ScoreMethod):
        original = cls.predict

        def predict(self, text, _original=original):
            calls.append(text)
            return _original(self, text)

        monkeypatch.setattr(cls, "predict", predict)
    return calls


def test_ctrl_c_midway_then_resume_equals_an_uninterrupted_run(smollm2, lesson_data, tmp_path,
                                                                 monkeypatch):
    args = dict(task="sentiment", models=[smollm2], methods=["generate", "score"], limit=6)
    path = lesson_data / "sentiment_film_data.tsv"
    reference = evaluate(path, **args, db=tmp_path / "reference.db").predictions

    db = tmp_path / "interrupted.db"
    interrupt = Interrupt(after=4)
    with monkeypatch.context() as patch:
        interrupt.install(patch)
        with pytest.raises(KeyboardInterrupt):
            evaluate(path, **args, db=db)
    stored = sqlite3.connect(db).execute("SELECT item_id, ts FROM eval_results").fetchall()
    assert len(stored) == 4  # the items finished before the interrupt are kept

    calls = count_predictions(monkeypatch)
    resumed = evaluate(path, **args, db=db)
    assert len(calls) == 12 - 4  # nothing finished is computed again
    assert any("resumed from the store" in n and "(4/6 items)" in n for n in resumed.notes)
    kept = dict(sqlite3.connect(db).execute("SELECT item_id, ts FROM eval_results WHERE run_id = 1"))
    assert all(kept[item] == ts for item, ts in stored)  # untouched, not rewritten
    got = resumed.predictions
    assert list(got["pred"]) == list(reference["pred"])
    gen = got["method"] == "generate"
    assert list(got.loc[gen, "raw"]) == list(reference.loc[gen, "raw"])

    calls.clear()
    evaluate(path, **args, db=db)  # finished: a third call computes nothing at all
    assert calls == []


def test_a_killed_cli_run_resumes(smollm2, tmp_path):
    db = tmp_path / "killed.db"
    env = {**os.environ, "LLMLAB_HOME": str(tmp_path / "home"), "LLMLAB_DB": str(db)}
    cmd = [sys.executable, "-m", "llmlab", "eval", str(EXAMPLES), "-m", "smollm2", "--method", "score",
           "--limit", "12", "--n-ctx", "2048"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        done = 0
        while done < 4 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
            done = _count(db)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    before = dict(sqlite3.connect(db).execute("SELECT item_id, ts FROM eval_results"))
    assert 4 <= len(before) < 12

    finished = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    assert f"({len(before)}/12 items)" in finished.stdout.replace("\n", " ")
    after = dict(sqlite3.connect(db).execute("SELECT item_id, ts FROM eval_results"))
    assert len(after) == 12 and all(after[i] == ts for i, ts in before.items())

    reference = evaluate(EXAMPLES, "sentiment", [smollm2], "score", limit=12, db=tmp_path / "ref.db")
    stored = Store.open(db).eval_results(1)
    assert [stored[i]["pred"] for i in reference.predictions["id"]] == list(reference.predictions["pred"])


def _count(db) -> int:
    if not db.exists():
        return 0
    try:
        return sqlite3.connect(db, timeout=1).execute("SELECT COUNT(*) FROM eval_results").fetchone()[0]
    except sqlite3.OperationalError:  # the table does not exist until the migrations ran
        return 0
