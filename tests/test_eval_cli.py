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


def readme_main_job() -> list[str]:
    """The arguments of the README's first command after ``llmlab``: the main job, as users run it."""
    import shlex

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    first = next(line for line in readme.splitlines() if "/llmlab eval " in line)
    args = shlex.split(first.split(".venv/bin/llmlab ", 1)[1])
    return [str(EXAMPLES) if a == "examples/reviews.csv" else a for a in args]


def test_the_main_job_on_the_example_file(tmp_path):
    args = readme_main_job()
    assert args[:2] == ["eval", str(EXAMPLES)] and "--baseline" in args and args.count("--recipe") == 2
    args[args.index("--out") + 1] = str(tmp_path / "out")
    out = tmp_path / "out"
    r = llmlab(*args, "--limit", "20", home=tmp_path)  # the whole file is README figures' business
    assert r.returncode == 0, r.stderr
    assert "accuracy" in r.stdout and "McNemar" in r.stdout and "precision" in r.stdout
    preds = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert {"id", "text", "gold", "pred", "raw", "method", "model"} <= set(preds.columns)
    report = json.loads((out / "report.json").read_text())
    # exactly the recipes named: the lesson's, llmlab's best, and the supervised baseline
    assert [(t["strategy"], t["method"]) for t in report["table"]] == [
        ("zero-shot", "generate"), ("good-bad-mixed", "batch-calibrate"), ("-", "supervised")]
    assert len(preds) == 3 * 20 and report["dataset"]["rows"] == 20
    assert sum(report["dataset"]["gold_counts"].values()) == 20 and len(report["dataset"]["gold_counts"]) == 3
    # the closing paragraph reads the table: the best system and a test against each other one
    reading = report["reading"]
    assert reading.startswith(f"Best: {report['best']}") and reading.count("p = ") == 2
    assert "significant" in reading and " ".join(reading.split()[:3]) in " ".join(r.stdout.split())
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
    ([EXAMPLES, "--threads", "0"], "--threads (n_threads) must be a whole number >= 1"),
    ([EXAMPLES, "--recipe", "few-shot"], "a recipe is STRATEGY:METHOD"),
    ([EXAMPLES, "--recipe", "few-shot:guess"], "unknown method 'guess'"),
    ([EXAMPLES, "--recipe", "fewshot:score"], "did you mean 'few-shot'"),
    ([EXAMPLES, "--recipe", "few-shot:score", "--method", "score"], "not both"),
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
