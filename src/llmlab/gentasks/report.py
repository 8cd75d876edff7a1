"""A generation task's report: scores with 95% intervals per model, the judge's agreement with
people, the pairwise verdicts; printed, saved, or re-opened from the store (``llmlab runs show``).

Scales are the libraries' own: ROUGE, exact match, F1 and pass@k are shares (0-1); BLEU and chrF
are sacrebleu's 0-100; the judge's score is on the rubric's scale. Every report ends with the tokens
and estimated cost per model, the judge's included (``llmlab.tally``), from the units' stored usage.

What it gives up: no significance tests between models (the intervals are per model); outputs are
kept in the store and in ``predictions.jsonl``, but the terminal shows figures only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..runs import Column, Table

RIGHT = {"justify": "right"}


@dataclass
class GenRun:
    model: str
    run_id: int | None
    items: list[dict]           # one per row: id, output, references, scores / passed, judge
    summary: dict
    resumed: int = 0
    labelled: list[dict] = field(default_factory=list)

    @classmethod
    def from_results(cls, model, run_id, results: dict[str, dict], summary: dict, resumed: int = 0):
        items = [{"id": k, **v} for k, v in results.items() if not v.get("labelled")]
        labelled = [{"id": k.split("/", 1)[1], **v} for k, v in results.items() if v.get("labelled")]
        return cls(model, run_id, items, summary, resumed, labelled)

    @property
    def items_by_id(self) -> dict[str, dict]:
        return {i["id"]: i for i in self.items}


@dataclass
class PairRun:
    head: dict
    run_id: int | None
    results: dict[str, dict]
    summary: dict


@dataclass
class GenResult:
    task: str
    source: str
    runs: list[GenRun]
    pairwise: PairRun | None = None
    notes: list[str] = field(default_factory=list)
    reopened: bool = False  # from the store: priced at today's prices

    @property
    def cost(self) -> tuple:
        """Tokens, CPU time and estimated cost per model (the judge's too) over every unit of the runs:
        (table or None, notes, model -> figures)."""
        from ..tally import cost_section

        units = [u for r in self.runs for u in r.items + r.labelled]
        units += list(self.pairwise.results.values()) if self.pairwise is not None else []
        return cost_section(units, self.reopened)

    @property
    def tables(self) -> list[Table]:
        out = [self.scores_table()]
        if any(r.summary.get("agreement") for r in self.runs):
            out.append(self.agreement_table())
        if self.pairwise is not None:
            out.append(pair_table(self.pairwise))
        return out

    def scores_table(self) -> Table:
        judged = any(r.summary.get("judge") for r in self.runs)
        t = Table(["model", "metric", Column("value", **RIGHT), Column("95% CI", **RIGHT),
                   Column("n", **RIGHT)] + ([Column("unparsed", **RIGHT)] if judged else []),
                  title=f"{self.task} on {self.source}", title_justify="left")
        for run in self.runs:
            first = True
            for metric, fig in run.summary["metrics"].items():
                t.add_row(run.model if first else "", metric, _num(metric, fig["value"]),
                          _ci(metric, fig["low"], fig["high"]), str(fig["n"]), *([""] if judged else []))
                first = False
            j = run.summary.get("judge")
            if j:
                t.add_row("", "judge score", _num("judge", j["value"]), _ci("judge", j["low"], j["high"]),
                          str(j["scored"]), str(j["unparsed"]))
        return t

    def agreement_table(self) -> Table:
        t = Table(["model judged", Column("labelled", **RIGHT), Column("scored", **RIGHT),
                   Column("unparsed", **RIGHT), Column("exact agreement", **RIGHT),
                   Column("Cohen's kappa (quadratic)", **RIGHT), Column("Spearman", **RIGHT)],
                  title="the judge against human scores on the labelled sample", title_justify="left")
        for run in self.runs:
            a = run.summary.get("agreement")
            if a:
                t.add_row(run.model, str(a["n"]), str(a["scored"]), str(a["unparsed"]), _num("x", a["exact"]),
                          _num("x", a["kappa"]), _num("x", a["spearman"]))
        return t

    def print(self, console=None) -> None:
        from ..runs.table import print_tables

        table, notes, _ = self.cost
        print_tables(self.tables + ([table] if table is not None else []), self.notes + notes, console)

    def to_markdown(self) -> str:
        from ..tally import markdown_with_cost

        table, notes, _ = self.cost
        return markdown_with_cost(self.tables, table, notes)

    @property
    def report(self) -> dict:
        _, notes, figures = self.cost
        return {"task": self.task, "source": self.source,
                "runs": [{"model": r.model, "run_id": r.run_id, **r.summary} for r in self.runs],
                "pairwise": None if self.pairwise is None else
                {**self.pairwise.head, "run_id": self.pairwise.run_id, **self.pairwise.summary},
                "cost": {"models": figures, "notes": notes}, "notes": self.notes}

    def save(self, out) -> None:
        out = Path(out)
        lines = [json.dumps({"model": r.model, **item}, ensure_ascii=False)
                 for r in self.runs for item in r.items]
        (out / "predictions.jsonl").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
        (out / "report.json").write_text(json.dumps(self.report, indent=2), encoding="utf-8")
        (out / "report.md").write_text(self.to_markdown(), encoding="utf-8")


def pair_table(pair: PairRun) -> Table:
    s, h = pair.summary, pair.head
    t = Table(["A", "B", "judge", Column("rows", **RIGHT), Column("A wins", **RIGHT),
               Column("B wins", **RIGHT), Column("ties", **RIGHT), Column("inconsistent", **RIGHT),
               Column("unparsed", **RIGHT), Column("position bias", **RIGHT)],
              title="pairwise, judged in both orders (a verdict counts when both orders agree)",
              title_justify="left")
    t.add_row(h["a"], h["b"], h["judge"], str(s["n"]), str(s["a_wins"]), str(s["b_wins"]), str(s["ties"]),
              str(s["inconsistent"]), str(s["unparsed"]), _num("x", s["position_bias_rate"]))
    return t


def _num(metric: str, value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}" if metric in ("bleu", "chrf", "judge") else f"{value:.3f}"


def _ci(metric: str, low, high) -> str:
    return "n/a" if low is None else f"{_num(metric, low)}-{_num(metric, high)}"


def show_runs(store, rows: list[dict], fmt: str, console) -> str | None:
    """Stored generation runs re-opened (``llmlab runs show ID``) from their units and summaries."""
    from ..tally import cost_section, show_with_cost
    from .run import summarise

    tables, by_task, units = [], {}, []
    for r in rows:
        results = store.units(r["id"])
        units += results.values()
        h = r["header"]
        if h.get("mode") == "pairwise":
            summary = r["summary"]
            if summary is None:
                from .judge import pairwise_summary

                summary = pairwise_summary(list(results.values()))
            tables.append(pair_table(PairRun(h, r["id"], results, summary)))
            continue
        summary = r["summary"] or summarise(results, h)
        result = by_task.setdefault((h["task"], h["source"]), GenResult(h["task"], h["source"], []))
        result.runs.append(GenRun.from_results(r["model"], r["id"], results, summary))
    for result in by_task.values():
        tables = result.tables + tables
    cost, notes, _ = cost_section(units, reopened=True)  # every run shown, at today's prices
    return show_with_cost(tables, cost, notes, fmt, console)

