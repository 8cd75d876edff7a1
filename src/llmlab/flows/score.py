"""Scoring a flow: a step's outputs (the last step's unless named) against reference columns.

    llmlab flow eval triage.yaml --data reviews.csv --reference label --step classify
    llmlab flow eval triage.yaml --data reviews.csv --reference classify=label --reference summarise=gist

A reference names a step (or a field of a step's JSON output: ``extract.product``) and a column of
the data. Metrics, each with a 95% interval:

    exact   a step with labels: accuracy, the gold column read through the step's labels (case,
            synonyms), exactly as ``llmlab eval`` scores it (scikit-learn, scipy's BCa bootstrap);
            free text or a JSON field: the share of outputs equal to the reference after the labels'
            normalisation (case, surrounding punctuation and spaces), with the same bootstrap
    f1      a step with labels: macro-F1 (scikit-learn), with its bootstrap interval
    chrf    sacrebleu's corpus chrF (0-100), and its own bootstrap interval (1000 resamples, fixed seed:
            the bootstrap mean +- half the 95% range, as sacrebleu prints it)
    bleu    sacrebleu's corpus BLEU (0-100), the same way

A labels step gets exact and f1 unless ``--metric`` says otherwise; any other step exact and chrf.
A row the flow failed on counts as wrong: ``(unparsed)`` for labels, an empty answer for text.
A flow eval runs the flow first (``run_flow``): a flow run over the same data and models is resumed,
so a flow that has been run is scored without asking a model again.

What it gives up: one reference per row (no multi-reference BLEU); no significance tests between
flows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..checks import did_you_mean
from ..errors import ConfigError, DataError, MissingDependencyError
from ..evals import metrics as eval_metrics
from ..runs.table import Column, Table
from ..tasks import UNPARSED
from ..tasks.spec import _key
from .run import FlowResult, read_rows, run_flow
from .spec import Flow, Step

METRICS = ("exact", "f1", "chrf", "bleu")
BOOTSTRAP = 1000


@dataclass(frozen=True)
class Reference:
    """What is scored: a step, an optional field of its JSON output, and the column it is scored on."""

    step: str
    field: str | None
    column: str

    @property
    def target(self) -> str:
        return f"{self.step}.{self.field}" if self.field else self.step


def parse_references(flow: Flow, references: list[str], step: str | None = None) -> list[Reference]:
    """``COLUMN`` (for ``step``, else the last step) or ``STEP[.FIELD]=COLUMN``, checked against the
    flow; a step or field it does not have is one line."""
    if not references:
        raise ConfigError("give --reference COLUMN (the column the outputs are scored on)")
    out = []
    for ref in references:
        target, sep, column = ref.partition("=") if "=" in ref else (step or flow.steps[-1].name, "", ref)
        if not column.strip() or not target.strip():
            raise ConfigError(f"--reference wants COLUMN or STEP=COLUMN, got {ref!r}")
        if sep and step:
            raise ConfigError(f"--reference {ref!r} names its step; leave out --step, or give COLUMN")
        name, _, field_name = target.strip().partition(".")
        source = flow.step(name)
        if field_name:
            props = (source.schema or {}).get("properties")
            if props is None:
                raise ConfigError(f"--reference {ref!r}: step {name!r} has no json_schema with properties, "
                                  "so it has no fields to score")
            if field_name not in props:
                raise ConfigError(f"--reference {ref!r}: the json_schema of step {name!r} has no property "
                                  f"{field_name!r}{did_you_mean(field_name, props)}")
        out.append(Reference(name, field_name or None, column.strip()))
    return out


def metrics_for(step: Step, ref: Reference, wanted: list[str] | None) -> list[str]:
    labelled = step.labels is not None and ref.field is None
    chosen = list(wanted) if wanted else (["exact", "f1"] if labelled else ["exact", "chrf"])
    for m in chosen:
        if m not in METRICS:
            raise ConfigError(f"unknown metric {m!r}{did_you_mean(m, METRICS)}; use one of: "
                              f"{', '.join(METRICS)}")
        if m == "f1" and not labelled:
            raise ConfigError(f"the metric f1 (macro-F1) is for a step with labels; {ref.target} has none "
                              "(use exact, chrf or bleu)")
    return list(dict.fromkeys(chosen))


@dataclass
class FlowEval:
    result: FlowResult
    scores: list[dict]     # step, column, metric, n, score, low, high, errors

    @property
    def table(self) -> Table:
        t = Table(["step", "reference", "metric", Column("n", justify="right"),
                   Column("score", justify="right"), Column("95% CI", justify="right"),
                   Column("failed rows", justify="right")],
                  title=f"flow {self.result.flow_name} on {self.result.rows.source}", title_justify="left")
        for s in self.scores:
            places = 2 if s["metric"] in ("chrf", "bleu") else 3  # sacrebleu's 0-100, or a share
            t.add_row(s["step"], s["column"], s["metric"], str(s["n"]), f"{s['score']:.{places}f}",
                      f"{s['low']:.{places}f}-{s['high']:.{places}f}", str(s["failed"]))
        return t

    @property
    def report(self) -> dict:
        """What ``scores.json`` holds: the scores, and the tokens and estimated cost of the run (the
        same block as the other commands' JSON reports)."""
        _, notes, figures = self.result.cost
        return {"flow": self.result.flow_name, "source": str(self.result.rows.source),
                "run_id": self.result.run_id, "scores": self.scores,
                "cost": {"models": figures, "notes": notes}}

    def save(self, out) -> None:
        from pathlib import Path

        (Path(out) / "scores.csv").write_text(self.table.to_csv(), encoding="utf-8")
        (Path(out) / "scores.json").write_text(json.dumps(self.report, indent=2), encoding="utf-8")


def evaluate_flow(flow: Flow, data, references: list[str], *, step: str | None = None,
                  metrics: list[str] | None = None, input_col: str | None = None, id_col: str | None = None,
                  limit: int | None = None, out=None, **run_options) -> FlowEval:
    """Run ``flow`` over ``data`` (resuming a stored run) and score the referenced steps' outputs."""
    refs = parse_references(flow, references, step)
    chosen = {ref: metrics_for(flow.step(ref.step), ref, metrics) for ref in refs}
    rows = read_rows(flow, data, input_col=input_col, id_col=id_col, limit=limit)
    golds = {ref: _golds(flow.step(ref.step), ref, rows) for ref in refs}
    if any(m in ("chrf", "bleu") for ms in chosen.values() for m in ms):
        _sacrebleu()  # a missing extra fails before any model loads
    result = run_flow(flow, rows, out=out, **run_options)
    scores = []
    for ref in refs:
        preds, failed = _preds(flow.step(ref.step), ref, result)
        for metric in chosen[ref]:
            score, low, high = map(float, _score(metric, flow.step(ref.step), ref, golds[ref], preds))
            scores.append({"step": ref.target, "column": ref.column, "metric": metric, "n": len(preds),
                           "score": score, "low": low, "high": high, "failed": failed})
    evaluation = FlowEval(result, scores)
    if out is not None:
        evaluation.save(out)
    return evaluation


def _golds(step: Step, ref: Reference, rows) -> list[str]:
    if ref.column not in rows.columns:
        raise DataError(f"{rows.source} has no column {ref.column!r} for --reference"
                        f"{did_you_mean(ref.column, rows.columns)}; its columns: {', '.join(rows.columns)}")
    values = [r[ref.column] for r in rows.records]
    empty = [i for i, v in zip(rows.ids, values, strict=True) if not v.strip()]
    if empty:
        raise DataError(f"{rows.source}: row {', '.join(empty[:5])} has no reference in column "
                        f"{ref.column!r}")
    if step.labels is None or ref.field:
        return values
    gold = [step.labels.normalise(v) for v in values]
    bad = sorted({v for v, g in zip(values, gold, strict=True) if g is None})
    if bad:
        raise DataError(f"{rows.source}: column {ref.column!r} has values outside the labels of step "
                        f"{step.name!r} ({', '.join(step.labels.labels)}): {', '.join(map(repr, bad[:5]))}")
    return gold


def _preds(step: Step, ref: Reference, result: FlowResult) -> tuple[list[str], int]:
    """Each row's output as text (a labels step's label), and how many rows have none."""
    labelled = step.labels is not None and not ref.field
    preds, failed = [], 0
    for value in result.outputs(ref.step):
        if ref.field and isinstance(value, dict):
            value = value.get(ref.field)
        if value is None:
            failed += 1
            preds.append(UNPARSED if labelled else "")
        else:
            preds.append(value if isinstance(value, str) else json.dumps(value))
    return preds, failed


def _score(metric: str, step: Step, ref: Reference, gold: list[str], pred: list[str]):
    if step.labels is not None and not ref.field and metric in ("exact", "f1"):
        m = eval_metrics.classification(gold, pred, list(step.labels.labels))
        key = "accuracy" if metric == "exact" else "macro_f1"
        return m[key], *m[f"{key}_ci"]
    if metric == "exact":
        g, p = [_key(x) for x in gold], [_key(x) for x in pred]
        low, high = eval_metrics.accuracy_ci(g, p)
        return sum(a == b for a, b in zip(g, p, strict=True)) / len(g), low, high
    return corpus_score(metric, pred, [gold])


def corpus_score(metric: str, hypotheses: list[str], references: list[list[str]]):
    """sacrebleu's corpus chrF or BLEU (0-100) and its bootstrap 95% interval: ``(score, low, high)``.
    ``references`` are reference streams, each as long as ``hypotheses``; with a varying number of
    references per segment, a missing one is ``""`` (sacrebleu skips it)."""
    sacrebleu = _sacrebleu()
    scorer = sacrebleu.CHRF() if metric == "chrf" else sacrebleu.BLEU()
    result = scorer.corpus_score(hypotheses, references,
                                 n_bootstrap=BOOTSTRAP if len(hypotheses) > 1 else 1)
    if len(hypotheses) < 2:
        return result.score, result.score, result.score
    return result.score, result._mean - result._ci, result._mean + result._ci


def _sacrebleu():
    try:
        import sacrebleu
    except ImportError as exc:
        raise MissingDependencyError("sacrebleu", "eval") from exc
    return sacrebleu
