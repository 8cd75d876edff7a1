"""llmlab.evaluate end to end: the bundled models on the lesson's files, every method and strategy,
reports equal to scikit-learn's, comparisons, repeats, the baseline, a user task, bad prompts."""

from __future__ import annotations

import json
import math
import sqlite3
import textwrap

import pandas as pd
import pytest
from sklearn.metrics import classification_report

from llmlab import evaluate
from llmlab.errors import DataError
from llmlab.tasks import UNPARSED, load_task, parse_label


@pytest.fixture
def db(tmp_path):
    return tmp_path / "eval.db"


def test_every_method_on_a_lesson_file(smollm2, lesson_data, db, tmp_path):
    path = lesson_data / "sentiment_classification_dataset.csv"
    result = evaluate(path, "sentiment", [smollm2], ["score", "generate", "calibrate"], limit=6, db=db,
                      out=tmp_path / "out")
    table = result.table
    assert list(table["method"]) == ["score", "generate", "calibrate"] and set(table["n"]) == {6}
    preds = result.predictions
    assert {"id", "text", "gold", "pred", "raw", "method", "model"} <= set(preds.columns)
    assert len(preds) == 18 and set(preds["model"]) == {"llamacpp/smollm2"}
    task = load_task("sentiment")
    for name, rows in preds.groupby("system", sort=False):
        # the report is scikit-learn's, computed again from the predictions table, over the task's
        # labels that are gold or predicted (a label absent from both would only drag macro-F1 down)
        present = sorted(set(task.labels) & (set(rows["gold"]) | set(rows["pred"])))
        want = classification_report(rows["gold"], rows["pred"], labels=present,
                                     zero_division=0, output_dict=True)
        assert result.report["systems"][name]["report"] == want
        assert set(rows["pred"]) <= set(task.labels) | {UNPARSED}
    gen = preds[preds["method"] == "generate"]
    assert all(isinstance(r, str) and r for r in gen["raw"])  # the model's own words
    for raw, pred in zip(gen["raw"], gen["pred"], strict=True):
        assert pred == (parse_label(raw, task) or UNPARSED)  # never silently mapped
    assert table.loc[table["method"] == "generate", "unparsed"].item() == (gen["pred"] == UNPARSED).sum()
    scored = preds[preds["method"] == "score"]
    for raw, pred, scores in zip(scored["raw"], scored["pred"], scored["scores"], strict=True):
        values = json.loads(scores)
        assert pred == max(values, key=values.get) and "positive:" in raw
    assert len(result.comparisons) == 3 and result.comparisons["p_value"].between(0, 1).all()
    # the files a user gets
    out = tmp_path / "out"
    saved = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert len(saved) == 18 and list(saved["pred"]) == list(preds["pred"])
    assert json.loads((out / "report.json").read_text())["best"] == result.best
    assert "| system | accuracy [95% CI]" in (out / "report.md").read_text()
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_all_strategies(smollm2, lesson_data, db):
    path = lesson_data / "sentiment_film_data.tsv"
    strategies = list(load_task("sentiment").strategies)
    result = evaluate(path, "sentiment", [smollm2], ["score"], strategies, limit=2, db=db)
    assert list(result.table["strategy"]) == strategies
    # chain-of-thought generation: the Answer line is extracted from the reasoning when it is there
    cot = evaluate(path, "sentiment", [smollm2], ["generate"], "chain-of-thought", limit=2, db=db,
                   generation={"max_new_tokens": 32})
    task = load_task("sentiment")
    extract = task.strategy("chain-of-thought").extract
    for raw, pred in zip(cot.predictions["raw"], cot.predictions["pred"], strict=True):
        assert len(raw) > 20 and pred == (parse_label(raw, task, extract) or UNPARSED)


def test_a_user_written_task_file(smollm2, lesson_data, db, tmp_path):
    path = tmp_path / "news.yaml"
    path.write_text(textwrap.dedent("""
        name: news-desk
        labels:
          sport: [sports]
          money: [finance]
          government: [politics]
          showbiz: [entertainment]
          research: [science]
        instruction: Which newspaper section is this for? {{ labels_text }}?
        strategies:
          headline:
            user: "Headline: {{ text }}\\nSection:"
            continuation: "{{ label }}"
        default_strategy: headline
    """))
    result = evaluate(lesson_data / "topic_classification_dataset.csv", str(path), [smollm2],
                      ["score", "batch-calibrate"], limit=6, db=db)
    assert result.task.name == "news-desk" and set(result.dataset.frame["gold"]) == {"sport", "government"}
    assert list(result.table["strategy"]) == ["headline", "headline"]
    preds = result.predictions
    assert set(preds["pred"]) <= set(result.task.labels)
    # batch calibration: the prior is the mean label probability over these six items
    raw = [json.loads(s) for s in preds.loc[preds["method"] == "score", "scores"]]
    probs = [{k: math.exp(v) / sum(math.exp(x) for x in r.values()) for k, v in r.items()} for r in raw]
    prior = {k: sum(p[k] for p in probs) / len(probs) for k in result.task.labels}
    want = [max(p, key=lambda k: math.log(p[k]) - math.log(prior[k])) for p in probs]
    assert list(preds.loc[preds["method"] == "batch-calibrate", "pred"]) == want


def test_classify_takes_its_labels_from_the_data(smollm2, lesson_data, db):
    result = evaluate(lesson_data / "topic_classification_dataset.csv", "classify", [smollm2], "score",
                      limit=5, db=db)
    assert result.task.labels == ("entertainment", "finance", "politics", "science", "sports")
    assert any("labels taken from the dataset" in n for n in result.notes)


def test_two_models_in_one_table(smollm2, gemma, lesson_data, db):
    result = evaluate(lesson_data / "topic_classification_dataset.csv", "topic", [smollm2, gemma],
                      ["score"], limit=6, db=db)
    assert list(result.table["model"]) == ["llamacpp/smollm2", "llamacpp/gemma3-270m"]
    pair = result.comparisons.iloc[0]
    assert (pair["a"], pair["b"]) == tuple(result.table["system"])
    assert 0 <= pair["p_value"] <= 1


def test_repeats_with_sampling_report_a_spread_and_reproduce(smollm2, lesson_data, db):
    args = dict(task="sentiment", models=[smollm2], methods=["generate", "score"], limit=3, db=db,
                generation={"temperature": 1.0, "max_new_tokens": 3, "seed": 7}, repeats=2)
    path = lesson_data / "sentiment_film_data.tsv"
    result = evaluate(path, **args)
    systems = list(result.table["system"])
    assert systems[0].endswith("#1") and systems[1].endswith("#2")
    assert sum("score" in s for s in systems) == 1  # scoring is deterministic: it runs once
    spread = result.repeats.iloc[0]
    assert spread["repeats"] == 2
    assert spread["accuracy_min"] <= spread["accuracy_mean"] <= spread["accuracy_max"]
    seeds = [r["settings"]["identity"]["settings"]["generation"]["seed"]
             for r in _runs(db) if r["method"] == "generate"]
    assert sorted(seeds) == [7, 8]
    # the settings are in every output: the table, the predictions and report.json
    assert list(result.table["settings"])[:2] == [
        f"temperature 1, top-k 40, top-p 0.95, seed {s}, max 3 tokens" for s in (7, 8)]
    assert set(result.predictions["settings"][result.predictions["method"] == "generate"]) == {
        f"temperature 1, top-k 40, top-p 0.95, seed {s}, max 3 tokens" for s in (7, 8)}
    assert result.report["systems"][systems[1]]["settings"]["generation"]["seed"] == 8
    again = evaluate(path, **args, fresh=True)  # recomputed, not resumed: seeded sampling reproduces
    assert list(again.predictions["raw"]) == list(result.predictions["raw"])


def test_the_minilm_baseline_beside_the_llm(lesson_data, db):
    result = evaluate(lesson_data / "sentiment_film_data.tsv", "sentiment", [], baseline=True, db=db)
    row = result.table.iloc[0]
    assert row["model"] == "minilm+logreg" and row["n"] == 100
    assert row["accuracy"] >= 0.8  # a real classifier: the issue measured about 0.86 (5-fold)


def test_a_row_beyond_the_context_fails_before_any_model_runs(smollm2, tmp_path, db):
    rows = pd.DataFrame({"text": ["short and sweet", "fine", "word " * 2500], "label": ["positive"] * 3})
    path = tmp_path / "long.csv"
    rows.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"row 3 is \d+ tokens .* beyond the 2048-token context window"):
        evaluate(path, "sentiment", [smollm2], ["score", "generate"], db=db)
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM eval_results").fetchone()[0] == 0


def _runs(db):
    from llmlab.store import Store

    return Store.open(db).eval_runs(limit=None)
