"""``llmlab agent eval``: agent tasks run k times per model, scored, in one table with intervals.

Each model is a stored, resumable run (kind ``agent``): one unit per task and trial, holding the
answer, the calls made, whether the calls and the answer match (``tasks.py``: BFCL's structural call
matching, irrelevance as "no call when none fits") and the task's success (every check it has). A
trial ``t`` samples with seed ``seed + t``; with ``temperature 0`` every trial is the same, so
repeats only make sense with sampling.

Per model the table gives, with 95% bootstrap intervals over tasks: call accuracy (tasks with
expected calls), irrelevance (share of no-tool tasks with no call), answer accuracy, and pass^k for
k = 1..repeats as τ-bench defines it: for a task with n trials of which c succeed, the chance that k
trials drawn without replacement all succeed, C(c, k) / C(n, k), averaged over tasks. pass^1 is the
mean success rate; pass^k falls as k grows unless the agent is reliable, which is the point. Each
trial stores what its replies spent (``llmlab.tally``), which the report prices per model; with a
remote model, trials can run several at a time (``concurrency``), their tool calls one at a time.

What it gives up: tasks are scored on their calls and final answer only, not on the path between;
trials run at once wait for each other's tool calls.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..checks import whole_number
from ..config import GenerationConfig
from ..errors import ConfigError
from ..runs import RunKind, Table, Unit, execute, model_identity, progress_bar
from .agent import DEFAULT_MAX_STEPS, Agent
from .tasks import AgentTask, answer_matches, calls_match, read_tasks


def pass_hat_k(trials: list[list[bool]], k: int) -> list[float]:
    """τ-bench's pass^k per task: C(c, k) / C(n, k) for c successes in n trials."""
    from scipy.special import comb

    out = []
    for results in trials:
        n, c = len(results), sum(results)
        if n < k:
            raise ConfigError(f"pass^{k} needs at least {k} trials per task, got {n}")
        out.append(float(comb(c, k, exact=True) / comb(n, k, exact=True)))
    return out


def score(task: AgentTask, answer: str | None, calls: list[tuple[str, str]]) -> dict:
    """A trial's checks: calls (when expected_calls is given), answer (when expected_answer is)."""
    out: dict = {}
    if task.expected_calls is not None:
        out["calls_ok"] = calls_match(task.expected_calls, calls)
    if task.expected_answer is not None:
        out["answer_ok"] = answer_matches(task.expected_answer, answer)
    out["success"] = all(out.values())
    return out


class AgentEvalKind(RunKind):
    """One model over the tasks, ``repeats`` trials each."""

    kind = "agent"
    tally = True  # each trial stores what its replies spent

    def __init__(self, model, tasks: list[AgentTask], tools: dict, *, source: str, digest: str,
                 repeats: int, config: GenerationConfig, constrained: bool, examples: bool,
                 max_steps: int, store):
        self.m, self.tasks, self.tools = model, tasks, tools
        self.repeats, self.config, self.constrained = repeats, config, constrained
        self.examples, self.max_steps, self.source = examples, max_steps, source
        self.model, self.subject = f"{model.backend}/{model.info.name}", Path(source).name
        self.label = f"agent {self.model}"
        self.ident = {"tasks": digest, "model": model_identity(model, store), "repeats": repeats,
                      "settings": config.to_dict(), "constrained": constrained, "examples": examples,
                      "max_steps": max_steps}

    def identity(self) -> dict:
        return self.ident

    def header(self) -> dict:
        return {"tasks": self.source, "n_tasks": len(self.tasks), "repeats": self.repeats,
                "settings": self.config.to_dict(), "constrained": self.constrained,
                "examples": self.examples, "max_steps": self.max_steps,
                "mode": call_mode(self.m, self.constrained)}

    def plan(self) -> list[Unit]:
        return [Unit(f"{t.id}/{trial}", i * self.repeats + trial, (t, trial))
                for i, t in enumerate(self.tasks) for trial in range(self.repeats)]

    def run_unit(self, unit: Unit) -> dict:
        task, trial = unit.payload
        config = self.config
        if config.seed is not None:
            config = config.replace(seed=config.seed + trial)
        agent = Agent(self.m, self.tools[task.id], max_steps=self.max_steps, config=config,
                      constrained=self.constrained, examples=self.examples)
        start = time.perf_counter()
        run = agent.run(task.request)
        calls = [(s.tool, s.arguments or "{}") for s in run.calls]
        return {"task": task.id, "trial": trial, "category": task.category, "answer": run.answer,
                "stopped": run.stopped, "calls": [{"name": n, "arguments": a} for n, a in calls],
                "steps": len([s for s in run.steps if s.kind == "reply"]),
                "call_ids": [s.call_id for s in run.steps if s.call_id is not None],
                "seconds": round(time.perf_counter() - start, 3), **score(task, run.answer, calls)}

    def summarise(self, results: dict[str, dict]) -> dict:
        return figures(self.tasks, list(results.values()), self.repeats)


def call_mode(model, constrained: bool) -> str:
    """How a model's calls are made: "native" (its server's tool calls), "constrained" or not."""
    if model.can("tools"):
        return "native"
    return "constrained" if constrained else "unconstrained"


def figures(tasks: list[AgentTask], results: list[dict], repeats: int) -> dict:
    """The table's numbers for one model, from its stored trial results."""
    from ..evals.metrics import mean_ci

    by_task: dict[str, list[dict]] = {}
    for r in results:
        by_task.setdefault(r["task"], []).append(r)
    kinds = {t.id: t for t in tasks}

    def share(key: str, which) -> dict | None:
        per = [sum(bool(r[key]) for r in rs) / len(rs) for tid, rs in by_task.items()
               if tid in kinds and which(kinds[tid]) and key in rs[0]]
        if not per:
            return None
        low, high = mean_ci(per)
        return {"value": sum(per) / len(per), "low": low, "high": high, "n": len(per)}

    out = {"tasks": len(by_task), "repeats": repeats,
           "calls": share("calls_ok", lambda t: t.expected_calls and not t.irrelevance),
           "irrelevance": share("calls_ok", lambda t: t.irrelevance),
           "answer": share("answer_ok", lambda t: t.expected_answer is not None),
           "steps": sum(r["steps"] for r in results) / max(len(results), 1),  # 0 for an empty run
           "seconds": sum(r["seconds"] for r in results) / max(len(results), 1),
           "pass": {}}
    trials = [[bool(r["success"]) for r in rs] for rs in by_task.values()]
    for k in range(1, repeats + 1):
        per = pass_hat_k([t for t in trials if len(t) >= k], k)  # an unfinished run: tasks that have k
        if not per:
            continue
        low, high = mean_ci(per)
        out["pass"][str(k)] = {"value": sum(per) / len(per), "low": low, "high": high, "n": len(per)}
    return out


@dataclass
class AgentEvalResult:
    source: str
    rows: list[dict] = field(default_factory=list)  # per model: name, mode, run_id, figures, results
    reopened: bool = False  # from the store: priced at today's prices

    @property
    def cost(self) -> tuple:
        """Tokens, CPU time and estimated cost per model (and call mode), from every trial's stored
        usage: (table or None, notes, label -> figures)."""
        from ..cost import report
        from ..tally import run_usage

        modes = len({r["mode"] for r in self.rows}) > 1
        rows = [(f"{row['model']} · {row['mode']}" if modes else row["model"], use)
                for row in self.rows for _, use in run_usage(row["results"], only=row["model"])]
        return report(rows, reopened=self.reopened, what="model") if rows else (None, [], {})

    def table(self) -> Table:
        repeats = max((r["figures"]["repeats"] for r in self.rows), default=1)
        ks = [1] + ([repeats] if repeats > 1 else [])
        na = {"value": float("nan")}
        cols = ["model", "calls", "tasks", "call match", "irrelevance", "answer",
                *(f"pass^{k}" for k in ks), "steps", "s/task"]
        t = Table(cols, title=f"agent tasks: {self.source} (95% intervals over tasks)", title_justify="left")
        for row in self.rows:
            f = row["figures"]
            t.add_row(row["model"], row["mode"], str(f["tasks"]), _ci(f["calls"]), _ci(f["irrelevance"]),
                      _ci(f["answer"]), *(_ci(f["pass"].get(str(k), na)) for k in ks), f"{f['steps']:.1f}",
                      f"{f['seconds']:.1f}")
        return t

    def trials(self) -> list[dict]:
        return [{"model": row["model"], "mode": row["mode"], **r}
                for row in self.rows for r in row["results"]]

    def print(self, console=None) -> None:
        from rich.console import Console

        from ..tally import print_cost

        console = console or Console()
        console.print(self.table().to_rich())
        print_cost(*self.cost[:2], console)

    def save(self, out) -> list[Path]:
        import json

        from ..tally import markdown_with_cost

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        files = [out / "agent_eval.md", out / "agent_eval.csv", out / "trials.jsonl"]
        cost, notes, _ = self.cost
        files[0].write_text(markdown_with_cost([self.table()], cost, notes), encoding="utf-8")
        files[1].write_text(self.table().to_csv(), encoding="utf-8")
        files[2].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.trials()),
                            encoding="utf-8")
        return files


def _ci(x: dict | None) -> str:
    if x is None or x["value"] != x["value"]:  # none, or NaN: nothing to show
        return "-"
    return f"{x['value']:.2f} [{x['low']:.2f}, {x['high']:.2f}]"


def agent_eval(tasks_source: str | Path, models: list, *, repeats: int = 1, temperature: float = 0.0,
               seed: int = 0, max_new_tokens: int = 96, constrained: bool = True, examples: bool = True,
               max_steps: int = DEFAULT_MAX_STEPS, limit: int | None = None, db=None, fresh: bool = False,
               progress: bool = False, store=None, model_options: dict | None = None,
               concurrency: int = 1) -> AgentEvalResult:
    """Run the tasks with each model (names or loaded models) and score them; see the module doc.
    ``concurrency`` > 1 runs that many trials at once (remote models only); tools still run one call
    at a time."""
    from ..models.registry import load_model
    from ..runs.runner import check_concurrency
    from ..store import Store

    if not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"--repeats must be a whole number >= 1, got {repeats!r}")
    tasks, base = read_tasks(tasks_source)
    tasks = tasks[:limit] if limit else tasks
    source = str(tasks_source)
    digest = hashlib.sha256(repr(tasks).encode()).hexdigest()
    config = GenerationConfig(temperature=temperature, seed=seed, max_new_tokens=max_new_tokens)
    from .builtin import builtin_tools

    whole_number("--concurrency", concurrency)
    made: dict[tuple[str, ...], list] = {}
    tools, lock = {}, threading.Lock()
    for t in tasks:  # a bad tool name fails before any model loads
        if t.tools not in made:
            made[t.tools] = builtin_tools(list(t.tools), base=base, store=store)
            if concurrency > 1:
                made[t.tools] = [one_at_a_time(x, lock) for x in made[t.tools]]
        tools[t.id] = made[t.tools]
    result = AgentEvalResult(source)
    db_store = db if isinstance(db, Store) else Store.open(db)
    try:
        for spec in models:
            model = load_model(spec, log=False, **(model_options or {})) if isinstance(spec, str) else spec
            try:
                check_concurrency(concurrency, [model])
            except ConfigError:
                if isinstance(spec, str):
                    model.close()
                raise
            old_logger = model.logger
            if model.logger is None:
                model.logger = db_store.log_response
            try:
                kind = AgentEvalKind(model, tasks, tools, source=source, digest=digest, repeats=repeats,
                                     config=config, constrained=constrained, examples=examples,
                                     max_steps=max_steps, store=db_store)
                with progress_bar(progress) as bar:
                    outcome = execute(kind, db_store, fresh=fresh, progress=bar, concurrency=concurrency)
            finally:
                model.logger = old_logger
                if isinstance(spec, str):
                    model.close()
            mode = call_mode(model, constrained)
            result.rows.append({"model": kind.model, "mode": mode, "run_id": outcome.run_id,
                                "figures": outcome.summary, "results": list(outcome.results.values())})
    finally:
        if db_store is not db:
            db_store.close()
    return result


def one_at_a_time(tool, lock: threading.Lock):
    """``tool`` whose calls wait for ``lock``: trials run at once share the tools (a collection, an
    embedder), and a tool need not be safe to call from several threads."""
    from dataclasses import replace

    def call(**arguments):
        with lock:
            return tool.fn(**arguments)

    return replace(tool, fn=call)


def show_runs(store, rows: list[dict], fmt: str, console) -> str | None:
    """Stored agent runs re-opened (``llmlab runs show ID``): the same table, from the store."""
    from ..tally import show_with_cost

    result = AgentEvalResult(", ".join(sorted({r["header"].get("tasks", "?") for r in rows})), reopened=True)
    for run in rows:
        h = run["header"]
        results = list(store.units(run["id"]).values())
        known = Path(h["tasks"]).exists() or h["tasks"] == "builtin"
        tasks = read_tasks(h["tasks"])[0] if known else []
        summary = run.get("summary") or (figures(tasks, results, h["repeats"]) if tasks and results else None)
        if summary is None:
            continue
        mode = h.get("mode") or ("constrained" if h.get("constrained") else "unconstrained")
        result.rows.append({"model": run["model"], "mode": mode, "run_id": run["id"], "figures": summary,
                            "results": results})
    cost, notes, _ = result.cost
    return show_with_cost([result.table()], cost, notes, fmt, console)
