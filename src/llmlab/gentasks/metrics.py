"""Reference metrics for generated text, each the reference library's own call, and pass@k.

    rouge1 rouge2 rougeL   rouge-score's ``RougeScorer(..., use_stemmer=True).score_multi``: the F-measure
                           of the best reference per row (0-1), averaged over rows
    bleu chrf              sacrebleu's corpus BLEU and chrF (0-100) over every reference stream, with
                           sacrebleu's own bootstrap interval (``llmlab.flows.score.corpus_score``)
    exact_match f1         SQuAD v1.1's (torchmetrics' ``squad``, ``llmlab.rag.answer_eval``): lower
                           case, no punctuation or articles; the best over references (0-1)
    pass@k                 Chen et al. (2021)'s unbiased estimator 1 - C(n-c, k) / C(n, k) per problem,
                           averaged over problems

Row-level scores (ROUGE, EM/F1, pass@k) get a 95% BCa bootstrap interval over rows (scipy, as
``llmlab eval`` reports accuracy); corpus-level ones (BLEU, chrF) sacrebleu's.

What it gives up: no tokenisation options (sacrebleu's 13a, rouge-score's own English tokeniser);
ROUGE on non-English text counts only what that tokeniser keeps (ASCII letters and digits).
"""

from __future__ import annotations

from math import comb

from ..errors import MissingDependencyError

ROUGE = ("rouge1", "rouge2", "rougeL")
SQUAD = ("exact_match", "f1")


def rouge(prediction: str, references, types=ROUGE) -> dict[str, float]:
    """The best F-measure over ``references`` for each ROUGE type (rouge-score's ``score_multi``)."""
    scores = _scorer(tuple(types)).score_multi(list(references), prediction)
    return {t: float(scores[t].fmeasure) for t in types}


def squad(prediction: str, references) -> dict[str, float]:
    from ..rag.answer_eval import squad_scores

    try:
        return squad_scores(prediction, list(references))
    except ImportError as exc:
        raise MissingDependencyError("torchmetrics", "eval") from exc


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k of one problem with ``c`` of ``n`` samples correct.

    >>> pass_at_k(5, 1, 1), pass_at_k(5, 0, 3), pass_at_k(5, 4, 2)
    (0.2, 0.0, 1.0)
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    return (comb(n, k) - comb(n - c, k)) / comb(n, k)


def row_scores(metrics, prediction: str, references) -> dict[str, float]:
    """The row-level metrics of one prediction (ROUGE, EM, F1); corpus ones are computed over rows."""
    out = {}
    wanted = [m for m in metrics if m in ROUGE]
    if wanted:
        out.update(rouge(prediction, references, wanted))
    if any(m in SQUAD for m in metrics):
        got = squad(prediction, references)
        out.update({m: got[m] for m in SQUAD if m in metrics})
    return out


def aggregate(metric: str, rows: list[dict]) -> dict:
    """One metric over a run's rows: ``{"value", "low", "high", "n"}``.

    ``rows`` are unit results: ``scores`` (row-level), ``output`` and ``references`` (for corpus
    BLEU/chrF), ``passed`` (pass@k: one bool per sample).
    """
    from ..evals.metrics import mean_ci

    if metric in ("bleu", "chrf"):
        from ..flows.score import corpus_score

        hyps = [r["output"] for r in rows]
        width = max(len(r["references"]) for r in rows)
        streams = [[(r["references"] + [""] * width)[i] for r in rows] for i in range(width)]
        value, low, high = corpus_score(metric, hyps, streams)
        return {"value": float(value), "low": float(low), "high": float(high), "n": len(rows)}
    if metric.startswith("pass@"):
        k = int(metric[5:])
        values = [pass_at_k(len(r["passed"]), sum(r["passed"]), k) for r in rows]
    else:
        values = [r["scores"][metric] for r in rows]
    low, high = mean_ci(values)
    return {"value": sum(values) / len(values), "low": low, "high": high, "n": len(values)}


_SCORERS: dict = {}


def _scorer(types: tuple[str, ...]):
    if types not in _SCORERS:
        try:
            from rouge_score import rouge_scorer
        except ImportError as exc:
            raise MissingDependencyError("rouge-score", "eval") from exc
        _SCORERS[types] = rouge_scorer.RougeScorer(list(types), use_stemmer=True)
    return _SCORERS[types]
