"""Cost in every kind of run: ``llmlab probe``, ``eval --task`` (generation), ``flow run``, ``rag eval``
and ``agent eval`` store each unit's tokens and times per model, and their reports -- terminal, saved
markdown and JSON, and the run re-opened by ``llmlab runs show`` -- price them. The expected figures
are computed here from the stored units and the price table, so a wrong sum or a lost unit fails."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmlab.cost import usd
from llmlab.store import Store

ROOT = Path(__file__).resolve().parents[1]
MODEL = "llamacpp/smollm2"
IN, OUT = 1000.0, 4000.0  # USD per 1M tokens: large, so a few hundred tokens cost cents


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """``llmlab ARGS`` in this process, its output wide enough for the tables; the store is the test's."""
    from llmlab.cli.main import app

    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("LLMLAB_DB", str(tmp_path / "runs.db"))

    def run(*args):
        result = CliRunner().invoke(app, [str(a) for a in args])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == 0, result.output
        return result.output
    run.db = tmp_path / "runs.db"
    return run


def prices(tmp_path, monkeypatch, text: str) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    monkeypatch.setenv("LLMLAB_PRICES", str(path))


def stored(db: Path, kind: str) -> tuple[int, list[dict]]:
    """The one run of ``kind`` in the store, and its units' per-model usage."""
    store = Store.open(db)
    try:
        (run,) = [r for r in store.runs() if r["kind"] == kind]
        return run["id"], [u["usage"] for u in store.units(run["id"]).values()]
    finally:
        store.close()


def total(usages: list[dict], key: str, model: str = MODEL) -> float:
    return sum(u[model][key] for u in usages if model in u)


def token_cost(usages: list[dict], model: str = MODEL) -> str:
    tokens_in, tokens_out = total(usages, "input_tokens", model), total(usages, "output_tokens", model)
    return usd(tokens_in * IN / 1e6 + tokens_out * OUT / 1e6)  # as cost.estimate sums them


def test_a_probe_run_prices_every_answer_s_tokens_and_so_does_the_reopened_run(cli, tmp_path, monkeypatch,
                                                                                smollm2):
    from llmlab import GenerationConfig

    prices(tmp_path, monkeypatch, f"models:\n  {MODEL}: {{input: {IN}, output: {OUT}}}\n")
    out = tmp_path / "probe"
    text = cli("probe", "--suite", "reasoning", "--limit", "1", "-n", "8", "--threads", "1", "--out", out,
               "--no-examples")
    run_id, usages = stored(cli.db, "probe")
    assert len(usages) == 2 and all(u[MODEL]["calls"] == 1 for u in usages)
    # the stored tokens are the generation's own: the same greedy prompt asked again counts the same
    record = json.loads((out / "results.json").read_text())["runs"][0]["records"][0]
    again = smollm2.generate(record["input"], GenerationConfig(**record["settings"])).usage
    assert (record["usage"][MODEL]["input_tokens"], record["usage"][MODEL]["output_tokens"]) == (
        again.prompt_tokens, again.completion_tokens)
    cost = token_cost(usages)
    assert "tokens and estimated cost" in text and cost in text
    assert f"{int(total(usages, 'input_tokens')):,}" in text
    report = json.loads((out / "results.json").read_text())["runs"][0]["cost"]
    assert usd(report["models"][MODEL]["cost_usd"]) == cost
    assert "### Tokens and estimated cost" in (out / "report.md").read_text()
    shown = cli("runs", "show", run_id)
    assert cost in shown and "today, not when it ran" in shown


def test_a_generation_task_prices_the_model_and_says_when_no_price_is_set(cli, tmp_path, monkeypatch):
    out = tmp_path / "gen"
    text = cli("eval", "--task", "qa", "--limit", "2", "-n", "6", "--threads", "1", "--out", out)
    assert "tokens and estimated cost" in text and "set per_hour in" in text  # no price table: said
    run_id, usages = stored(cli.db, "generation")
    assert len(usages) == 2 and total(usages, "output_tokens") > 0
    report = json.loads((out / "report.json").read_text())
    assert report["cost"]["models"][MODEL]["input_tokens"] == total(usages, "input_tokens")
    assert "## Tokens and estimated cost" in (out / "report.md").read_text()
    # a price set later: the stored CPU time at today's price
    prices(tmp_path, monkeypatch, "per_hour: 3.6\n")
    shown = cli("runs", "show", run_id, "--format", "markdown")
    cpu = total(usages, "cpu_s")
    assert cpu > 0 and usd(cpu * 3.6 / 3600) in shown and f"{cpu:.1f} CPU s × $3.6/h" in shown


def test_a_flow_run_prices_each_step_s_calls(cli, tmp_path, monkeypatch):
    prices(tmp_path, monkeypatch, f"models:\n  smollm2: {{input: {IN}, output: {OUT}}}\n")  # a bare name
    text = cli("flow", "run", ROOT / "examples" / "flows" / "triage.yaml", "--data",
               ROOT / "examples" / "flows" / "reviews.csv", "--limit", "2", "--threads", "1", "--out",
               tmp_path / "flow")
    run_id, usages = stored(cli.db, "flow")
    assert [u[MODEL]["calls"] for u in usages] == [3, 3]  # extract, classify, summarise
    cost = token_cost(usages)
    assert "tokens and estimated cost" in text and cost in text
    rows = [json.loads(x) for x in (tmp_path / "flow" / "outputs.jsonl").read_text().splitlines()]
    assert [r["usage"] for r in rows] == usages
    assert cost in cli("runs", "show", run_id)


def test_rag_and_agent_evaluations_price_the_answering_model(cli, tmp_path, monkeypatch):
    prices(tmp_path, monkeypatch, f"models:\n  {MODEL}: {{input: {IN}, output: {OUT}}}\n")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "goats.txt").write_text("Marta keeps three goats and a donkey called Pablo on her farm near the "
                                    "lake. The bridge over the river was finished in 1932.")
    store = tmp_path / "rag"
    cli("rag", "ingest", docs, "-c", "farm", "--store", store)
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"id": "donkey", "question": "What is the donkey called?",
                                     "evidence": "Pablo"}) + "\n")
    out = tmp_path / "rag-out"
    text = cli("rag", "eval", questions, "-c", "farm", "--store", store, "-r", "bm25", "-m", "smollm2",
               "--answer-retriever", "bm25", "-n", "12", "--threads", "1", "--out", out)
    run_id, usages = stored(cli.db, "rag")
    assert usages[0] == {} and usages[1][MODEL]["calls"] == 1  # retrieval asks no model; the answer does
    cost = token_cost(usages)
    assert "tokens and estimated cost" in text and cost in text
    assert cost in (out / "report.md").read_text()
    assert usd(json.loads((out / "results.json").read_text())["cost"]["models"][MODEL]["cost_usd"]) == cost
    assert cost in cli("runs", "show", run_id)

    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"id": "mul", "request": "What is 21 times 3?", "tools": ["calculator"],
                                 "expected_answer": "63"}) + "\n")
    text = cli("agent", "eval", tasks, "-m", "smollm2", "-n", "24", "--max-steps", "2", "--threads", "1",
               "--out", tmp_path / "agent")
    run_id, usages = stored(cli.db, "agent")
    cost = token_cost(usages)
    assert usages[0][MODEL]["calls"] >= 1 and cost in text
    assert cost in (tmp_path / "agent" / "agent_eval.md").read_text()
    shown = cli("runs", "show", run_id)
    assert cost in shown and re.search(r"llamacpp/smollm2 +│ +[\d,]+ +│", shown)
