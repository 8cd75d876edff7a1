"""``llmlab bench`` on the bundled models: each measured in fresh processes, figures consistent with
the raw measurements, a chart, and clear errors. (Speed itself is not asserted: see bench/.)"""

import json
import os
import statistics
import subprocess
import sys

import pytest

from llmlab.bench import parse_lengths, run_bench
from llmlab.errors import ConfigError, ModelNotFoundError

LENGTHS = [8, 40]


def llmlab(*args, db):
    env = {**os.environ, "LLMLAB_DB": str(db), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "llmlab", *args], capture_output=True, text=True,
                          timeout=900, env=env)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One real run, as a user types it: two models, two prompt lengths, two repeats."""
    out = tmp_path_factory.mktemp("bench") / "out"
    r = llmlab("bench", "-m", "smollm2", "-m", "gemma3-270m", "--prompt-lengths", ",".join(map(str, LENGTHS)),
               "--repeats", "2", "--new-tokens", "6", "--threads", "1", "--out", str(out),
               db=out.parent / "db.sqlite")
    assert r.returncode == 0, r.stderr
    return r, out, json.loads((out / "results.json").read_text())


def test_cli_prints_a_table_and_writes_results_and_chart(cli_run):
    r, out, data = cli_run
    assert "llamacpp/smollm2" in r.stdout and "llamacpp/gemma3-270m" in r.stdout
    assert "TTFT ms" in r.stdout and "prefill tok/s" in r.stdout and "peak RSS MB" in r.stdout
    assert "$ per 1k examples" in r.stdout and "$ per 1M tokens" in r.stdout
    assert "cost of one example" in r.stdout
    assert {p.name for p in out.iterdir()} == {"results.json", "results.csv", "bench.png"}
    assert data["settings"]["lengths"] == LENGTHS and data["settings"]["repeats"] == 2
    assert (out / "results.csv").read_text().count("\n") == 1 + 2 * len(LENGTHS)  # header + model x length
    # which CPU path llama.cpp took is said and recorded; --threads reached every llama.cpp context
    assert "extra buffer types" in r.stderr and "llama.cpp" in r.stderr
    assert data["settings"]["machine"]["llama_cpp"]["llama_cpp"]
    assert all(run["runtime"]["n_threads"] == 1 for run in data["runs"])


def test_each_model_and_repeat_runs_in_its_own_process(cli_run):
    runs = cli_run[2]["runs"]
    assert [(r["model"], r["repeat"]) for r in runs] == [
        ("llamacpp/smollm2", 1), ("llamacpp/gemma3-270m", 1), ("llamacpp/smollm2", 2),
        ("llamacpp/gemma3-270m", 2)]
    for r in runs:
        # a fresh interpreter: tens of MB before the load, not the hundreds of a process with a model
        assert r["rss_before_load"] < 150e6 < r["rss_after_load"]
        assert r["load_s"] > 0
        # the psutil samples from outside agree with the kernel's high-water mark from inside
        assert 0.9 * r["maxrss_kernel"] <= r["peak_rss_sampled"] <= 1.1 * r["maxrss_kernel"]
        assert r["peak_rss"] >= r["rss_after_load"]
    smollm2, gemma = runs[0], runs[1]
    # measured apart, each model's memory is its own: Gemma's weights are in its RSS, not SmolLM2's
    assert gemma["info"]["file_size"] > smollm2["info"]["file_size"]
    assert gemma["rss_after_load"] - gemma["rss_before_load"] > gemma["info"]["file_size"] * 0.5


def test_prompts_have_the_requested_length_and_timings_are_consistent(cli_run):
    for r in cli_run[2]["runs"]:
        assert [m["length"] for m in r["measurements"]] == LENGTHS
        for m in r["measurements"]:
            assert m["prompt_tokens"] == m["length"]
            assert 0 < m["ttft_s"] <= m["total_s"]
            assert m["prefill_tps"] == pytest.approx(m["prompt_tokens"] / m["ttft_s"])
            if m["completion_tokens"] > 1:
                assert m["decode_tps"] > 0


def test_summary_is_the_median_and_spread_of_the_repeats(cli_run):
    data = cli_run[2]
    rows = data["summary"]
    assert [(r["model"], r["length"]) for r in rows] == [
        ("llamacpp/smollm2", 8), ("llamacpp/smollm2", 40), ("llamacpp/gemma3-270m", 8),
        ("llamacpp/gemma3-270m", 40)]
    for row in rows:
        mine = [r for r in data["runs"] if r["model"] == row["model"]]
        for key in ("ttft_s", "prefill_tps", "decode_tps"):
            raw = [m[key] for r in mine for m in r["measurements"] if m["length"] == row["length"]]
            raw = [v for v in raw if v is not None]
            assert row[key]["median"] == pytest.approx(statistics.median(raw))
            assert (row[key]["low"], row[key]["high"]) == (min(raw), max(raw))
        loads = [r["load_s"] for r in mine]
        assert row["load_s"]["median"] == pytest.approx(statistics.median(loads))
        assert row["peak_rss"]["values"] == [r["peak_rss"] for r in mine]


def test_chart_is_a_png(cli_run):
    import matplotlib.image

    path = cli_run[1] / "bench.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = matplotlib.image.imread(path).shape
    assert width > 800 and height > 600


def test_parse_lengths():
    assert parse_lengths("16, 128,512") == [16, 128, 512]
    for bad in ("16,abc", "0", "", "16,,32", "-4"):
        with pytest.raises(ConfigError, match="--prompt-lengths"):
            parse_lengths(bad)


def test_bad_options_fail_before_any_process_starts():
    with pytest.raises(ModelNotFoundError, match="did you mean 'smollm2'"):
        run_bench(["smolm2"], [8], repeats=1)
    with pytest.raises(ConfigError, match="repeats"):
        run_bench(["smollm2"], [8], repeats=0)
    with pytest.raises(ConfigError, match="threads"):
        run_bench(["smollm2"], [8], repeats=1, threads=0)
    with pytest.raises(ConfigError, match="does not fit"):
        run_bench(["smollm2"], [100], repeats=1, new_tokens=32, n_ctx=64)


@pytest.mark.parametrize("args,message", [
    (["--prompt-lengths", "16,abc"], "--prompt-lengths must be whole numbers"),
    (["--repeats", "0"], "--repeats must be a whole number >= 1"),
    (["--threads", "0"], "--threads (n_threads) must be a whole number >= 1"),
    (["-m", "smolm2"], "did you mean 'smollm2'"),
    (["--prompt-lengths", "100000", "--repeats", "1"], "use shorter --prompt-lengths or fewer --new-tokens"),
])
def test_cli_bad_input_is_one_clear_line(tmp_path, args, message):
    r = llmlab("bench", *args, db=tmp_path / "db.sqlite")
    assert r.returncode == 1
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_the_transformers_backend_is_measured_too():
    pytest.importorskip("torch", reason="the hf extra is not installed")
    result = run_bench(["hf/smollm2"], [8], repeats=1, new_tokens=4)
    (row,) = result.rows
    assert (row["model"], row["backend"]) == ("hf/smollm2", "hf")
    assert row["prompt_tokens"].median == 8 and row["ttft_s"].median > 0 and row["peak_rss"].median > 100e6


def test_the_benchmark_is_a_run_that_is_listed_and_reopened(cli_run):
    r, out, _ = cli_run
    db = out.parent / "db.sqlite"
    listed = llmlab("runs", "--kind", "bench", db=db)
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if " bench " in line)
    assert "llamacpp/smollm2" not in line and "smollm2, gemma3-270m" in line  # the names as given
    assert "4/4" in line and "finished" in line
    shown = llmlab("runs", "show", "1", db=db)  # the same table, nothing measured again
    assert shown.returncode == 0, shown.stderr

    def table(text):  # the notes under it name the price table, as it is today
        return text[:text.rindex("└")]
    assert table(shown.stdout) == table(r.stdout) and "not when it ran" in shown.stdout
