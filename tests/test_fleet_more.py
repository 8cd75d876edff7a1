"""``--concurrency`` on ``llmlab rag eval`` and ``llmlab agent eval``: against one ``llmlab serve
--parallel 2`` on 127.0.0.1, four units at a time store exactly what one at a time stores (greedy), each
unit as it finishes; a model computed in this process is refused in one line."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from llmlab.store import Store
from test_fleet import serve

QUESTIONS = [
    {"id": "donkey", "question": "What is the donkey called?", "evidence": "Pablo"},
    {"id": "bridge", "question": "When was the bridge finished?", "evidence": "1932"},
    {"id": "tomas", "question": "What did Tomas study in Oslo?", "evidence": "marine biology"},
    {"id": "lake", "question": "Where is Marta's farm?", "evidence": "near the lake"},
]
TASKS = [
    {"id": "mul", "request": "What is 21 times 3?", "tools": ["calculator"], "expected_answer": "63"},
    {"id": "days", "request": "How many days are there from 2025-01-01 to 2025-01-31?", "tools": ["dates"],
     "expected_answer": "30"},
    {"id": "hello", "request": "Hello, how are you today?", "tools": ["calculator"], "expected_calls": []},
]
# what varies from run to run: the clocks and the rows of the call log
VARIES = {"seconds", "cpu_s", "call_ids"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serve(tmp_path_factory) as s:
        yield s


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    """A tiny collection and its questions, ingested once."""
    from llmlab.rag.ingestion import ingest

    root = tmp_path_factory.mktemp("farm")
    (root / "docs").mkdir()
    (root / "docs" / "farm.txt").write_text(
        "Marta keeps three goats and a donkey called Pablo on her farm near the lake.\n\n"
        "The bridge over the river was finished in 1932 and was painted green until 1980.\n\n"
        "Tomas moved from Lisbon to Oslo to study marine biology.")
    ingest([root / "docs"], "farm", store=root / "store")
    (root / "q.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    (root / "tasks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in TASKS))
    return root


def llmlab(db, *args) -> str:
    from llmlab.cli.main import app

    result = CliRunner().invoke(app, ["--db", str(db), *map(str, args)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def units(db, kind: str) -> dict:
    """The stored units of the one run of ``kind``, without what varies between runs."""
    store = Store.open(db)
    try:
        (run,) = [r for r in store.runs() if r["kind"] == kind]
        return {k: strip(v) for k, v in store.units(run["id"]).items()}
    finally:
        store.close()


def strip(value):
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in VARIES}
    return value


@pytest.fixture(autouse=True)
def _restore_db(monkeypatch):
    monkeypatch.delenv("LLMLAB_DB", raising=False)  # `--db` sets it for the process: undone after each test
    monkeypatch.setenv("COLUMNS", "200")


def test_rag_eval_answers_four_at_a_time_as_it_does_one_at_a_time(server, farm, tmp_path):
    model = f"openai/smollm2@{server.url}"
    args = ["rag", "eval", farm / "q.jsonl", "-c", "farm", "--store", farm / "store", "-r", "bm25", "-m",
            model, "--answer-retriever", "bm25", "-k", "2", "-n", "16"]
    llmlab(tmp_path / "one.db", *args)
    out = llmlab(tmp_path / "four.db", *args, "--concurrency", "4", "--rpm", "1000")
    one, four = units(tmp_path / "one.db", "rag"), units(tmp_path / "four.db", "rag")
    assert list(four) == list(one) and four == one
    answers = [u for u in one.values() if u["retriever"] == "answer"]
    assert len(answers) == 4 and all(u["usage"]["openai/smollm2"]["calls"] == 1 for u in answers)
    assert "tokens and estimated cost" in out and "no price for openai/smollm2" in out
    again = llmlab(tmp_path / "four.db", *args, "--concurrency", "4")
    assert "8 units resumed" in again  # every unit was stored as it finished


def test_agent_eval_runs_four_trials_at_a_time_as_it_does_one_at_a_time(server, farm, tmp_path):
    model = f"openai/smollm2@{server.url}"
    args = ["agent", "eval", farm / "tasks.jsonl", "-m", model, "-n", "24", "--max-steps", "2"]
    llmlab(tmp_path / "one.db", *args)
    out = llmlab(tmp_path / "four.db", *args, "-j", "4", "--balance", "round-robin")
    one, four = units(tmp_path / "one.db", "agent"), units(tmp_path / "four.db", "agent")
    assert list(four) == list(one) and four == one
    assert all(u["usage"]["openai/smollm2"]["calls"] >= 1 for u in one.values())
    assert "tokens and estimated cost" in out


@pytest.mark.parametrize("command", [
    ["rag", "eval", "q.jsonl", "-c", "farm", "-r", "bm25", "-m", "smollm2"],
    ["agent", "eval", "tasks.jsonl", "-m", "smollm2"],
])
def test_a_model_computed_here_with_concurrency_is_one_line(farm, tmp_path, monkeypatch, capsys, command):
    from llmlab.cli.main import run

    command = [str(farm / a) if a.endswith(".jsonl") else a for a in command]
    if command[0] == "rag":
        command += ["--store", str(farm / "store")]
    argv = ["llmlab", "--db", str(tmp_path / "x.db"), *command, "--concurrency", "2"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_:
        run()
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and err.count("\n") == 1, err
    assert "--concurrency 2 is for remote models" in err and "llmlab serve --parallel N" in err
