"""Run a suite on a model: every prompt, every sample, judged, and the figures computed from them.

    >>> from llmlab import load_model
    >>> from llmlab.probes import load_suite, run_suite
    >>> run = run_suite(load_model("smollm2"), load_suite("hallucination"), samples=3)  # doctest: +SKIP
    >>> [(f.label, f.value) for f in run.figures if f.headline]                           # doctest: +SKIP

An instruct model with a chat template gets each prompt as a user message (after the check's system
message, if any); a base model gets the check's raw-text format (``Question: ...\\nAnswer:``, its answer
cut at the end of its first line by default), since a base model does not follow instructions.

How many samples: a check may pin its own; otherwise ``samples`` given to the run; otherwise the
suite's default. A greedy check asks each prompt once, because greedy decoding repeats itself --
except the ``distinct``, ``reproduce`` and ``flip`` measures, which compare samples and take at least
two (a figure's note says when more were taken than asked).
A generation that fails (e.g. a prompt longer than the context window) is recorded with its error
and left out of the figures; the run goes on.

A probe run is a kind of run (``ProbeKind`` on ``llmlab.runs``): one unit per prompt x sample, keyed
``check/item/sample``, stored as soon as it is judged; the figures are the summary, computed from the
stored records. With a store, a run stopped by Ctrl-C or a kill resumes where it stopped when the
same run (same suite file, model file, judge and options) starts again, and ends with the figures
an uninterrupted run gives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..checks import utc_now, whole_number
from ..errors import LlmlabError
from ..models.stops import find_stop
from ..runs import RunKind, Unit, execute, model_identity
from ..runs.runner import check_concurrency
from .judges import Judge
from .llm_judge import LLMJudge, agreement
from .measures import Figure, Record, figures_for
from .suite import Check, Suite


@dataclass
class ProbeRun:
    """One model on one suite: its settings, every record and the figures computed from them."""
    suite: Suite
    model: str                 # backend/name
    model_info: dict
    records: list[Record]
    figures: list[Figure]
    judge: str                 # "rules" or the LLM judge's name
    options: dict = field(default_factory=dict)
    started: str = ""
    finished: str = ""
    id: int | None = None      # the run's id in the store once stored
    checks: list[dict] | None = None  # name, description, measure, judge (described), settings
    resumed: int = 0           # answers found already stored when the run started
    reopened: bool = False     # read back from the store: priced at today's prices

    def __post_init__(self):
        if self.checks is None:
            self.checks = check_infos(self.suite)

    def records_of(self, check: str) -> list[Record]:
        return [r for r in self.records if r.check == check]

    def figures_of(self, check: str) -> list[Figure]:
        return [f for f in self.figures if f.check == check]

    @property
    def cost(self) -> tuple:
        """Tokens, CPU time and estimated cost per model (the judge too): (table or None, notes,
        model -> figures), from every record's stored usage."""
        from ..tally import cost_section

        return cost_section([{"usage": r.usage} for r in self.records], self.reopened)

    def to_dict(self) -> dict:
        return {
            "id": self.id, "suite": self.suite.name, "suite_path": str(self.suite.path),
            "suite_sha256": self.suite.sha256, "model": self.model, "model_info": self.model_info,
            "judge": self.judge, "options": self.options, "started": self.started,
            "finished": self.finished,
            "checks": self.checks,
            "figures": [f.to_dict() for f in self.figures],
            "cost": {"models": self.cost[2], "notes": self.cost[1]},
            "records": [r.to_dict() for r in self.records],
        }


def check_positive(name: str, value: int | None) -> None:
    if value is not None:
        whole_number(name, value)


COMPARING = ("distinct", "reproduce", "flip")  # measures that compare samples of one prompt


def samples_for(check: Check, suite: Suite, samples: int | None) -> int:
    n = check.samples or samples or suite.samples
    if check.measure in COMPARING:
        return max(n, 2)
    return 1 if check.settings.greedy else n


def plan(suite: Suite, samples: int | None = None, limit: int | None = None) -> list[tuple[Check, list, int]]:
    """(check, items, samples) for each check: what a run will generate."""
    return [(c, c.items[:limit] if limit else c.items, samples_for(c, suite, samples)) for c in suite.checks]


def count_generations(suite: Suite, samples: int | None = None, limit: int | None = None) -> int:
    return sum(len(items) * n for _, items, n in plan(suite, samples, limit))


def record_key(check: str, item: str, sample: int) -> str:
    """A probe unit's stable key: check, item id and sample number (from 1)."""
    return f"{check}/{item}/{sample}"


@dataclass
class SuiteInfo:
    """What a report needs of a suite, read back from a stored run (the file may have changed since)."""
    name: str
    path: str | None
    sha256: str
    description: str = ""


class ProbeKind(RunKind):
    """One model on one suite as a kind of run: a unit per prompt x sample, judged as it is answered."""

    kind = "probe"
    tally = True  # each answer stores what it spent, per model (the judge's too)

    def __init__(self, model, suite: Suite, samples=None, limit=None, max_new_tokens=None, judge_model=None,
                 store=None, progress: Callable[[Record], None] | None = None):
        self.model_obj, self.suite, self.samples, self.judge_model = model, suite, samples, judge_model
        self.chat = model.chats
        self.callback = progress
        self.model, self.subject = f"{model.backend}/{model.info.name}", suite.name
        self.label = f"{self.model} · {suite.name}"
        self.judge = f"{judge_model.backend}/{judge_model.info.name}" if judge_model is not None else "rules"
        self.options = {"samples": samples, "limit": limit, "max_new_tokens": max_new_tokens,
                        "prompt_format": "chat" if self.chat else "raw"}
        self.checks = []  # (check, items, samples, judge, config)
        for check, items, n in plan(suite, samples, limit):
            judge: Judge | None = check.judge
            if judge is not None and judge_model is not None:
                judge = LLMJudge(judge_model, judge)
            config = check.settings
            if max_new_tokens:
                config = config.replace(max_new_tokens=min(config.max_new_tokens, max_new_tokens))
            self.checks.append((check, items, n, judge, config))
        ident = {"suite": suite.sha256, "suite_name": suite.name, "model": model_identity(model, store),
                 "judge": model_identity(judge_model, store) if judge_model is not None else "rules",
                 "options": self.options}
        runtime = dict(getattr(model, "runtime", {}) or {})
        if "extra_buffer_types" in runtime:  # repacked weights may round differently: not the same run
            ident["extra_buffer_types"] = runtime["extra_buffer_types"]
        self.ident = ident
        self.started = _now()

    def identity(self) -> dict:
        return self.ident

    def header(self) -> dict:
        return {"model": self.model, "suite": self.suite.name, "suite_path": str(self.suite.path),
                "suite_sha256": self.suite.sha256,
                "description": self.suite.description, "model_info": _info(self.model_obj),
                "judge": self.judge, "options": self.options, "checks": check_infos(self.suite)}

    def plan(self) -> list[Unit]:
        units = []
        for ci, (check, items, n, _, _) in enumerate(self.checks):
            for item in items:
                for s in range(n):
                    units.append(Unit(record_key(check.name, item.id, s + 1), len(units), (ci, item, s)))
        return units

    def run_unit(self, unit: Unit) -> dict:
        ci, item, s = unit.payload
        check, _, _, judge, config = self.checks[ci]
        user = check.user_prompt(item)
        if self.chat:
            sent = [{"role": "system", "content": check.system}] if check.system else []
            sent.append({"role": "user", "content": user})
        else:
            sent = check.base_prompt(item)
        record = _generate(self.model_obj, sent, config, unit.seq + 1, check, item, s, user,
                           () if self.chat else tuple(check.base_stop))
        if judge is not None and record.error is None:
            if record.answer.strip():
                v = judge(record.answer, {**item.fields, "prompt": user})
                record.verdict, record.reason = v.label, v.reason
                record.detail = {**record.detail, **v.detail}
            else:
                record.reason = "empty answer: not judged"
        if self.callback:
            self.callback(record)
        return record.to_dict()

    def summarise(self, results: dict[str, dict]) -> dict:
        records = [Record(**r) for r in results.values()]
        figures: list[Figure] = []
        for check, _, n, judge, _ in self.checks:
            found = _figures(check, judge, [r for r in records if r.check == check.name])
            asked = check.samples or self.samples or self.suite.samples
            if check.measure in COMPARING and n > asked:  # said, not done silently
                for f in found:
                    f.note = "; ".join(x for x in (f.note, f"{n} samples per prompt, not {asked}: the "
                                                   f"{check.measure} measure compares samples") if x)
            figures += found
        return {"figures": [f.to_dict() for f in figures], "started": self.started, "finished": _now()}


def run_suite(model, suite: Suite, *, samples: int | None = None, limit: int | None = None,
              max_new_tokens: int | None = None, judge_model=None,
              progress: Callable[[Record], None] | None = None, store=None, fresh: bool = False,
              bar=None, concurrency: int = 1) -> ProbeRun:
    """Run every check of ``suite`` on ``model``; ``limit`` keeps the first N items of each check,
    ``max_new_tokens`` caps the checks' own setting, ``judge_model`` replaces rule verdicts. With a
    ``store`` every answer is stored as it is judged and a stopped run resumes (``fresh`` starts
    anew); ``progress`` is called with each new record, ``bar`` is a ``llmlab.runs.progress_bar``;
    ``concurrency`` > 1 asks a remote model (and judge) that many prompts at once."""
    check_positive("samples", samples)
    check_positive("limit", limit)
    check_positive("max_new_tokens", max_new_tokens)
    check_concurrency(concurrency, [model, judge_model])
    kind = ProbeKind(model, suite, samples, limit, max_new_tokens, judge_model, store, progress)
    outcome = execute(kind, store, fresh=fresh, progress=bar, concurrency=concurrency)
    run = probe_run(kind.header(), outcome.results, outcome.summary, suite, outcome.run_id)
    run.resumed = outcome.resumed
    return run


def probe_run(header: dict, results: dict[str, dict], summary: dict, suite=None, run_id=None) -> ProbeRun:
    """A ProbeRun from a stored (or just finished) run's header, units and summary."""
    checks = header.get("checks") or [  # a run stored before headers kept the checks: their names
        {"name": c, "description": "", "measure": "", "judge": None, "settings": {}}
        for c in dict.fromkeys(r["check"] for r in results.values())]
    suite = suite or SuiteInfo(header["suite"], header.get("suite_path"), header.get("suite_sha256") or "",
                               header.get("description") or "")
    return ProbeRun(suite=suite, model=header.get("model") or header.get("model_info", {}).get("name", ""),
                    model_info=header.get("model_info") or {},
                    records=[Record(**r) for r in results.values()],
                    figures=[Figure(**f) for f in summary.get("figures", [])], judge=header["judge"],
                    options=header.get("options") or {}, started=summary.get("started", ""),
                    finished=summary.get("finished", ""), id=run_id, checks=checks)


def probe_header(run: dict) -> dict:
    """A stored probe run's header from ``ProbeRun.to_dict()``."""
    return {k: run.get(k) for k in ("suite", "suite_path", "suite_sha256", "model", "model_info", "judge",
                                    "options", "checks")}


def check_infos(suite: Suite) -> list[dict]:
    return [{"name": c.name, "description": c.description, "measure": c.measure,
             "judge": (c.judge.describe() if c.judge else None), "settings": c.settings.to_dict()}
            for c in suite.checks]


def _generate(model, sent, config, rid: int, check: Check, item, sample: int, user: str,
              base_stop: tuple[str, ...] = ()) -> Record:
    """One answer. A base model writes on past its answer, so its text is cut at the check's
    ``base_stop`` strings, after any leading whitespace: Gemma often starts with a blank line, and
    stopping generation there would leave it no answer at all."""
    record = Record(id=rid, check=check.name, item=item.id, sample=sample + 1, prompt=user, input=sent,
                    answer="", group=item.group, settings=config.to_dict())
    try:
        response = model.generate(sent, config)
    except LlmlabError as exc:  # recorded and left out of the figures; one bad prompt ends nothing
        record.error = f"{type(exc).__name__}: {exc}"
        record.reason = "generation failed"
        return record
    record.answer = response.text
    if base_stop:
        body = response.text.lstrip()
        cut = find_stop(body, base_stop)
        if cut is not None:
            record.answer = body[:cut]
            record.detail = {"generated": response.text}  # the whole text, before the cut
    record.call_id = response.log_id
    return record


def _figures(check: Check, judge: Judge | None, records: list[Record]) -> list[Figure]:
    if judge is not None and judge is not check.judge:
        check = _with_judge(check, judge)
    figures = figures_for(check, records)
    if isinstance(judge, LLMJudge):
        same, total = agreement(records)
        figures.append(Figure(check.name, "LLM judge agrees with rules", same / total if total else None,
                              f"{same} of {total} answers",
                              [r.id for r in records if r.verdict == r.detail.get("rule_verdict")],
                              [r.id for r in records if "rule_verdict" in r.detail]))
    return figures


def _with_judge(check: Check, judge: Judge) -> Check:
    from dataclasses import replace

    return replace(check, judge=judge)


def _info(model) -> dict:
    i = model.info
    return {"name": i.name, "backend": model.backend, "path": i.path, "parameters": i.parameters,
            "quantization": i.quantization, "instruct": i.instruct}


def _now() -> str:
    return utc_now()


def save_run(store, run: dict) -> int:
    """Write a finished probe run (``ProbeRun.to_dict()``) and all its records in one transaction: for
    a run made without a store (``run_suite(..., store=None)``), which ``llmlab runs`` then lists."""
    with store.transaction():
        run_id, _ = store.open_run("probe", f"saved:{utc_now()}", probe_header(run), model=run["model"],
                                  subject=run["suite"], planned=len(run["records"]), fresh=True)
        for r in run["records"]:
            store.add_unit(run_id, record_key(r["check"], r["item"], r["sample"]), r["id"] - 1, r)
        store.finish_run(run_id, {"figures": run["figures"], "started": run["started"],
                                 "finished": run["finished"]})
    return run_id
