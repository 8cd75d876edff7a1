"""Metrics: the report is scikit-learn's, the intervals scipy's bootstrap, the tests exact McNemar."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import classification_report, f1_score

from llmlab.evals import metrics
from llmlab.tasks import UNPARSED

LABELS = ["positive", "negative", "neutral"]


def predictions(seed: int, n: int = 80, unparsed: bool = True):
    rng = np.random.default_rng(seed)
    gold = list(rng.choice(LABELS, n))
    noise = rng.choice(LABELS + ([UNPARSED] if unparsed else []), n)
    pred = list(np.where(rng.random(n) < 0.55, gold, noise))
    return gold, pred


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_report_is_sklearns(seed):
    gold, pred = predictions(seed)
    m = metrics.classification(gold, pred, LABELS)
    args = {"labels": sorted(LABELS), "zero_division": 0}
    assert m["report"] == classification_report(gold, pred, output_dict=True, **args)
    assert m["report_text"] == classification_report(gold, pred, **args)
    assert m["accuracy"] == pytest.approx(np.mean(np.array(gold) == np.array(pred)))
    assert m["macro_f1"] == pytest.approx(f1_score(gold, pred, average="macro", **args))
    assert m["unparsed"] == pred.count(UNPARSED)


def test_without_unparsed_the_report_equals_sklearns_default_call():
    gold, pred = predictions(3, unparsed=False)
    assert metrics.classification(gold, pred, LABELS)["report_text"] == classification_report(
        gold, pred, zero_division=0)


def test_confusion_matrix_has_an_unparsed_column():
    gold = ["positive", "positive", "negative", "neutral"]
    pred = ["positive", UNPARSED, "negative", "positive"]
    c = metrics.classification(gold, pred, LABELS)["confusion"]
    assert c["rows"] == ["negative", "neutral", "positive"]
    assert c["columns"] == ["negative", "neutral", "positive", UNPARSED]
    assert c["matrix"] == [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_macro_f1_equals_sklearn(seed):
    gold, pred = predictions(seed, n=40)
    rng = np.random.default_rng(seed)
    index = {label: i for i, label in enumerate(LABELS)}
    g = np.array([index[x] for x in gold])
    p = np.array([index.get(x, 3) for x in pred])
    samples = rng.integers(0, len(gold), size=(5, len(gold)))  # bootstrap-like resamples
    got = metrics._macro_f1_statistic(3)(g[samples], p[samples])
    want = [f1_score(np.array(gold)[s], np.array(pred)[s], labels=LABELS, average="macro", zero_division=0)
            for s in samples]
    assert got == pytest.approx(want)


def test_bootstrap_intervals_bracket_the_estimate_and_reproduce():
    gold, pred = predictions(4)
    m = metrics.classification(gold, pred, LABELS)
    low, high = m["accuracy_ci"]
    assert low < m["accuracy"] < high and 0.1 < high - low < 0.35  # n=80: about +-0.11
    low, high = m["macro_f1_ci"]
    assert low < m["macro_f1"] < high
    assert metrics.classification(gold, pred, LABELS)["accuracy_ci"] == m["accuracy_ci"]
    # all correct: a degenerate sample gives the point as its interval, not NaN
    assert metrics.accuracy_ci(gold, gold) == (1.0, 1.0)


def test_exact_mcnemar():
    a = [True] * 10 + [False] * 2 + [True] * 5 + [False] * 3
    b = [False] * 10 + [True] * 2 + [True] * 5 + [False] * 3
    result = metrics.mcnemar(a, b)
    assert (result["only_a"], result["only_b"]) == (10, 2)
    assert result["p_value"] == pytest.approx(binomtest(10, 12, 0.5).pvalue)
    assert result["p_value"] == pytest.approx(0.03857, abs=1e-4)
    assert metrics.mcnemar(b, a)["p_value"] == result["p_value"]
    assert metrics.mcnemar(a, a)["p_value"] == 1.0
    pairs = metrics.pairwise({"x": a, "y": b, "z": a})
    assert [(p["a"], p["b"]) for p in pairs] == [("x", "y"), ("x", "z"), ("y", "z")]


def test_spread_across_repeats():
    s = metrics.spread([0.5, 0.6, 0.7])
    assert s["mean"] == pytest.approx(0.6) and s["std"] == pytest.approx(0.1)
    assert (s["min"], s["max"], s["n"]) == (0.5, 0.7, 3)


def test_a_label_neither_gold_nor_predicted_does_not_count_in_macro_f1():
    gold = ["positive", "negative", "positive", "negative"]
    result = metrics.classification(gold, list(gold), ["positive", "negative", "neutral"])
    assert result["accuracy"] == 1.0 and result["macro_f1"] == 1.0
    assert "neutral" not in result["report"] and result["confusion"]["rows"][1] == "neutral"
    predicted = metrics.classification(gold, ["positive", "neutral", "positive", "negative"],
                               ["positive", "negative", "neutral"])
    assert "neutral" in predicted["report"]  # predicted once: a false positive, it counts
    assert predicted["macro_f1"] == pytest.approx(
        f1_score(gold, ["positive", "neutral", "positive", "negative"], average="macro", zero_division=0))
