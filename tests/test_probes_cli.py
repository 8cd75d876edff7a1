"""``llmlab probe`` as a user runs it (``python -m llmlab probe ...`` in a subprocess)."""

import csv
import json
import os
import subprocess
import sys

import pytest

from llmlab.store import Store


def llmlab(*args, db, timeout=900):
    env = {**os.environ, "LLMLAB_DB": str(db), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "llmlab", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """Both bundled models on a built-in suite and on a suite file a user wrote."""
    from test_probes_suites import doc_example

    tmp = tmp_path_factory.mktemp("cli")
    suite = tmp / "capitals.yaml"
    suite.write_text(doc_example())
    db, out = tmp / "probe.db", tmp / "out"
    r = llmlab("probe", "-m", "smollm2", "-m", "gemma3-270m", "--suite", "reasoning", "--suite", str(suite),
               "--limit", "1", "--samples", "1", "-n", "6", "--out", str(out), db=db)
    assert r.returncode == 0, r.stderr
    return r, db, out


def test_prints_figures_answers_and_a_summary(two_models):
    r, _, _ = two_models
    out = r.stdout
    for text in ("llamacpp/smollm2", "llamacpp/gemma3-270m", "suite reasoning", "suite capitals",
                 "How many r's are in the word strawberry?", "What is 17 + 26 - 8?", "accuracy",
                 "probe summary (headline figures)", "letter-counting", "made-up-country"):
        assert text in out, text
    assert "saved to the store" in r.stderr and "report.md" in r.stderr


def test_runs_and_answers_are_in_the_store_and_linked_to_the_call_log(two_models):
    _, db, _ = two_models
    store = Store.open(db)
    runs = store.probe_runs()
    assert sorted((x["model"], x["suite"]) for x in runs) == [
        ("llamacpp/gemma3-270m", "capitals"), ("llamacpp/gemma3-270m", "reasoning"),
        ("llamacpp/smollm2", "capitals"), ("llamacpp/smollm2", "reasoning")]
    calls = {c["id"]: c for c in store.calls(limit=None)}
    for run in runs:
        results = store.probe_results(run["id"])
        assert results and all(f["records"] for f in run["figures"] if f["headline"])
        for row in results:  # each answer is the logged response of its call (a base model's, cut)
            logged = calls[row["call_id"]]["response"]
            assert logged == row["answer"] or logged == row["detail"]["generated"]


def test_out_dir_has_every_answer_in_every_format(two_models):
    _, _, out = two_models
    data = json.loads((out / "results.json").read_text())
    answers = [rec["answer"] for run in data["runs"] for rec in run["records"]]
    assert len(data["runs"]) == 4 and len(answers) == 2 * (2 + 2)
    with (out / "results.csv").open() as fh:
        assert [row["answer"] for row in csv.DictReader(fh)] == answers
    report = (out / "report.md").read_text()
    for a in answers:  # whole, with table pipes escaped and line breaks as <br>
        assert a.replace("|", "\\|").replace("\n", "<br>") in report


def test_list_shows_the_builtin_suites(tmp_path):
    r = llmlab("probe", "--list", db=tmp_path / "db")
    assert r.returncode == 0
    for name in ("hallucination", "nondeterminism", "bias", "outdated", "reasoning", "label-flip"):
        assert name in r.stdout


def one_line_error(r, *words):
    assert r.returncode == 1, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmlab: error: "), r.stderr
    for w in words:
        assert w in lines[0]


def test_an_unknown_suite_suggests_and_lists(tmp_path):
    r = llmlab("probe", "--suite", "halucination", db=tmp_path / "db")
    one_line_error(r, "did you mean 'hallucination'?",
                   "bias, hallucination, nondeterminism, outdated, reasoning")


def test_samples_zero_is_refused(tmp_path):
    r = llmlab("probe", "--samples", "0", db=tmp_path / "db")
    one_line_error(r, "--samples must be a whole number >= 1")


def test_a_malformed_suite_file_names_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nchecks:\n  - name: a\n    judge: reference\n    measure: accuracy\n"
                   "    items:\n      - {prompt: 'q', reference: r}\n      - {prompt: 'q2', refrence: r}\n")
    one_line_error(llmlab("probe", "--suite", str(bad), db=tmp_path / "db"),
                   f"{bad}, line 8:", "unknown key 'refrence' (did you mean 'reference'?)")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\nchecks:\n  - name: a\n    items: [q\n")
    one_line_error(llmlab("probe", "--suite", str(broken), db=tmp_path / "db"), f"{broken}, line 5")


def test_an_unknown_model_fails_before_loading(tmp_path):
    one_line_error(llmlab("probe", "-m", "smolm2", "--suite", "reasoning", db=tmp_path / "db"),
                   "did you mean 'smollm2'")
    one_line_error(llmlab("probe", "--judge", "nope", "--suite", "reasoning", db=tmp_path / "db"), "nope")
