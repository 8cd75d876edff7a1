"""A model x generation task as a stored, resumable run; a judge and a pairwise comparison on top.

    >>> from llmlab.gentasks import run_gentask
    >>> result = run_gentask(None, "summarise", ["smollm2"], judge="smollm2")   # doctest: +SKIP
    >>> result.runs[0].summary["metrics"]["rougeL"]    # {"value", "low", "high", "n"}
    >>> result.runs[0].summary["agreement"]            # the judge against the labelled sample

Each model is a run of kind ``generation`` with a unit per row (its output(s), row-level scores, the
judge's verdict) and, with a judge, a unit per row of the labelled sample (the judge's score beside
the human one). ``pairwise=True`` with two models adds a run whose unit per row is the judge's
verdict in both orders. An interrupted run resumes; ``llmlab runs show ID`` re-opens it.

What it gives up: samples of a row are generated one after another; the judge runs in the same
process as the models (a big judge and a big model must fit in memory together).
"""

from __future__ import annotations

from contextlib import ExitStack, closing, nullcontext
from pathlib import Path

from ..errors import ConfigError, DataError
from ..runs import RunKind, Unit, execute, fingerprint, progress_bar
from ..runs.protocol import model_identity
from ..runs.runner import check_concurrency
from . import judge as judging
from .execution import program, run_program
from .metrics import aggregate, row_scores
from .report import GenResult, GenRun, PairRun
from .spec import GenTask, Row, load, prompt_for, read_rows, rows_digest


class _Kind(RunKind):
    """What both kinds here share: the identity and header are worked out once, when built."""

    kind = "generation"
    tally = True  # each unit stores what its generations spent, per model (the judge's too)
    ident: dict
    head: dict

    def identity(self) -> dict:
        return self.ident

    def header(self) -> dict:
        return self.head


class GenKind(_Kind):

    def __init__(self, task: GenTask, rows: list[Row], source: str, model, name: str, store,
                 judge: judging.RubricJudge | None = None, labelled=None):
        self.task, self.rows, self.model_obj, self.judge = task, rows, model, judge
        self.labelled = labelled  # (rows, human scores, source) or None
        self.ident = {"task": task.fingerprint(), "rows": rows_digest(rows),
                      "model": model_identity(model, store)}
        if judge is not None:
            self.ident["judge"] = {**judge.identity(), "model": model_identity(judge.model, store)}
            if labelled:
                self.ident["labelled"] = rows_digest(labelled[0])
        self.head = {"mode": "generate", "task": task.name, "source": source, "metrics": list(task.metrics),
                     "n_rows": len(rows), "judge": judge.name if judge else None,
                     "rubric": [task.rubric.low, task.rubric.high] if task.rubric else None,
                     "labelled": labelled[2] if judge and labelled else None}
        self.model, self.subject = name, f"{task.name} ({Path(source).name})"
        self.label = f"{name} · {task.name}"

    def plan(self) -> list[Unit]:
        units = [Unit(r.id, n, r) for n, r in enumerate(self.rows)]
        if self.judge is not None and self.labelled:
            rows, human, _ = self.labelled
            units += [Unit(f"labelled/{r.id}", len(units) + n, (r, h))
                      for n, (r, h) in enumerate(zip(rows, human, strict=True))]
        return units

    def run_unit(self, unit: Unit) -> dict:
        if isinstance(unit.payload, tuple):  # a labelled output: the judge's score beside the human one
            row, human = unit.payload
            return {"labelled": True, "human": human,
                    **self.judge.score(row.values, row.references, str(row.values["output"]))}
        row, task = unit.payload, self.task
        prompt = prompt_for(self.model_obj, task, row)
        outputs, tokens = [], 0
        for sample in range(task.samples):
            response = self.model_obj.generate(prompt, task.config(sample))
            outputs.append(response.text)
            tokens += getattr(response.usage, "completion_tokens", 0) or 0
        result = {"output": outputs[0], "references": list(row.references), "tokens": tokens}
        if task.format == "humaneval":
            runs = [run_program(program(row.values, o), task.timeout) for o in outputs]
            result.update(samples=outputs, passed=[r["status"] == "passed" for r in runs],
                          errors=[r["error"] for r in runs])
        else:
            result["scores"] = row_scores(task.metrics, outputs[0], row.references)
        if self.judge is not None:
            result["judge"] = self.judge.score(row.values, row.references, outputs[0])
        return result

    def summarise(self, results: dict[str, dict]) -> dict:
        return summarise(results, self.head)


def summarise(results: dict[str, dict], head: dict) -> dict:
    """A generation run's figures from its stored units (also how a re-opened unfinished run reads)."""
    from ..evals.metrics import mean_ci
    from .spec import Rubric

    rows = [r for r in results.values() if not r.get("labelled")]
    out = {"n": len(rows), "metrics": {m: aggregate(m, rows) for m in head["metrics"]} if rows else {},
           "tokens": sum(r.get("tokens") or 0 for r in rows), "judge": None, "agreement": None}
    if head.get("judge") and rows:
        scores = [r["judge"]["score"] for r in rows if r["judge"]["score"] is not None]
        low, high = mean_ci(scores) if scores else (None, None)
        out["judge"] = {"value": sum(scores) / len(scores) if scores else None, "low": low, "high": high,
                        "scored": len(scores), "unparsed": len(rows) - len(scores)}
    labelled = [r for r in results.values() if r.get("labelled")]
    if labelled:
        rubric = Rubric("", *head["rubric"])
        out["agreement"] = judging.agreement([r["score"] for r in labelled], [r["human"] for r in labelled],
                                             rubric)
    return out


class PairKind(_Kind):
    """Two models' outputs on the same rows, judged A/B and B/A: a unit per row."""

    def __init__(self, task: GenTask, rows: list[Row], source: str, runs: list, judge: judging.PairJudge,
                 ident_a: dict, ident_b: dict, store):
        self.task, self.judge = task, judge
        self.outputs = [{k: v["output"] for k, v in run.items_by_id.items()} for run in runs]
        self.rows = rows
        self.ident = {"pairwise": [fingerprint(ident_a), fingerprint(ident_b)],
                      **judge.identity(), "judge_model": model_identity(judge.model, store)}
        self.head = {"mode": "pairwise", "task": task.name, "source": source, "a": runs[0].model,
                     "b": runs[1].model, "judge": judge.name, "n_rows": len(rows)}
        self.model = f"{runs[0].model} vs {runs[1].model}"
        self.subject = f"{task.name} ({Path(source).name}) judged by {judge.name}"
        self.label = f"pairwise · {task.name}"

    def plan(self) -> list[Unit]:
        return [Unit(r.id, n, r) for n, r in enumerate(self.rows)]

    def run_unit(self, unit: Unit) -> dict:
        row = unit.payload
        a, b = (outputs[row.id] for outputs in self.outputs)
        return self.judge.compare(row.values, row.references, a, b)

    def summarise(self, results: dict[str, dict]) -> dict:
        return judging.pairwise_summary(list(results.values()))


def check_context(model, task: GenTask, rows: list[Row], name: str) -> None:
    ctx = model.info.context_length
    if not ctx:
        return
    need = task.config().max_new_tokens
    for row in rows:
        n = model.count_tokens(prompt_for(model, task, row))
        if n + need > ctx:
            raise DataError(f"row {row.id} is {n} tokens as a prompt, + {need} to generate = {n + need}, "
                            f"beyond the {ctx}-token context window of {name}; shorten or drop it "
                            "(or raise --n-ctx)")


def run_gentask(data, task, models=("smollm2",), *, judge=None, pairwise: bool = False, labelled=None,
                limit: int | None = None, db=None, fresh: bool = False, progress=False, out=None,
                model_options: dict | None = None, concurrency: int = 1) -> GenResult:
    """Generate with each model on the task's rows (``data`` None: the task's sample), score, and with
    ``judge`` (a model name or a loaded model) judge on the rubric and against ``labelled`` (the task's
    labelled sample when None); ``pairwise`` (two models) judges their outputs against each other."""
    from ..evals.api import _load_models
    from ..store import Store

    task = load(task)
    models = [models] if isinstance(models, str) or hasattr(models, "info") else list(models)
    if pairwise and (judge is None or len(set(map(str, models))) != 2):
        raise ConfigError("pairwise judging needs exactly two models (-m A -m B) and --judge")
    if judge is not None and task.rubric is None:
        raise ConfigError(f"task {task.name!r} has no `rubric:`; add one (criteria and scale) to judge it")
    notes = []
    if data is None:
        notes.append(f"the {task.name} sample written for llmlab ({task.data.name if task.data else '-'})")
    rows = read_rows(task, data, limit)
    source = str(data if data is not None else task.data)
    lab = None
    if judge is not None:
        lab_source = labelled if labelled is not None else task.labelled
        if lab_source is not None:
            lab_rows = read_rows(task, lab_source, extra=("output", "human_score"))
            lab = (lab_rows, judging.human_scores(lab_rows, task.rubric, lab_source), str(lab_source))
        else:
            notes.append("no labelled sample (a file of outputs with human_score): the judge's agreement "
                         "with people is unknown")
    if out is not None:
        from ..config import prepare_out

        prepare_out(out)
    runs, pair = [], None
    with ExitStack() as stack:  # the store and the models this call opened are closed however it ends
        store = db if isinstance(db, Store) else stack.enter_context(closing(Store.open(db)))
        loaded, owned = _load_models(models + ([judge] if judge is not None else []), model_options or {})
        for model in owned:
            stack.callback(model.close)
        names = [m if isinstance(m, str) else f"{m.backend}/{m.info.name}" for m in models]
        judge_model = None if judge is None else loaded[judge if isinstance(judge, str) else
                                                        f"{judge.backend}/{judge.info.name}"]
        rubric_judge = judging.RubricJudge(judge_model, task) if judge_model is not None else None
        kinds = []
        for name in dict.fromkeys(names):  # every check before any model generates
            check_context(loaded[name], task, rows, name)
            kinds.append(GenKind(task, rows, source, loaded[name], name, store, rubric_judge, lab))
        bar = stack.enter_context(nullcontext(progress) if hasattr(progress, "add_task")
                                  else progress_bar(bool(progress)))
        check_concurrency(concurrency, loaded.values())
        for kind in kinds:
            outcome = execute(kind, store, fresh=fresh, progress=bar, concurrency=concurrency)
            runs.append(GenRun.from_results(kind.model, outcome.run_id, outcome.results, outcome.summary,
                                            outcome.resumed))
        if pairwise:
            pk = PairKind(task, rows, source, runs, judging.PairJudge(judge_model, task), kinds[0].ident,
                          kinds[1].ident, store)
            outcome = execute(pk, store, fresh=fresh, progress=bar, concurrency=concurrency)
            pair = PairRun(pk.head, outcome.run_id, outcome.results, outcome.summary)
    if any(r.resumed for r in runs):
        notes.append("resumed from the store: " + ", ".join(f"{r.model} ({r.resumed} units)"
                                                            for r in runs if r.resumed))
    if pair is not None and pair.run_id is not None:
        notes.append(f"pairwise verdicts stored as run {pair.run_id}")
    result = GenResult(task.name, source, runs, pair, notes)
    if out is not None:
        result.save(out)
    return result
