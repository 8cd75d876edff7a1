"""Scores with honest uncertainty: scikit-learn's report, scipy's bootstrap and exact McNemar tests.

- The classification report is ``sklearn.metrics.classification_report(gold, pred, labels=<the
  task's labels that are gold or predicted, sorted>, zero_division=0)``: the call is recorded with
  the report, so anyone can reproduce it from ``predictions.csv``. A task label that is neither in
  the data nor ever predicted has no row and does not count in macro-F1 (as in scikit-learn's
  default): a perfect run on a file without neutral items has macro-F1 1, not 2/3. Unparseable
  outputs are predicted as ``(unparsed)``: they count as misses for the labels' recall but get no
  row of their own. The confusion matrix shows every task label, and the unparsed as a column.
- Accuracy and macro-F1 get 95% BCa bootstrap intervals from ``scipy.stats.bootstrap`` (items
  resampled with replacement, a fixed seed so reports reproduce).
- Two systems evaluated on the same items are compared with the exact McNemar test: a two-sided
  binomial test (``scipy.stats.binomtest``) on the items exactly one of them got right.

What it gives up: no correction for multiple comparisons; with many systems, read small p-values
with that in mind.
"""

from __future__ import annotations

import itertools
import warnings

from ..tasks import UNPARSED

N_RESAMPLES = 2000
SEED = 0


def classification(gold: list[str], pred: list[str], labels: list[str]) -> dict:
    """Report, accuracy and macro-F1 with intervals, and the confusion matrix, for one system."""
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

    labels = sorted(labels)
    seen = set(gold) | set(pred)
    scored = [label for label in labels if label in seen]
    args = {"labels": scored, "zero_division": 0}
    columns = labels + ([UNPARSED] if UNPARSED in pred else [])
    matrix = confusion_matrix(gold, pred, labels=columns)[: len(labels)]  # no item is gold-unparsed
    accuracy = float(accuracy_score(gold, pred))
    macro_f1 = float(f1_score(gold, pred, average="macro", **args))
    return {
        "n": len(gold),
        "accuracy": accuracy,
        "accuracy_ci": accuracy_ci(gold, pred),
        "macro_f1": macro_f1,
        "macro_f1_ci": macro_f1_ci(gold, pred, scored),
        "weighted_f1": float(f1_score(gold, pred, average="weighted", **args)),
        "unparsed": sum(p == UNPARSED for p in pred),
        "report": classification_report(gold, pred, output_dict=True, **args),
        "report_text": classification_report(gold, pred, **args),
        "sklearn_call": f"classification_report(gold, pred, labels={scored!r}, zero_division=0)",
        "confusion": {"rows": labels, "columns": columns, "matrix": matrix.tolist()},
    }


def accuracy_ci(gold, pred, confidence: float = 0.95) -> tuple[float, float]:
    import numpy as np

    correct = (np.asarray(gold, dtype=object) == np.asarray(pred, dtype=object)).astype(float)
    return _bootstrap((correct,), np.mean, confidence)


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float]:
    """A bootstrap (BCa) interval for the mean of per-item scores in [0, 1] (pass^k per task...)."""
    import numpy as np

    return _bootstrap((np.asarray(values, dtype=float),), np.mean, confidence)


def macro_f1_ci(gold, pred, labels, confidence: float = 0.95) -> tuple[float, float]:
    import numpy as np

    index = {label: i for i, label in enumerate(labels)}
    g = np.array([index[x] for x in gold])
    p = np.array([index.get(x, len(labels)) for x in pred])  # unparsed: a code no label has
    return _bootstrap((g, p), _macro_f1_statistic(len(labels)), confidence, paired=True)


def _macro_f1_statistic(k: int):
    """Macro-F1 of label codes over many resamples at once.

    scipy's bootstrap needs the statistic for thousands of resamples; ``sklearn.metrics.f1_score``
    takes ~3 ms a call (validation), so 2000 resamples cost seconds per system. This computes the
    same quantity (F1 = 2TP / (2TP + FP + FN), 0 when undefined, as zero_division=0) on whole
    batches; tests check it equals ``f1_score(..., average="macro", zero_division=0)``.
    """
    import numpy as np

    codes = np.arange(k)

    def statistic(g, p, axis=-1):
        g = np.moveaxis(g, axis, -1)[..., None] == codes  # (..., n, k) one-hot
        p = np.moveaxis(p, axis, -1)[..., None] == codes
        tp = (g & p).sum(-2)
        denom = g.sum(-2) + p.sum(-2)  # 2TP + FP + FN
        f1 = np.divide(2 * tp, denom, out=np.zeros(denom.shape), where=denom > 0)
        return f1.mean(-1)

    return statistic


def _bootstrap(data, statistic, confidence, paired=False) -> tuple[float, float]:
    import numpy as np
    from scipy.stats import bootstrap

    point = float(statistic(*data, axis=-1))
    if len(data[0]) < 2:
        return (point, point)
    with warnings.catch_warnings():
        # all-correct or all-wrong samples make BCa degenerate; the interval is then the point
        warnings.simplefilter("ignore")
        result = bootstrap(data, statistic, paired=paired, confidence_level=confidence,
                           n_resamples=N_RESAMPLES, method="BCa", batch=250,
                           rng=np.random.default_rng(SEED))
    low, high = result.confidence_interval
    if not (np.isfinite(low) and np.isfinite(high)):
        return (point, point)
    return (float(low), float(high))


def mcnemar(correct_a, correct_b) -> dict:
    """Exact McNemar test between two systems' per-item correctness on the same items."""
    from scipy.stats import binomtest

    b = sum(1 for x, y in zip(correct_a, correct_b, strict=True) if x and not y)
    c = sum(1 for x, y in zip(correct_a, correct_b, strict=True) if y and not x)
    p = binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
    return {"only_a": b, "only_b": c, "p_value": float(p)}


def pairwise(correct: dict[str, list[bool]]) -> list[dict]:
    """McNemar between each pair of systems (names in the order given)."""
    return [{"a": a, "b": b, **mcnemar(correct[a], correct[b])}
            for a, b in itertools.combinations(correct, 2)]


def spread(values: list[float]) -> dict:
    """Mean, standard deviation (n-1), min and max across repeats."""
    import numpy as np

    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
            "min": float(arr.min()), "max": float(arr.max()), "n": len(arr)}
