"""Running systems (model x strategy x method x repeat) over a dataset, resumably, into the store.

Each system is one run in the SQLite store (a ``SystemKind`` of run on ``llmlab.runs``: one unit per
item), identified by a fingerprint of everything that shapes its predictions: the items, the task and
strategy, the model file, the method and its settings. Every finished item is written at once, so a
run stopped by Ctrl-C or a kill is picked up where it stopped the next time the same evaluation
starts, and finished items are never computed again. Each item stores the tokens it read and wrote
and its CPU time, so a resumed run's cost (``llmlab.cost``) covers every item.
Before any model computes anything, every prompt is checked against its model's context window.

What it gives up: items run one after another (llama.cpp reuses the shared prompt prefix instead of
batching items); a changed task file, model file or setting starts a fresh run rather than mixing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..checks import whole_number
from ..cost import meter, usage
from ..errors import ConfigError, DataError
from ..runs import RunKind, Unit, execute
from ..runs.protocol import fingerprint, model_identity  # noqa: F401 (re-exported: the eval API's names)
from ..tasks import UNPARSED, prompt_for
from ..tasks.spec import Strategy, TaskSpec
from . import baseline as baseline_mod
from .data import Dataset
from .methods import METHODS, Method, make_method


@dataclass(frozen=True)
class System:
    model: str        # the name the user gave, or the loaded model's backend/name
    strategy: str
    method: str
    repeat: int = 0
    repeats: int = 1

    @property
    def name(self) -> str:
        # no "|": names go into markdown tables
        base = f"{self.model} · {self.strategy} · {self.method}"
        return base + (f" · #{self.repeat + 1}" if self.repeats > 1 else "")


@dataclass
class SystemRun:
    """One system's predictions, item by item in dataset order."""

    system: System
    run_id: int | None
    items: list[dict]              # id, pred ("(unparsed)" when none), raw, scores, seconds
    resumed: int = 0               # items found already finished in the store
    meta: dict = field(default_factory=dict)


def plan(models: list[str], strategies: list[str], methods: list[str], repeats: int,
         generation: dict, recipes: list[tuple[str, str]] | None = None) -> list[System]:
    """The systems to run: each model x (every strategy x every method, or the given
    ``(strategy, method)`` recipes); deterministic ones (score, greedy generate) run once whatever
    ``repeats``."""
    pairs = list(recipes) if recipes else [(s, m) for s in strategies for m in methods]
    for _, m in pairs:
        if m not in METHODS:
            raise ConfigError(f"unknown method {m!r}; use one of: {', '.join(METHODS)}")
    whole_number("--repeats", repeats)
    sampled = generation.get("temperature", 0) != 0 and generation.get("do_sample", True)
    if sampled and repeats > 1 and generation.get("seed") is not None:
        from ..config import GenerationConfig

        last = generation["seed"] + repeats - 1  # repeat k samples with seed + k
        try:
            GenerationConfig(seed=last)
        except ConfigError as exc:
            raise ConfigError(f"--seed {generation['seed']} with --repeats {repeats} reaches seed {last}: "
                              f"{exc}") from None
    out = []
    for model in models:
        for strategy, method in pairs:
            n = repeats if method == "generate" and sampled else 1
            out.extend(System(model, strategy, method, r, n) for r in range(n))
    return out


def check_context(model, task: TaskSpec, strategy: Strategy, method: Method, dataset: Dataset,
                  label: str) -> None:
    """Fail before running if any item's prompt plus what the method needs exceeds the window."""
    ctx = model.info.context_length
    if not ctx:
        return
    need = method.budget(model, task, strategy)
    # tokenizing every full prompt is exact but slow on big files: estimate from the text alone,
    # and count exactly only the items the estimate puts near or over the limit
    overhead = model.count_tokens(prompt_for(model, task, strategy, ""))
    for item_id, text in zip(dataset.frame["id"], dataset.frame["text"], strict=True):
        if overhead + len(model.tokenize(text)) + need + 8 <= ctx:
            continue
        n = model.count_tokens(prompt_for(model, task, strategy, text))
        if n + need > ctx:
            raise DataError(
                f"{dataset.source}: row {item_id} is {n} tokens as a {strategy.name} prompt, + {need} "
                f"for the answer = {n + need}, beyond the {ctx}-token context window of {label}; "
                "shorten or drop that row (or raise --n-ctx)")


class SystemKind(RunKind):
    """One system over a dataset as a kind of run: a unit per item, keyed by the item's id."""

    kind = "eval"

    def __init__(self, system: System, model, task: TaskSpec, dataset: Dataset, store, generation: dict):
        self.system, self.model_obj, self.task, self.dataset = system, model, task, dataset
        self.strategy = task.strategy(system.strategy)
        gen = dict(generation)
        if system.repeats > 1:  # each repeat samples with its own seed, so repeats differ but reproduce
            gen["seed"] = gen.get("seed", 0) + system.repeat
        self.method = make_method(system.method, gen)
        self.ident = {"dataset": dataset.sha256, "task": task.fingerprint(system.strategy),
                      "model": model_identity(model, store), "method": system.method,
                      "settings": self.method.settings(self.strategy), "repeat": system.repeat}
        self.runtime = dict(getattr(model, "runtime", {}) or {})
        if "extra_buffer_types" in self.runtime:  # repacked weights may round differently: not the same run
            self.ident["extra_buffer_types"] = self.runtime["extra_buffer_types"]
        self.model, self.subject, self.label = system.model, task.name, system.name
        self.setup: dict = {}

    def identity(self) -> dict:
        return self.ident

    def header(self) -> dict:
        return eval_header(self.system, self.task, self.dataset, {"identity": self.ident})

    def plan(self) -> list[Unit]:
        frame = self.dataset.frame[["id", "text", "gold"]]
        return [Unit(str(i), n, (i, t, g)) for n, (i, t, g) in enumerate(frame.itertuples(index=False))]

    def start(self, todo: list[Unit]) -> None:
        if todo or self.system.method == "calibrate":
            self.setup = self.method.setup(self.model_obj, self.task, self.strategy)

    def run_unit(self, unit: Unit) -> dict:
        _, text, gold = unit.payload
        clock = meter()
        result = self.method.predict(text)
        return {**result, "pred": result["pred"] or UNPARSED, "gold": gold, "cpu_s": clock()["cpu_s"]}

    def summarise(self, results: dict[str, dict]) -> dict:
        self.items, extra = final_items(self.method, results, self.dataset.frame["id"])
        return {**self.setup, **extra, "settings": self.method.settings(self.strategy),
                "runtime": self.runtime, "usage": usage(self.model_obj, self.system.model, results.values())}


class BaselineKind(RunKind):
    """The supervised baseline as a kind of run: 5-fold predictions for every item at once, stored
    per item."""

    kind = "eval"

    def __init__(self, dataset: Dataset, task: TaskSpec | None = None):
        self.dataset, self.task = dataset, task
        self.system = System(baseline_mod.NAME, "-", "supervised")
        self.ident = {"dataset": dataset.sha256, "baseline": baseline_mod.settings()}
        self.model, self.subject, self.label = baseline_mod.NAME, "-", self.system.name
        self.preds: dict = {}

    def identity(self) -> dict:
        return self.ident

    def header(self) -> dict:
        return {**eval_header(self.system, self.task, self.dataset, self.ident), "task": "-"}

    def plan(self) -> list[Unit]:
        pairs = zip(self.dataset.frame["id"], self.dataset.frame["gold"], strict=True)
        return [Unit(str(i), n, (i, g)) for n, (i, g) in enumerate(pairs)]

    def start(self, todo: list[Unit]) -> None:
        if todo:  # cross-validation needs every item together: all are computed once, stored one by one
            frame = self.dataset.frame
            clock = meter()
            preds, seconds = baseline_mod.predict(list(frame["text"]), list(frame["gold"]))
            cpu = clock()["cpu_s"]
            share = (seconds / len(frame), None if cpu is None else cpu / len(frame))
            self.preds = {str(i): (p, *share) for i, p in zip(frame["id"], preds, strict=True)}

    def run_unit(self, unit: Unit) -> dict:
        pred, seconds, cpu = self.preds[unit.key]
        return {"pred": pred, "raw": pred, "scores": None, "seconds": seconds, "cpu_s": cpu,
                "gold": unit.payload[1]}

    def summarise(self, results: dict[str, dict]) -> dict:
        return {"usage": baseline_usage(results.values())}


def baseline_usage(results) -> dict:
    """The baseline's usage: no tokens (it embeds, it does not prompt), its CPU time."""
    results = list(results)
    cpu = [r.get("cpu_s") for r in results]
    return {"model": baseline_mod.NAME, "name": baseline_mod.NAME, "in_process": True,
            "units": len(results), "counted": len(results), "input_tokens": 0, "output_tokens": 0,
            "cpu_s": None if None in cpu else sum(cpu),
            "seconds": sum(r.get("seconds") or 0 for r in results)}


def eval_header(system: System, task: TaskSpec | None, dataset: Dataset, settings: dict) -> dict:
    """What re-opening an evaluation run needs: the old eval_runs columns, the labels and columns."""
    return {"dataset": dataset.source, "dataset_sha256": dataset.sha256, "task": task.name if task else "-",
            "model": system.model, "strategy": system.strategy, "method": system.method,
            "repeat": system.repeat, "repeats": system.repeats, "settings": settings, "n_items": len(dataset),
            "labels": list(task.labels) if task else None, "task_source": getattr(task, "source", None),
            "text_column": dataset.text_col, "label_column": dataset.label_col}


def run_system(system: System, model, task: TaskSpec, dataset: Dataset, store, generation: dict,
               progress=None, fresh: bool = False, concurrency: int = 1) -> SystemRun:
    kind = SystemKind(system, model, task, dataset, store, generation)
    outcome = execute(kind, store, fresh=fresh, progress=progress, concurrency=concurrency)
    return SystemRun(system, outcome.run_id, kind.items, outcome.resumed, outcome.summary)


def run_baseline(dataset: Dataset, store, progress=None, task: TaskSpec | None = None) -> SystemRun:
    kind = BaselineKind(dataset, task)
    outcome = execute(kind, store, progress=progress)
    return SystemRun(kind.system, outcome.run_id, _ordered(outcome.results, dataset.frame["id"]),
                     meta=outcome.summary)


def final_items(method, results: dict[str, dict], ids) -> tuple[list[dict], dict]:
    """The predictions a system reports, in dataset order, from its stored per-item results: batch
    calibration needs every item's scores first, so it recalibrates them here (and says its prior)."""
    items = _ordered(results, ids)
    extra = method.finalize(items) if method is not None and hasattr(method, "finalize") else {}
    return items, extra


def _ordered(results: dict[str, dict], ids=None) -> list[dict]:
    """Results in plan (dataset) order, with the dataset's own ids where given."""
    ids = list(results) if ids is None else list(ids)
    return [{"id": i, **_clean(r)} for i, r in zip(ids, results.values(), strict=True)]


def _clean(result: dict) -> dict:
    return {k: result.get(k) for k in ("pred", "raw", "scores", "seconds", "input_tokens", "output_tokens",
                                       "cpu_s")}


@dataclass(frozen=True)
class TaskInfo:
    """What a report needs of a task, read back from a stored run."""
    name: str
    labels: tuple[str, ...]
    source: str | None = None


def reopen(store, rows: list[dict]):
    """An ``EvalResult`` from stored evaluation runs (one per system), without a model or the data
    file: the predictions, gold labels and settings are in the store. The texts are not stored, so the
    predictions' ``text`` column is empty."""
    import pandas as pd

    from .report import EvalResult

    ids = [r["id"] for r in rows]
    for r in rows:
        if r["state"] != "finished":
            raise ConfigError(f"run {r['id']} is unfinished ({r['done']} of {r['planned']} items); run the "
                              "same llmlab eval command again to finish it")
    if len({r["header"].get("dataset_sha256") for r in rows}) > 1:
        raise ConfigError(f"runs {', '.join(map(str, ids))} were not evaluated on the same data; re-open "
                          "runs of one evaluation together")
    units = [store.units(r["id"]) for r in rows]
    keys = list(units[0])
    if any(set(u) != set(keys) for u in units):
        raise ConfigError(f"runs {', '.join(map(str, ids))} did not predict the same items")
    prompted = [r["header"] for r in rows if r["header"].get("method") != "supervised"] or [rows[0]["header"]]
    h = prompted[0]
    gold = [units[0][k]["gold"] for k in keys]
    task = TaskInfo(h.get("task") or "-", tuple(h.get("labels") or sorted(set(gold))), h.get("task_source"))
    frame = pd.DataFrame({"id": keys, "text": [""] * len(keys), "gold": gold})
    dataset = Dataset(frame, h.get("dataset") or "", h.get("text_column") or "text",
                      h.get("label_column") or "label", h.get("dataset_sha256") or "")
    runs = []
    for row, u in zip(rows, units, strict=True):
        x = row["header"]
        system = System(x.get("model") or row["model"], x.get("strategy") or "-", x.get("method") or "-",
                        x.get("repeat") or 0, x.get("repeats") or 1)
        method = make_method(system.method, {}) if system.method in METHODS else None
        items, _ = final_items(method, {k: u[k] for k in keys}, keys)
        runs.append(SystemRun(system, row["id"], items, 0, row["summary"] or {}))
    result = EvalResult(dataset, task, runs, [f"re-opened from the store (runs {', '.join(map(str, ids))})"])
    result.reopened = True  # its cost is at today's prices
    return result


def show_runs(store, rows: list[dict], fmt: str, console) -> str | None:
    """Stored eval runs re-opened (one evaluation's systems together): printed, or markdown or CSV."""
    result = reopen(store, rows)
    if fmt == "markdown":
        return result.to_markdown()
    if fmt == "csv":
        return result.table.to_csv(index=False)
    result.print(console)
    return None
