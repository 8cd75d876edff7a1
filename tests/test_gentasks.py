"""Generation tasks: metrics equal the reference libraries' own calls, pass@k runs real code in a child
Python, an LLM judge is held against human scores and judges pairs in both orders, runs resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from llmlab.errors import DataError, TaskError
from llmlab.gentasks import load, pass_at_k, run_gentask
from llmlab.gentasks.execution import program, run_program
from llmlab.gentasks.judge import PairJudge, combine, pairwise_summary, parse_choice, parse_score
from llmlab.gentasks.spec import Rubric, read_rows


def test_metrics_are_the_reference_libraries_own():
    import sacrebleu
    from rouge_score import rouge_scorer
    from torchmetrics.functional.text import squad

    from llmlab.gentasks.metrics import aggregate, row_scores

    hyps = ["The cat sat on the mat.", "Dogs were running in the park", "It rains today"]
    refs = [["A cat sat on the mat.", "The cat was on the mat."], ["The dogs ran in the park."],
            ["Today it is raining.", "It rains today."]]
    names = ("rouge1", "rouge2", "rougeL", "exact_match", "f1")
    rows = [{"output": h, "references": r, "scores": row_scores(names, h, r)}
            for h, r in zip(hyps, refs, strict=True)]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for row, h, r in zip(rows, hyps, refs, strict=True):
        for t in ("rouge1", "rouge2", "rougeL"):
            assert row["scores"][t] == max(scorer.score(x, h)[t].fmeasure for x in r)
        got = squad({"prediction_text": h, "id": "q"},
                    {"answers": {"text": r, "answer_start": [0] * len(r)}, "id": "q"})
        assert row["scores"]["exact_match"] == float(got["exact_match"]) / 100
        assert row["scores"]["f1"] == pytest.approx(float(got["f1"]) / 100)
    streams = [[r[0] for r in refs], [r[1] if len(r) > 1 else "" for r in refs]]
    assert aggregate("chrf", rows)["value"] == sacrebleu.corpus_chrf(hyps, streams).score
    assert aggregate("bleu", rows)["value"] == sacrebleu.corpus_bleu(hyps, streams).score
    fig = aggregate("rougeL", rows)
    assert fig["low"] <= fig["value"] <= fig["high"] and fig["n"] == 3
    assert rows[2]["scores"]["exact_match"] == 1.0  # one of several references is enough


def test_pass_at_k_is_the_papers_estimator():
    import numpy as np

    def paper(n, c, k):  # Chen et al. (2021), figure 3
        if n - c < k:
            return 1.0
        return 1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1))

    for n in (1, 5, 10, 20):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(paper(n, c, k), abs=1e-12)


def test_completions_run_in_a_child_python():
    problem = next(r.values for r in read_rows(load("code")) if r.id == "llmlab/0")
    assert run_program(program(problem, problem["canonical_solution"]))["status"] == "passed"
    wrong = run_program(program(problem, "    return a - b\n"))
    assert wrong["status"] == "failed" and "AssertionError" in wrong["error"]
    loops = run_program(program(problem, "    while True:\n        pass\n"), timeout=1)
    assert loops["status"] == "timed out"
    net = run_program(program(problem, "    import socket\n    socket.create_connection(('127.0.0.1', 80))\n"
                                       "    return a + b\n"))
    assert net["status"] == "failed" and "network access is disabled" in net["error"]
    # a chat model's fenced answer that defines the function itself
    fenced = "Here it is:\n```python\ndef add(a, b):\n    return a + b\n```\n"
    assert run_program(program(problem, fenced))["status"] == "passed"


def test_code_task_pass_at_k(smollm2, store):
    task = replace(load("code"), generation={**load("code").generation, "samples": 2, "max_new_tokens": 32},
                   metrics=("pass@1", "pass@2"))
    run = run_gentask(None, task, [smollm2], db=store, limit=1).runs[0]
    assert len(run.items[0]["samples"]) == len(run.items[0]["passed"]) == 2
    for k in (1, 2):
        expected = pass_at_k(2, sum(run.items[0]["passed"]), k)
        assert run.summary["metrics"][f"pass@{k}"]["value"] == pytest.approx(expected)


def test_summarise_rouge_chrf_resume_and_reopen(smollm2, store):
    import sacrebleu
    from rouge_score import rouge_scorer

    from llmlab.runs.reopen import show

    first = run_gentask(None, "summarise", [smollm2], db=store, limit=2)
    run = first.runs[0]
    assert [i["id"] for i in run.items] == ["s1", "s2"] and all(i["output"].strip() for i in run.items)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rouge_l = sum(scorer.score(i["references"][0], i["output"])["rougeL"].fmeasure for i in run.items) / 2
    assert run.summary["metrics"]["rougeL"]["value"] == pytest.approx(rouge_l)
    chrf = sacrebleu.corpus_chrf([i["output"] for i in run.items], [[i["references"][0] for i in run.items]])
    assert run.summary["metrics"]["chrf"]["value"] == chrf.score
    again = run_gentask(None, "summarise", [smollm2], db=store, limit=2)
    assert again.runs[0].resumed == 2 and again.runs[0].run_id == run.run_id
    assert again.runs[0].summary == run.summary
    text = show(store, [run.run_id], "markdown")
    assert "rougeL" in text and f"{run.summary['metrics']['chrf']['value']:.2f}" in text


def test_qa_exact_match_and_f1(gemma, store):
    run = run_gentask(None, "qa", [gemma], db=store, limit=2).runs[0]  # a base model: raw prompts
    for item in run.items:
        assert 0 <= item["scores"]["f1"] <= 1 and item["scores"]["exact_match"] in (0.0, 1.0)
    mean_f1 = sum(i["scores"]["f1"] for i in run.items) / 2
    assert run.summary["metrics"]["f1"]["value"] == pytest.approx(mean_f1)


def test_judge_scores_and_agreement_with_people(smollm2, store, tmp_path):
    import numpy as np
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    sample = load("summarise").labelled.read_text().splitlines()
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("\n".join(sample[:4]) + "\n")  # four outputs with human scores 5, 2, 5, 1
    run = run_gentask(None, "summarise", [smollm2], judge=smollm2, labelled=labelled, db=store,
                      limit=1).runs[0]
    verdicts = [i["judge"] for i in run.items] + run.labelled
    assert len(run.labelled) == 4 and all(v["reply"] is not None for v in verdicts)
    assert all(v["score"] is None or 1 <= v["score"] <= 5 for v in verdicts)
    a = run.summary["agreement"]
    pairs = [(v["human"], v["score"]) for v in run.labelled if v["score"] is not None]
    assert a["n"] == 4 and a["scored"] == len(pairs) and a["unparsed"] == 4 - len(pairs)
    j = run.summary["judge"]
    assert j["scored"] + j["unparsed"] == 1
    if len(pairs) > 2 and len({p[0] for p in pairs}) > 1 and len({p[1] for p in pairs}) > 1:
        h, s = np.array(pairs).T
        assert a["exact"] == np.mean(h == s)
        kappa = cohen_kappa_score(h, s, labels=[1, 2, 3, 4, 5], weights="quadratic")
        assert a["kappa"] == pytest.approx(kappa)
        assert a["spearman"] == pytest.approx(spearmanr(h, s).statistic)


def test_agreement_figures_on_known_scores():
    from llmlab.gentasks.judge import agreement

    a = agreement([5, 4, None, 1, 2], [5, 5, 3, 1, 2], Rubric("x"))
    assert (a["n"], a["scored"], a["unparsed"], a["exact"]) == (5, 4, 1, 0.75)
    assert 0.8 < a["kappa"] <= 1 and 0.8 < a["spearman"] <= 1


def test_verdicts_parse_strictly():
    r = Rubric("x", 1, 5)
    replies = ["5", "Score: 2", "2/5", "Rating: 6", "It has three points", ""]
    assert [parse_score(x, r) for x in replies] == [5, 2, 2, None, None, None]
    assert [parse_choice(x) for x in ["B", "Response A.", "tie", "neither"]] == ["B", "A", "tie", None]


class FakeJudge:
    """A fake judge model (unit level only): always prefers the first position, or always one text."""

    chats, backend = True, "fake"

    def __init__(self, prefer: str | None = None):
        self.prefer = prefer
        self.info = type("Info", (), {"name": f"prefers-{prefer or 'first'}"})

    def generate(self, prompt, config):
        text = prompt[-1].content
        a = text.split("Response A:\n")[1].split("\n\nResponse B:")[0]
        reply = "A" if self.prefer is None or a == self.prefer else "B"
        return type("Response", (), {"text": reply})


def test_pairwise_counts_a_verdict_only_when_both_orders_agree():
    task = load("summarise")
    biased = PairJudge(FakeJudge(), task).compare({"text": "t"}, ["r"], "one", "two")
    assert biased["winner"] is None and biased["position_bias"] and biased["parsed"]
    fair = PairJudge(FakeJudge(prefer="two"), task).compare({"text": "t"}, ["r"], "one", "two")
    assert fair["winner"] == "b" and not fair["position_bias"]
    s = pairwise_summary([biased, fair, combine(None, "A"), combine("tie", "tie")])
    assert (s["a_wins"], s["b_wins"], s["ties"], s["inconsistent"], s["unparsed"]) == (0, 1, 1, 1, 1)
    assert s["position_bias_rate"] == pytest.approx(1 / 3)


def test_pairwise_run_judges_both_orders(smollm2, gemma, store):
    task = replace(load("translate"), generation={"max_new_tokens": 16, "stop": ["\n"]})
    result = run_gentask(None, task, [smollm2, gemma], judge=smollm2, pairwise=True, db=store, limit=1)
    pair = result.pairwise
    assert pair is not None and len(pair.results) == 1
    for v in pair.results.values():
        assert v["reply_ab"] is not None and v["reply_ba"] is not None
        assert v["winner"] is None or v["choice_ab"] is not None
    s = pair.summary
    assert s["a_wins"] + s["b_wins"] + s["ties"] + s["inconsistent"] + s["unparsed"] == 1
    assert "position bias" in result.to_markdown()


def test_bad_task_files_and_data_are_one_line(tmp_path):
    head = "name: x\ntype: generation\n"
    cases = {
        head + "prompt: '{{ text }}'\nreference: r\nmetrcs: [chrf]\n": "unknown key 'metrcs'",
        "name: x\nprompt: '{{ text }}'\n": "type: generation",
        head + "prompt: '{{ text }}'\nreference: r\nmetrics: [rouge3]\n": "unknown metric",
        head + "format: humaneval\nmetrics: [pass@5]\n": "pass@5 needs at least 5 samples",
        head + "prompt: '{{ text '\nreference: r\n": "line 3",
        head + "prompt: '{{ text }}'\nmetrics: [bleu]\n": "need `reference:`",
    }
    for n, (text, words) in enumerate(cases.items()):
        path = tmp_path / f"t{n}.yaml"
        path.write_text(text)
        with pytest.raises(TaskError) as exc:
            load(path)
        assert words in str(exc.value) and "\n" not in str(exc.value) and str(path) in str(exc.value)
    data = tmp_path / "d.csv"
    data.write_text("id,text,summary\n1,hello,hi\n")
    with pytest.raises(DataError, match="no column 'english'"):
        read_rows(load("translate"), data)
    data.write_text("id,english,french\n1,hello,\n")
    with pytest.raises(DataError, match="row 1 has no reference"):
        read_rows(load("translate"), data)


def llmlab(*args, home):
    env = {**os.environ, "LLMLAB_HOME": str(home), "LLMLAB_DB": str(home / "gen.db"), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "llmlab", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)


def test_cli_runs_a_user_task_file(tmp_path):
    task = tmp_path / "greet.yaml"
    task.write_text("name: greet\ntype: generation\nprompt: 'Say hello to {{ who }} in French.'\n"
                    "reference: answer\ngeneration: {max_new_tokens: 12, stop: [\"\\n\"]}\n"
                    "metrics: [rougeL, chrf]\n")
    data = tmp_path / "people.csv"
    data.write_text("who,answer\nMarie,Bonjour Marie|Salut Marie\nPaul,Bonjour Paul\n")
    r = llmlab("eval", data, "--task", task, "-m", "smollm2", "--out", tmp_path / "out", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "rougeL" in r.stdout and "chrf" in r.stdout and "stored as runs" in r.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["runs"][0]["n"] == 2
    lines = (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["references"] == ["Bonjour Marie", "Salut Marie"]
    run_id = report["runs"][0]["run_id"]
    shown = llmlab("runs", "show", run_id, home=tmp_path)
    assert shown.returncode == 0 and "rougeL" in shown.stdout
    wrong = llmlab("eval", data, "--task", "sentiment", "--judge", "smollm2", home=tmp_path)
    assert wrong.returncode == 1 and "--judge go with a generation task" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1
