"""`llmlab eval` as a user runs it: `python -m llmlab eval ...` in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "reviews.csv"


def llmlab(*args, home, timeout=600):
    env = {**os.environ, "LLMLAB_HOME": str(home), "LLMLAB_DB": str(home / "eval.db"), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "llmlab", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_list_tasks(tmp_path):
    r = llmlab("eval", "--list-tasks", home=tmp_path)
    assert r.returncode == 0, r.stderr
    for word in ("sentiment", "topic", "classify", "chain-of-thought", "positive, negative, neutral"):
        assert word in r.stdout


def test_the_main_job_on_the_example_file(tmp_path):
    out = tmp_path / "out"
    r = llmlab("eval", EXAMPLES, "--task", "sentiment", "-m", "smollm2", "--method", "score",
               "--method", "generate", "--limit", "6", "--n-ctx", "2048", "--out", out, home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "accuracy" in r.stdout and "McNemar" in r.stdout and "precision" in r.stdout
    preds = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert {"id", "text", "gold", "pred", "raw", "method", "model"} <= set(preds.columns)
    assert len(preds) == 12 and set(preds["method"]) == {"score", "generate"}
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"]["rows"] == 6 and len(report["systems"]) == 2
    assert report["dataset"]["gold_counts"] == {"positive": 6}
    assert (out / "report.md").read_text().startswith("# sentiment on reviews.csv")
    assert (out / "confusion.png").stat().st_size > 5000


@pytest.mark.parametrize("args, message", [
    (["missing.csv"], "dataset not found"),
    ([EXAMPLES, "--text-col", "body"], "has no column 'body'; its columns are: text, label"),
    ([EXAMPLES, "--task", "topic"], "labels outside the topic task's set"),
    ([EXAMPLES, "--task", "sentimnet"], "did you mean 'sentiment'"),
    ([EXAMPLES, "--method", "guess"], "unknown method 'guess'"),
    ([EXAMPLES, "--strategy", "zero-shoot"], "did you mean 'zero-shot'"),
    ([EXAMPLES, "--repeats", "3"], "--repeats needs sampling"),
    ([EXAMPLES, "--label-map", "oops"], "--label-map wants VALUE=LABEL"),
    ([EXAMPLES, "--limit", "0"], "--limit must be a whole number >= 1"),
    ([EXAMPLES, "--threads", "0"], "--threads must be a whole number >= 1"),
])
def test_bad_input_is_one_clear_line(tmp_path, args, message):
    r = llmlab("eval", *args, home=tmp_path)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmlab: error: ") and message in lines[0], r.stderr


def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(tmp_path):
    args = ["eval", EXAMPLES, "-m", "smollm2", "--method", "score", "--limit", "10", "--n-ctx", "2048"]
    env = {**os.environ, "LLMLAB_HOME": str(tmp_path), "LLMLAB_DB": str(tmp_path / "eval.db")}
    proc = subprocess.Popen([sys.executable, "-m", "llmlab", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and _stored(tmp_path / "eval.db") < 3:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted: finished items are stored; run the same command again to resume" in stderr
    stored = _stored(tmp_path / "eval.db")
    assert 3 <= stored < 10
    r = llmlab(*args, home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"({stored}/10 items)" in r.stdout.replace("\n", " ")
    assert _stored(tmp_path / "eval.db") == 10


def _stored(db) -> int:
    import sqlite3

    try:
        return sqlite3.connect(db, timeout=1).execute("SELECT COUNT(*) FROM eval_results").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
