"""Multiple-choice benchmarks scored as lm-evaluation-harness scores them, checked against the
harness itself (``lm-eval`` from PyPI) on the same files and the same model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from llmlab.benchmarks import BENCHMARKS, load_items, run_benchmark, sample_file
from llmlab.benchmarks.harness import prefix
from llmlab.errors import ConfigError, DataError

ZERO_SHOT = [(b, 0) for b in BENCHMARKS]
FEW_SHOT = [("arc", 2), ("mmlu", 2), ("winogrande", 1)]  # MMLU: examples of the same subject
LIMIT = 3  # items per task: enough for every code path, cheap enough to run the harness every time


def _task(benchmark: str, shots: int) -> str:
    return f"ref_{benchmark.replace('-', '_')}_{shots}shot"


def _data(benchmark: str, shots: int, folder):
    """The sample; few-shot MMLU on one subject (the harness's tasks are one subject each)."""
    if benchmark != "mmlu" or not shots:
        return sample_file(benchmark)
    rows = [json.loads(line) for line in sample_file("mmlu").read_text().splitlines()]
    path = folder / "mmlu_astronomy.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows if r["subject"] == "astronomy"))
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """lm-eval's HF backend on the bundled SmolLM2 (its GGUF dequantized to float32, as hf/smollm2
    loads it), over every format zero-shot and three few-shot."""
    from llmlab.benchmarks.reference import run_lmeval, task_yaml
    from llmlab.models.registry import BUNDLED

    folder = tmp_path_factory.mktemp("lmeval")
    names, data = [], {}
    for benchmark, shots in ZERO_SHOT + FEW_SHOT:
        data[benchmark, shots] = _data(benchmark, shots, folder)
        names.append(_task(benchmark, shots))
        task_yaml(benchmark, data[benchmark, shots], names[-1], folder, shots)
    gguf = BUNDLED["smollm2"].path()
    args = f"pretrained={gguf.parent},gguf_file={gguf.name},dtype=float32,device=cpu"
    return run_lmeval("hf", args, folder, names, limit=LIMIT), data


@pytest.mark.parametrize("benchmark,shots", ZERO_SHOT + FEW_SHOT)
def test_agrees_with_lm_eval(benchmark, shots, reference, hf_smollm2, store):
    """The same prompts, per-item log-likelihoods within 1e-4, the same final scores."""
    ref_all, data = reference
    ref = ref_all[_task(benchmark, shots)]
    items = load_items(data[benchmark, shots], benchmark, limit=LIMIT)
    pool = load_items(data[benchmark, shots], benchmark)
    assert [i.requests(prefix(i, pool, shots, True)) for i in items] == ref["requests"]

    result = run_benchmark(data[benchmark, shots], benchmark, [hf_smollm2], num_fewshot=shots, limit=LIMIT,
                           db=store)
    run = result.runs[0]
    ours = [item["lls"] for item in run.items]
    assert len(ours) == len(ref["lls"]) == LIMIT
    worst = max(abs(a - b) for x, y in zip(ours, ref["lls"], strict=True) for a, b in zip(x, y, strict=True))
    assert worst < 1e-4, worst
    for metric, fig in run.summary["metrics"].items():
        if benchmark == "truthfulqa-mc2":
            # a probability mass computed from the log-likelihoods: it differs as they do (float32 on
            # a KV cache vs whole sequences), far below any reported digit
            assert fig["value"] == pytest.approx(ref["metrics"][metric], abs=1e-5)
        else:
            assert fig["value"] == ref["metrics"][metric], metric
        assert fig["stderr"] == pytest.approx(ref["metrics"][f"{metric}_stderr"], abs=1e-5)


def test_every_format_on_its_sample(smollm2, store):
    """Each sample loads and scores on the GGUF model; the metrics are the harness's per format."""
    shown = {}
    for benchmark in BENCHMARKS:
        result = run_benchmark(None, benchmark, [smollm2], db=store)
        run = result.runs[0]
        assert run.summary["n"] == len(load_items(sample_file(benchmark), benchmark)) >= 6
        shown[benchmark] = set(run.summary["metrics"])
        for item in run.items:
            assert len(item["lls"]) >= 2 and all(v < 0 for v in item["lls"])
            assert item["pred"] == max(range(len(item["lls"])), key=item["lls"].__getitem__)
        assert "sample written for llmlab" in result.notes[0]
    assert shown["arc"] == shown["hellaswag"] == {"acc", "acc_norm"}
    assert shown["mmlu"] == shown["winogrande"] == shown["truthfulqa-mc2"] == {"acc"}


def test_mc2_is_the_probability_mass_of_true_answers(smollm2, store):
    import numpy as np

    run = run_benchmark(None, "truthfulqa-mc2", [smollm2], db=store).runs[0]
    items = load_items(sample_file("truthfulqa-mc2"), "truthfulqa-mc2")
    for item, got in zip(items, run.items, strict=True):
        p = np.exp(np.array(got["lls"]))
        assert got["acc"] == pytest.approx(p[np.array(item.truth) == 1].sum() / p.sum(), rel=1e-9)


def test_a_run_resumes_and_reopens(smollm2, store, tmp_path):
    first = run_benchmark(None, "winogrande", [smollm2], db=store, limit=3)
    again = run_benchmark(None, "winogrande", [smollm2], db=store, limit=3)
    assert again.runs[0].resumed == 3 and again.runs[0].run_id == first.runs[0].run_id
    assert again.runs[0].summary == first.runs[0].summary
    from llmlab.runs.reopen import show

    text = show(store, [first.runs[0].run_id], "markdown")
    assert "winogrande" in text and f"{first.runs[0].summary['metrics']['acc']['value']:.4f}" in text


def test_another_layout_through_field_mapping(smollm2, store, tmp_path):
    flat = tmp_path / "quiz.jsonl"
    rows = [json.loads(line) for line in sample_file("arc").read_text().splitlines()]
    flat.write_text("".join(json.dumps({"q": r["question"], "options": r["choices"]["text"],
                                        "correct": r["choices"]["text"].index(
                                            r["choices"]["text"][r["choices"]["label"].index(r["answerKey"])])})
                            + "\n" for r in rows))
    mapped = run_benchmark(flat, "arc", [smollm2], db=store,
                           fields={"question": "q", "choices": "options", "answer": "correct"}).runs[0]
    native = run_benchmark(None, "arc", [smollm2], db=store).runs[0]
    assert [i["lls"] for i in mapped.items] == [i["lls"] for i in native.items]


def test_parquet_with_nested_fields(tmp_path):
    import pandas as pd

    rows = [json.loads(line) for line in sample_file("arc").read_text().splitlines()]
    pd.DataFrame(rows).to_parquet(tmp_path / "arc.parquet")
    from_parquet = load_items(tmp_path / "arc.parquet", "arc")
    assert [(i.query, i.choices, i.gold) for i in from_parquet] == \
        [(i.query, i.choices, i.gold) for i in load_items(sample_file("arc"), "arc")]


@pytest.mark.parametrize("content,benchmark,message", [
    ('{"question": "Q?", "choices": {"text": ["a", "b"]}, "answerKey": "A"}\n{oops\n', "arc",
     "arc.jsonl line 2 is not valid JSON"),
    ('{"question": "Q?", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "E"}\n', "arc",
     "answer 'E' names none of the 2 choices"),
    ('{"prompt": "Q?", "choices": {"text": ["a", "b"]}, "answerKey": "A"}\n', "arc",
     "no field 'question' for arc's question (map it with --field question=COLUMN)"),
    ('{"sentence": "No blank here.", "option1": "a", "option2": "b", "answer": "1"}\n', "winogrande",
     "has a blank '_' to fill, this one has none"),
    ('{"question": "Q?", "mc1_targets": {"choices": ["a", "b"], "labels": [0, 0]}}\n', "truthfulqa-mc1",
     "at least one 1"),
    ('', "arc", "no rows"),
])
def test_bad_files_fail_in_one_line(tmp_path, content, benchmark, message):
    path = tmp_path / "arc.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=".*") as info:
        load_items(path, benchmark)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_option_errors(tmp_path, store, smollm2):
    with pytest.raises(ConfigError, match="takes no --num-fewshot"):
        run_benchmark(None, "truthfulqa-mc1", [smollm2], num_fewshot=1, db=store)
    with pytest.raises(DataError, match="unknown benchmark 'arc-easy'"):
        run_benchmark(None, "arc-easy", [smollm2], db=store)
    with pytest.raises(DataError, match="9-shot needs 9 examples of subject elementary_mathematics besides "
                       "the item, the few-shot pool has 4"):
        run_benchmark(None, "mmlu", [smollm2], num_fewshot=9, db=store)
    with pytest.raises(DataError, match="arc has no field prompt"):
        load_items(sample_file("arc"), "arc", {"prompt": "q"})


def test_cli(tmp_path):
    env = {**os.environ, "LLMLAB_HOME": str(tmp_path), "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "llmlab", "eval", str(sample_file("winogrande")), "--benchmark",
                        "winogrande", "-m", "smollm2", "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "winogrande" in r.stdout and "acc" in r.stdout and "stored as runs" in r.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["runs"][0]["n"] == 8 and 0 <= report["runs"][0]["metrics"]["acc"]["value"] <= 1
    bad = subprocess.run([sys.executable, "-m", "llmlab", "eval", "--benchmark", "arc", "--method",
                          "generate"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode != 0 and "--method do not apply to --benchmark" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
