"""Cost: the price table (lookup, patterns, bad files), tokens and CPU time counted by real runs of
the bundled model, costs from them, and the cost lines of the reports a user sees (eval, benchmark,
bench, and runs re-opened from the store)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SHARED_DATA
from llmlab.cost import EXAMPLE, estimate, init_prices, load_prices, prices_path, usd
from llmlab.errors import ConfigError

FILMS = SHARED_DATA / "lesson" / "sentiment_film_data.tsv"
needs_films = pytest.mark.skipif(not FILMS.is_file(), reason=f"shared data absent: {FILMS}")

TABLE = """\
per_hour: 0.36
models:
  openai/gpt-4o-mini: {input: 0.15, output: 0.60}
  "openai/gpt-4o*": {input: 2.50, output: 10.00}
  gpt-4.1: {input: 2.0, output: 8.0}
  "ollama/*": {per_hour: 0.50}
  llamacpp/gemma3-270m: {per_hour: 1.0, clock: wall}
"""


def write(tmp_path, text: str, monkeypatch=None) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    if monkeypatch is not None:
        monkeypatch.setenv("LLMLAB_PRICES", str(path))
    return path


# --- the table -------------------------------------------------------------------------------------

def test_lookup_by_full_name_bare_name_and_pattern(tmp_path):
    table = load_prices(write(tmp_path, TABLE))
    # an exact name wins over a pattern that also matches, wherever it stands in the file
    assert table.lookup(["openai/gpt-4o-mini"], False).entry == "openai/gpt-4o-mini"
    assert table.lookup(["openai/gpt-4o-2024-08-06"], False).entry == "openai/gpt-4o*"
    assert table.lookup(["openai/gpt-4.1", "gpt-4.1"], False).entry == "gpt-4.1"  # the bare name
    assert table.lookup(["ollama/llama3.2:1b"], False).per_hour == 0.50
    # a model run here that no entry names gets the file's per_hour; a server model gets nothing
    assert table.lookup(["llamacpp/smollm2", "smollm2"], True).entry == "per_hour"
    assert table.lookup(["openai/o3"], False) is None


def test_the_path_is_the_data_dir_unless_the_environment_says(isolated_home, monkeypatch, tmp_path):
    assert prices_path() == isolated_home / "prices.yaml"
    monkeypatch.setenv("LLMLAB_PRICES", str(tmp_path / "mine.yaml"))
    assert prices_path() == tmp_path / "mine.yaml"


@pytest.mark.parametrize("text, words", [
    ("models:\n  openai/x: {input: 1}\n", "line 2: openai/x: give both input and output"),
    ("models:\n  a: {input: 1, output: 2}\n  b: {input: -1, output: 2}\n",
     "line 3: b: input must be a number"),
    ("models:\n  a: {per_hour: 1, input: 1, output: 1}\n", "not both"),
    ("models:\n  a: {per_hour: .nan}\n", "per_hour must be a number"),
    ("models:\n  a: {per_hour: 1, clock: gpu}\n", "line 2: a: clock is cpu or wall"),
    ("models:\n  a: {inptu: 1, output: 2}\n", "line 2: a: unknown key 'inptu' (did you mean 'input'?)"),
    ("per_hour: cheap\n", "line 1: per_hour: per_hour must be a number of USD"),
    ("per_hour: 1\nper_hour: 2\n", "line 2, column 1: not valid YAML: duplicate key"),
    ("models: [a, b]\n", "line 1: `models` maps model names to prices"),
    ("models:\n  a: 0.5\n", "line 2: a: give {input: USD, output: USD}"),
])
def test_a_bad_file_is_one_line_naming_the_file_and_line(tmp_path, text, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_prices(path)
    message = str(exc.value)
    assert message.startswith(str(path)) and words in message and "\n" not in message


def test_init_writes_an_example_that_loads_and_prices_nothing(tmp_path):
    path = init_prices(tmp_path / "sub" / "prices.yaml")
    assert path.read_text() == EXAMPLE
    table = load_prices(path)  # every price in the example is a comment: llmlab invents none
    assert table.exists and table.per_hour is None and table.entries == []
    with pytest.raises(ConfigError, match="exists already"):
        init_prices(path)


def test_no_price_costs_nothing_here_and_is_unknown_for_a_server(tmp_path):
    table = load_prices(tmp_path / "absent.yaml")
    here = {"model": "llamacpp/smollm2", "in_process": True, "units": 1, "counted": 1, "input_tokens": 10,
            "output_tokens": 0, "cpu_s": 2.0, "seconds": 1.0}
    est = estimate(here, table)
    assert est.usd == 0.0 and "set per_hour in" in est.note and "absent.yaml" in est.note
    est = estimate({**here, "model": "openai/gpt-4o", "in_process": False}, table)
    assert est.usd is None and "no price for openai/gpt-4o" in est.note


def test_a_server_priced_by_the_hour_is_priced_by_wall_time(tmp_path):
    use = {"model": "ollama/llama3.2:1b", "in_process": False, "units": 4, "counted": 4, "input_tokens": 100,
           "output_tokens": 20, "cpu_s": 0.1, "seconds": 36.0}
    est = estimate(use, load_prices(write(tmp_path, TABLE)))
    assert est.usd == pytest.approx(36.0 * 0.50 / 3600) and "wall" in est.how


def test_without_cpu_time_a_model_run_here_is_priced_by_wall_time_and_says_so(tmp_path):
    use = {"model": "llamacpp/smollm2", "in_process": True, "units": 2, "counted": 2, "input_tokens": 9,
           "output_tokens": 0, "cpu_s": None, "seconds": 10.0}
    est = estimate(use, load_prices(write(tmp_path, TABLE)))
    assert est.usd == pytest.approx(10.0 * 0.36 / 3600) and "priced by wall time" in est.note


# --- real runs -------------------------------------------------------------------------------------

@needs_films
def test_an_eval_run_counts_the_models_own_tokens_and_prices_its_cpu_time(smollm2, tmp_path, monkeypatch):
    from llmlab import GenerationConfig, evaluate
    from llmlab.store import Store
    from llmlab.tasks import continuations, load_task, prompt_for

    write(tmp_path, TABLE, monkeypatch)
    db = tmp_path / "runs.db"
    result = evaluate(FILMS, "sentiment", models=[smollm2], methods=["score", "generate"], limit=3, db=db)
    task = load_task("sentiment")
    strategy = task.strategy(task.default_strategy)
    texts = list(result.dataset.frame["text"])
    prompts = [prompt_for(smollm2, task, strategy, t) for t in texts]
    conts = continuations(smollm2, task, strategy)
    score, generate = (r.meta["usage"] for r in result.runs)
    # score reads each prompt once per label, and each label's own tokens; generates nothing
    per_label = sum(len(smollm2.tokenize(c)) for c in conts)
    assert score["input_tokens"] == sum(smollm2.count_tokens(p) * len(conts) + per_label for p in prompts)
    assert score["output_tokens"] == 0 and score["model"] == "llamacpp/smollm2" and score["in_process"]
    # generate: the Response's own usage, item by item (greedy, so the same generation again)
    cfg = GenerationConfig(temperature=0, max_new_tokens=strategy.max_new_tokens)
    usages = [smollm2.generate(p, cfg).usage for p in prompts]
    assert generate["input_tokens"] == sum(u.prompt_tokens for u in usages)
    assert generate["output_tokens"] == sum(u.completion_tokens for u in usages) > 0
    # a model run here costs its CPU seconds x per_hour / 3600
    figures = result.cost[2]
    for run in result.runs:
        use = figures[run.system.name]
        assert use["cpu_s"] > 0 and use["cost_usd"] == pytest.approx(use["cpu_s"] * 0.36 / 3600)
        assert use["cpu_s"] == pytest.approx(sum(i["cpu_s"] for i in run.items))
    # priced per token instead: tokens x price / 1e6
    write(tmp_path, "models:\n  llamacpp/smollm2: {input: 1.5, output: 6.0}\n", monkeypatch)
    again = evaluate(FILMS, "sentiment", models=[smollm2], methods=["score", "generate"], limit=3, db=db)
    assert all(r.resumed == 3 for r in again.runs)  # nothing computed again: the stored units priced
    priced = again.cost[2][again.runs[1].system.name]
    assert priced["input_tokens"] == generate["input_tokens"]  # per-item tokens survive a resume
    tokens_usd = (generate["input_tokens"] * 1.5 + generate["output_tokens"] * 6.0) / 1e6
    assert priced["cost_usd"] == pytest.approx(tokens_usd)
    store = Store.open(db)
    try:
        units = store.units(result.runs[1].run_id)
    finally:
        store.close()
    assert sum(u["output_tokens"] for u in units.values()) == generate["output_tokens"]


def test_a_benchmark_run_counts_its_tokens_and_cpu_time(smollm2, tmp_path, monkeypatch):
    from llmlab.benchmarks import run_benchmark

    write(tmp_path, TABLE, monkeypatch)
    result = run_benchmark(None, "arc", [smollm2], limit=3, db=tmp_path / "runs.db")
    run = result.runs[0]
    use = run.summary["usage"]
    assert use["input_tokens"] == sum(i["tokens"] for i in run.items) > 0 and use["output_tokens"] == 0
    assert use["cpu_s"] == pytest.approx(sum(i["cpu_s"] for i in run.items))
    assert result.report["runs"][0]["cost_usd"] == pytest.approx(use["cpu_s"] * 0.36 / 3600)
    assert "## Tokens and estimated cost" in result.to_markdown()


def test_bench_prices_one_generation_from_its_cpu_time(tmp_path, monkeypatch):
    """``llmlab bench``'s measurement in this process (each is a fresh process under the command)."""
    from llmlab.bench import BenchResult, measure, summarize
    from llmlab.bench_report import bench_table, cost_notes

    write(tmp_path, TABLE, monkeypatch)
    run = measure("smollm2", [8, 24], 4, {"n_ctx": 256, "threads": 1})
    run["peak_rss"] = run["maxrss_kernel"]  # what the parent adds from its sampling
    rows = summarize([run])
    for row, m in zip(rows, run["measurements"], strict=True):
        tokens = m["prompt_tokens"] + m["completion_tokens"]
        assert m["cpu_s"] > 0
        assert row["cost_1k"].median == pytest.approx(m["cpu_s"] * 0.36 / 3600 * 1000)
        assert row["cost_1m"].median == pytest.approx(m["cpu_s"] * 0.36 / 3600 / tokens * 1e6)
    result = BenchResult({"repeats": 1, "new_tokens": 4, "threads": 1, "machine": {"load_average": [0]}},
                         [run], rows)
    text = bench_table(result).to_markdown()
    assert "$ per 1k examples" in text and "$ per 1M tokens" in text
    assert any("prices.yaml" in n for n in cost_notes(result))


# --- what a user sees --------------------------------------------------------------------------------

def llmlab(*args, home):
    env = {**os.environ, "LLMLAB_HOME": str(home), "LLMLAB_DB": str(home / "runs.db"), "COLUMNS": "200"}
    env.pop("LLMLAB_PRICES", None)
    return subprocess.run([sys.executable, "-m", "llmlab", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env)


@needs_films
def test_the_eval_report_has_cost_lines_and_so_has_the_reopened_run(tmp_path):
    home = tmp_path / "home"
    r = llmlab("cost", home=home)
    assert r.returncode == 0 and "absent" in r.stdout and "llmlab cost --init" in r.stdout
    r = llmlab("eval", FILMS, "--limit", "3", "--threads", "1", "--out", tmp_path / "out", home=home)
    assert r.returncode == 0, r.stderr
    assert "tokens and estimated cost" in r.stdout and "set per_hour in" in r.stdout  # no price: said
    assert llmlab("cost", "--init", home=home).returncode == 0
    prices = home / "prices.yaml"
    prices.write_text(prices.read_text().replace("# per_hour: 0.36", "per_hour: 3.6"))
    r = llmlab("cost", "-m", "smollm2", home=home)
    assert "$3.6 per hour" in r.stdout and "smollm2" in r.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    use = next(iter(report["cost"]["systems"].values()))
    assert use["input_tokens"] > 0 and report["table"][0]["input_tokens"] == use["input_tokens"]
    assert "## Tokens and estimated cost" in (tmp_path / "out" / "report.md").read_text()
    r = llmlab("runs", "show", "1", home=home)
    assert r.returncode == 0, r.stderr
    assert "tokens and estimated cost" in r.stdout and f"{use['input_tokens']:,}" in r.stdout
    assert usd(use["cpu_s"] * 3.6 / 3600) in r.stdout  # the stored CPU time at today's price
    assert "today, not when it ran" in r.stdout


def test_the_benchmark_report_has_cost_lines_and_so_has_the_reopened_run(tmp_path):
    home = tmp_path / "home"
    r = llmlab("eval", "--benchmark", "arc", "--limit", "3", "--threads", "1", home=home)
    assert r.returncode == 0, r.stderr
    assert "tokens and estimated cost" in r.stdout and "CPU s" in r.stdout
    r = llmlab("runs", "show", "1", "--format", "markdown", home=home)
    assert r.returncode == 0, r.stderr
    assert "| model | in tokens | out tokens | CPU s | wall s | cost | from |" in r.stdout
