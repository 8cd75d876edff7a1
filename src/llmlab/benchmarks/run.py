"""``llmlab eval FILE --benchmark NAME``: a multiple-choice benchmark as a stored, resumable run.

    >>> from llmlab.benchmarks import run_benchmark
    >>> result = run_benchmark("arc_easy.jsonl", "arc", models=["smollm2"], num_fewshot=0)  # doctest: +SKIP
    >>> result.table          # acc and acc_norm with their standard errors, per model
    >>> result.runs[0].items  # per item: the choices' log-likelihoods, prediction, metrics

Each model is a run of kind ``benchmark`` with a unit per item, keyed by the item's id: an
interrupted run resumes where it stopped, and ``llmlab runs show ID`` re-opens it. Each item stores
the tokens it read and its CPU and wall seconds, which the report prices (``llmlab.cost``). Prompts are raw
text for every model, chat-tuned or not, as the harness sends them unless told to apply a chat
template.

What it gives up: an item's choices are scored one after another on one model (llama.cpp reuses the
shared context, so a choice costs its own tokens only); nothing is batched across items.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from ..cost import meter, usage
from ..errors import ConfigError
from ..runs import Column, RunKind, Table, Unit, execute, progress_bar
from ..runs.protocol import model_identity
from ..runs.runner import check_concurrency
from .formats import FORMATS
from .harness import aggregate, get_format, item_metrics, items_digest, load_items, loglikelihoods, prefix

SAMPLES = Path(__file__).parent / "samples"


def sample_file(benchmark: str) -> Path:
    """The few items of each format written for llmlab (TruthfulQA's two share one file)."""
    get_format(benchmark)
    return SAMPLES / f"{benchmark.split('-')[0]}.jsonl"


@dataclass
class BenchmarkRun:
    model: str
    run_id: int | None
    items: list[dict]
    summary: dict
    resumed: int = 0


@dataclass
class BenchmarkResult:
    benchmark: str
    source: str
    num_fewshot: int
    runs: list[BenchmarkRun]
    notes: list[str] = field(default_factory=list)
    reopened: bool = False  # from the store: costed at today's prices

    @property
    def cost(self) -> tuple:
        """Tokens, CPU time and estimated cost per model: (table, notes, model -> figures)."""
        from ..cost import report

        return report([(r.model, r.summary.get("usage")) for r in self.runs], reopened=self.reopened,
                      what="model")

    @property
    def table(self) -> Table:
        right = {"justify": "right"}
        t = Table(["benchmark", "model", Column("n", **right), Column("shots", **right), "metric",
                   Column("value", **right), Column("± stderr", **right)],
                  title=f"{self.benchmark} on {self.source} (acc_norm: per character of the choice)"
                  if "acc_norm" in FORMATS[self.benchmark].metrics else f"{self.benchmark} on {self.source}",
                  title_justify="left")
        for run in self.runs:
            for n, (metric, fig) in enumerate(run.summary["metrics"].items()):
                err = "n/a" if fig["stderr"] is None else f"{fig['stderr']:.4f}"
                t.add_row(self.benchmark if n == 0 else "", run.model if n == 0 else "",
                          str(run.summary["n"]) if n == 0 else "",
                          str(self.num_fewshot) if n == 0 else "", metric, f"{fig['value']:.4f}", err)
        return t

    def print(self, console=None) -> None:
        from ..runs.table import print_tables

        table, notes, _ = self.cost
        print_tables([self.table, table], self.notes + notes, console)

    def to_markdown(self) -> str:
        table, notes, _ = self.cost
        return "\n\n".join([self.table.to_markdown(), "## Tokens and estimated cost", table.to_markdown(),
                            *notes]) + "\n"

    @property
    def report(self) -> dict:
        _, notes, figures = self.cost
        return {"benchmark": self.benchmark, "source": self.source, "num_fewshot": self.num_fewshot,
                "runs": [{"model": r.model, "run_id": r.run_id, **r.summary,
                          "cost_usd": figures.get(r.model, {}).get("cost_usd")} for r in self.runs],
                "cost_notes": notes, "notes": self.notes}

    def save(self, out) -> None:
        out = Path(out)
        rows = [Table(["model", "id", "gold", "pred", "acc", "acc_norm", "loglikelihoods"])]
        for r in self.runs:
            for item in r.items:
                rows[0].add_row(r.model, item["id"], item["gold"], item["pred"], item["acc"],
                                item["acc_norm"], json.dumps(item["lls"]))
        (out / "predictions.csv").write_text(rows[0].to_csv(), encoding="utf-8")
        (out / "report.json").write_text(json.dumps(self.report, indent=2), encoding="utf-8")
        (out / "report.md").write_text(self.to_markdown(), encoding="utf-8")


class BenchmarkKind(RunKind):
    kind = "benchmark"

    def __init__(self, benchmark: str, source: str, items, pool, same_pool: bool, num_fewshot: int,
                 model, name: str, store):
        self.fmt, self.items, self.model_obj = get_format(benchmark), items, model
        self.prefixes = [prefix(i, pool, num_fewshot, same_pool) for i in items]  # fails before running
        self.ident = {"benchmark": benchmark, "items": items_digest(items, benchmark),
                      "fewshot": [num_fewshot, items_digest(pool, benchmark) if num_fewshot else None],
                      "model": model_identity(model, store)}
        self.head = {"benchmark": benchmark, "source": source, "num_fewshot": num_fewshot,
                     "n_items": len(items), "metrics": list(self.fmt.metrics)}
        self.model, self.subject = name, f"{benchmark} ({Path(source).name})"
        self.label = f"{name} · {benchmark}"

    def identity(self) -> dict:
        return self.ident

    def header(self) -> dict:
        return self.head

    def plan(self) -> list[Unit]:
        return [Unit(item.id, n, (item, pre)) for n, (item, pre) in enumerate(zip(self.items, self.prefixes,
                                                                                  strict=True))]

    def run_unit(self, unit: Unit) -> dict:
        item, pre = unit.payload
        clock = meter()
        lls, tokens = loglikelihoods(self.model_obj, item.requests(pre))
        return {"lls": lls, "gold": item.gold, "tokens": tokens, **item_metrics(item, lls), **clock()}

    def summarise(self, results: dict[str, dict]) -> dict:
        return {**summarise(results, self.fmt.metrics),
                "usage": usage(self.model_obj, self.model, results.values())}


def summarise(results: dict[str, dict], metrics) -> dict:
    values = list(results.values())
    figures = {}
    for metric in metrics:
        value, stderr = aggregate([r[metric] for r in values])
        figures[metric] = {"value": value, "stderr": stderr}
    return {"n": len(values), "metrics": figures, "tokens": sum(r.get("tokens") or 0 for r in values)}


def run_benchmark(data, benchmark: str, models=("smollm2",), *, num_fewshot: int = 0, fewshot_data=None,
                  fields: dict | None = None, limit: int | None = None, db=None, fresh: bool = False,
                  progress=False, out=None, model_options: dict | None = None,
                  concurrency: int = 1) -> BenchmarkResult:
    """Score ``models`` on a benchmark file (None: llmlab's sample of that format); see the module."""
    from ..checks import whole_number
    from ..evals.api import _load_models
    from ..store import Store

    fmt = get_format(benchmark)
    whole_number("--num-fewshot", num_fewshot, least=0)
    if num_fewshot and not fmt.fewshot:
        raise ConfigError(f"{benchmark} takes no --num-fewshot: its prompt carries its own six examples, "
                          "as in the harness")
    notes = []
    if data is None:
        data = sample_file(benchmark)
        notes.append(f"the {benchmark} sample written for llmlab, not the benchmark: point at the real file "
                     "for real scores")
    items = load_items(data, benchmark, fields, limit)
    pool = load_items(fewshot_data, benchmark, fields) if fewshot_data is not None else items
    models = [models] if isinstance(models, str) or hasattr(models, "info") else list(models)
    if out is not None:
        from ..config import prepare_out

        prepare_out(out)
    store = db if isinstance(db, Store) else Store.open(db)
    runs = []
    try:
        loaded, owned = _load_models(models, model_options or {})
        try:
            check_concurrency(concurrency, loaded.values())
            kinds = []
            for name, model in loaded.items():
                model.require("score", "benchmarks are scored by log-likelihood")
                kinds.append(BenchmarkKind(benchmark, str(data), items, pool, fewshot_data is None,
                                           num_fewshot, model, name, store))
            shown = nullcontext(progress) if hasattr(progress, "add_task") else progress_bar(bool(progress))
            with shown as bar:
                for kind in kinds:
                    outcome = execute(kind, store, fresh=fresh, progress=bar, concurrency=concurrency)
                    runs.append(BenchmarkRun(kind.model, outcome.run_id, _items(outcome.results),
                                             outcome.summary, outcome.resumed))
        finally:
            for model in owned:
                model.close()
    finally:
        if store is not db:
            store.close()
    if any(r.resumed for r in runs):
        notes.append("resumed from the store: " + ", ".join(f"{r.model} ({r.resumed}/{len(items)} items)"
                                                            for r in runs if r.resumed))
    result = BenchmarkResult(benchmark, str(data), num_fewshot, runs, notes)
    if out is not None:
        result.save(out)
    return result


def _items(results: dict[str, dict]) -> list[dict]:
    return [{"id": k, **v} for k, v in results.items()]


def show_runs(store, rows: list[dict], fmt: str, console) -> str | None:
    """Stored benchmark runs re-opened (``llmlab runs show ID``) from their units."""
    from ..runs.table import show_tables

    heads = {(r["header"]["benchmark"], r["header"]["source"], r["header"]["num_fewshot"]) for r in rows}
    tables, notes = [], []
    for benchmark, source, shots in sorted(heads):
        runs = []
        for r in rows:
            h = r["header"]
            if (h["benchmark"], h["source"], h["num_fewshot"]) != (benchmark, source, shots):
                continue
            results = store.units(r["id"])
            if not results:
                continue
            summary = r["summary"] or summarise(results, FORMATS[benchmark].metrics)
            runs.append(BenchmarkRun(r["model"], r["id"], _items(results), summary))
        result = BenchmarkResult(benchmark, source, shots, runs, reopened=True)
        table, more, _ = result.cost
        tables += [result.table, table]
        notes += [n for n in more if n not in notes]
    text = show_tables(tables, fmt, console)
    if fmt == "terminal":
        for note in notes:
            console.print(note, style="dim", markup=False)
    return text + "\n" + "\n".join(notes) + "\n" if fmt == "markdown" else text
