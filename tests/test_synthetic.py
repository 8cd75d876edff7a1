"""llmlab generate-data: the bundled SmolLM2 writes sentiment examples; MiniLM finds the duplicates.

One small run (6 rows, at most 40 new tokens each) is shared by the tests that read its file; the CLI test
continues that file to 7 rows in a child process. The fakes below stand in for a model only to drive
the filter and the CSV writer with texts chosen by hand; they are named as fakes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from llmlab.errors import ConfigError, DataError, TaskError
from llmlab.evals.data import load_dataset
from llmlab.tasks import load_task
from llmlab.tune.filters import check_text, clean, deduplicate
from llmlab.tune.synthetic import FIELDS, build_prompt, generate_data, rejects_path

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def minilm():
    from llmlab.models.embedders import load_embedder

    return load_embedder("minilm")


@pytest.fixture(scope="module")
def generated(smollm2, minilm, tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "sentiment.jsonl"
    report = generate_data("sentiment", 6, smollm2, out, max_new_tokens=40, embedder=minilm, seed=0)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return SimpleNamespace(out=out, report=report, rows=rows)


# --- the run with the bundled model ---------------------------------------------------------------


def test_six_rows_balanced_with_provenance(generated):
    report, rows = generated.report, generated.rows
    assert report.reached and len(rows) == 6
    assert Counter(r["label"] for r in rows) == {"positive": 2, "negative": 2, "neutral": 2}
    assert dict(report.kept) == {"positive": 2, "negative": 2, "neutral": 2}
    assert report.attempts == 6 + sum(sum(c.values()) for c in report.rejected.values())
    for row in rows:
        assert list(row) == list(FIELDS)
        assert row["text"].strip() and row["model"] == "llamacpp/smollm2" and row["task"] == "sentiment"
        assert row["label"] in row["prompt"] and "Write one new short text" in row["prompt"]
        assert row["seed"] == row["id"] and row["temperature"] == 0.8 and row["max_new_tokens"] == 40
        assert row["created"].endswith("+00:00") and row["llmlab_version"]
    assert len({r["text"] for r in rows}) == 6
    print("\n" + "\n".join(f"{r['label']:>8}: {r['text']}" for r in rows))
    print(f"rejected: {report.to_dict()['rejected']}")


def test_the_file_loads_for_eval(generated):
    data = load_dataset(generated.out, load_task("sentiment"))
    assert len(data) == 6 and data.text_col == "text" and data.label_col == "label"
    assert list(data.frame["gold"]) == [r["label"] for r in generated.rows]
    rejected = rejects_path(generated.out)
    if rejected.exists():  # every rejected attempt says why, and keeps what the model wrote
        for line in rejected.read_text().splitlines():
            row = json.loads(line)
            assert row["reason"] and "raw" in row


def test_cli_resumes_to_a_larger_n(generated, tmp_path):
    out = tmp_path / "more.jsonl"
    shutil.copy(generated.out, out)
    if rejects_path(generated.out).exists():
        shutil.copy(rejects_path(generated.out), rejects_path(out))
    before = out.read_text()
    proc = _cli("--task", "sentiment", "--n", "7", "-m", "smollm2", "--out", str(out),
                "--max-new-tokens", "40", home=tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    assert "6 rows were already there" in proc.stdout
    after = out.read_text()
    assert after.startswith(before)  # nothing re-generated or rewritten
    rows = [json.loads(line) for line in after.splitlines()]
    assert len(rows) == 7 and rows[6]["label"] == "positive"  # the fewest kept, first in task order
    assert rows[6]["id"] > max(r["id"] for r in generated.rows)  # a seed not used before


# --- filters, with the real prompt and MiniLM --------------------------------------------------------


def test_near_and_exact_duplicates(minilm):
    texts = ["The film was wonderful and I loved every minute of it.",
             "The movie was wonderful, and I loved every single minute of it.",
             "THE FILM WAS WONDERFUL AND I LOVED EVERY MINUTE OF IT!",
             "Shares in the bank fell eight percent after weak quarterly profits.",
             "The plot made no sense and I kept checking my watch."]
    assert deduplicate(texts, minilm) == [None, ("near duplicate", 0), ("exact duplicate", 0), None, None]
    assert deduplicate(texts[:2], minilm, threshold=0.999) == [None, None]


def test_a_copy_of_the_instruction_is_rejected(smollm2):
    task = load_task("sentiment")
    _, shown = build_prompt(smollm2, task, "negative")
    copy = 'Write one new short text (one or two sentences) that a reader would label "negative".'
    assert copy in shown
    assert check_text(copy, shown) == "copies the prompt"
    assert check_text("The plot made no sense and I kept checking my watch.", shown) is None
    assert check_text("I'm sorry, but I can't write that.", shown) == "refusal"
    assert check_text("Bad.", shown) == "too short"
    assert check_text("Please provide the text that needs editing.", shown) == "talks to the user"
    partial = 'Task: The sentiment of a short text, such as a review of a product, is "negative".'
    assert check_text(partial.removeprefix("Task: "), shown) == "copies the prompt"


def test_the_label_check_labels_like_eval(smollm2):
    from llmlab.tune.synthetic import _label_checker

    task = load_task("sentiment")
    check = _label_checker("few-shot:score", smollm2, task)
    assert check("The plot made no sense and I kept checking my watch.") in task.labels
    with pytest.raises(ConfigError, match="batch-calibrate"):
        _label_checker("batch-calibrate", smollm2, task)


def test_clean_takes_the_text_out_of_its_wrapping():
    assert clean('Here\'s a new short text that has a positive sentiment: "The review was helpful."') \
        == "The review was helpful."
    assert clean("Here's an example:\n\nWarm and funny.\n\nThe sentiment is positive.") == "Warm and funny."
    assert clean("A slow start. Then it soars and never comes", cut_off=True) == "A slow start."
    assert clean("A slow start and then it soars", cut_off=True) == ""
    whole = "A slow start. Then it soars and never comes"
    assert clean(whole) == whole


class EchoFake:
    """A fake model that answers with its own prompt: every answer copies the instruction."""

    backend, chats, info = "fake", True, SimpleNamespace(name="echo")

    def prompt(self, prompt, config):
        return _Done(prompt[0].content)


class ListFake(EchoFake):
    """A fake model that answers with the next of a list of texts."""

    info = SimpleNamespace(name="list")

    def __init__(self, texts):
        self.texts = list(texts)

    def prompt(self, prompt, config):
        return _Done(self.texts.pop(0))


class _Done(SimpleNamespace):
    def __init__(self, text):
        super().__init__(text=text, finish_reason="stop")

    def complete(self):
        return self


def test_copies_are_rejected_and_the_cap_is_reported(minilm, tmp_path):
    out = tmp_path / "echo.jsonl"
    report = generate_data("sentiment", 2, EchoFake(), out, embedder=minilm, max_attempts=3)
    assert not report.reached and report.attempts == 3 and report.total == 0
    assert {k: sum(c.values()) for k, c in report.rejected.items()} == {"positive": 1, "negative": 1,
                                                                          "neutral": 1}
    reasons = [json.loads(line)["reason"] for line in rejects_path(out).read_text().splitlines()]
    assert reasons == ["copies the prompt"] * 3


def test_csv_output_drops_duplicates_and_loads(minilm, tmp_path):
    # balanced: positive, negative (a copy: rejected), then neutral (fewer tries), negative, positive
    texts = ["A warm, funny film with a big heart.", "A WARM, FUNNY FILM WITH A BIG HEART!",
             "It follows a family over three generations.", "Flat characters and clumsy dialogue spoil it.",
             "Sure! Here is a positive review: \"I finished it in one sitting and loved it.\""]
    out = tmp_path / "rows.csv"
    report = generate_data("sentiment", 4, ListFake(texts), out, embedder=minilm)
    assert report.reached and report.attempts == 5
    assert report.rejected == {"negative": Counter({"exact duplicate": 1})}
    data = load_dataset(out, load_task("sentiment"))
    assert list(data.frame["gold"]) == ["positive", "neutral", "negative", "positive"]
    assert data.frame["text"].iloc[3] == "I finished it in one sitting and loved it."


# --- bad input ---------------------------------------------------------------------------------------


def test_bad_input_in_python(minilm, tmp_path):
    with pytest.raises(ConfigError, match="--n must be a whole number"):
        generate_data("sentiment", 0, EchoFake(), tmp_path / "x.jsonl", embedder=minilm)
    with pytest.raises(TaskError, match="unknown task"):
        generate_data("sentimnet", 2, EchoFake(), tmp_path / "x.jsonl", embedder=minilm)
    with pytest.raises(ConfigError, match="temperature above 0"):
        generate_data("sentiment", 2, EchoFake(), tmp_path / "x.jsonl", temperature=0, embedder=minilm)
    (tmp_path / "theirs.jsonl").write_text('{"text": "mine", "label": "positive"}\n')
    with pytest.raises(DataError, match="not written by generate-data"):
        generate_data("sentiment", 2, EchoFake(), tmp_path / "theirs.jsonl", embedder=minilm)


@pytest.mark.parametrize("args, words", [
    (["--task", "sentimnet", "--n", "3"], "unknown task 'sentimnet' (did you mean 'sentiment'?)"),
    (["--task", "sentiment", "--n", "0"], "--n must be a whole number >= 1, got 0"),
    (["--task", "sentiment", "--n", "3", "--out", "{tmp}/file.txt/out.jsonl"], "cannot make its folder"),
    (["--task", "sentiment", "--n", "3", "--out", "{tmp}/out.txt"], "name a .jsonl or .csv file"),
])
def test_bad_input_is_one_line(args, words, tmp_path):
    (tmp_path / "file.txt").write_text("a file, not a folder")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out.jsonl")]
    proc = _cli(*args, "-m", "smollm2", home=tmp_path / "home")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmlab: error:") and words in lines[0], proc.stderr


def _cli(*args, home: Path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", "LLMLAB_HOME": str(home),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    env.pop("LLMLAB_DB", None)
    return subprocess.run([sys.executable, "-m", "llmlab", "generate-data", *args], env=env,
                          capture_output=True, text=True, timeout=300)
