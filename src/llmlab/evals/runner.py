"""Running systems (model x strategy x method x repeat) over a dataset, resumably, into the store.

Each system is one run in the SQLite store, identified by a fingerprint of everything that shapes its
predictions: the items, the task and strategy, the model file, the method and its settings. Every
finished item is written at once, so a run stopped by Ctrl-C or a kill is picked up where it
stopped the next time the same evaluation starts, and finished items are never computed again.
Before any model computes anything, every prompt is checked against its model's context window.

What it gives up: items run one after another (llama.cpp reuses the shared prompt prefix instead of
batching items); a changed task file, model file or setting starts a fresh run rather than mixing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, DataError
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
    if repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {repeats}")
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


def fingerprint(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def model_identity(model, store) -> dict:
    path = model.info.path
    sha = store.file_sha256(path) if store is not None and path and Path(path).is_file() else None
    return {"backend": model.backend, "name": model.info.name, "sha256": sha or path}


def run_system(system: System, model, task: TaskSpec, dataset: Dataset, store, generation: dict,
               progress=None, fresh: bool = False) -> SystemRun:
    strategy = task.strategy(system.strategy)
    gen = dict(generation)
    if system.repeats > 1:  # each repeat samples with its own seed, so repeats differ but reproduce
        gen["seed"] = gen.get("seed", 0) + system.repeat
    method = make_method(system.method, gen)
    ident = {"dataset": dataset.sha256, "task": task.fingerprint(system.strategy),
             "model": model_identity(model, store), "method": system.method,
             "settings": method.settings(strategy), "repeat": system.repeat}
    runtime = dict(getattr(model, "runtime", {}) or {})
    if "extra_buffer_types" in runtime:  # repacked weights may round differently: not the same run
        ident["extra_buffer_types"] = runtime["extra_buffer_types"]
    meta = {"dataset": dataset.source, "dataset_sha256": dataset.sha256, "task": task.name,
            "model": system.model, "strategy": system.strategy, "method": system.method,
            "repeat": system.repeat, "settings": {"identity": ident}, "n_items": len(dataset)}
    run_id, done = _open_run(store, fingerprint(ident), meta, fresh)
    items = {k: v for k, v in done.items() if k in set(dataset.frame["id"])}
    resumed = len(items)
    bar = progress.add_task(system.name, total=len(dataset)) if progress else None
    if bar is not None:
        progress.update(bar, completed=resumed)  # update (not add_task) marks a resumed-complete bar done
    todo = [(i, t, g) for i, t, g in dataset.frame[["id", "text", "gold"]].itertuples(index=False)
            if i not in items]
    setup = method.setup(model, task, strategy) if todo or system.method == "calibrate" else {}
    for item_id, text, gold in todo:
        result = method.predict(text)
        result = {**result, "pred": result["pred"] or UNPARSED, "gold": gold}
        if store is not None:
            store.add_eval_result(run_id, item_id, result)
        items[item_id] = result
        if bar is not None:
            progress.advance(bar)
    if store is not None:
        store.finish_eval_run(run_id)
    ordered = [{"id": i, **_clean(items[i])} for i in dataset.frame["id"]]
    if hasattr(method, "finalize"):  # batch calibration needs every item's scores first
        setup = {**setup, **method.finalize(ordered)}
    return SystemRun(system, run_id, ordered, resumed,
                     {**setup, "settings": method.settings(strategy), "runtime": runtime})


def run_baseline(dataset: Dataset, store, progress=None) -> SystemRun:
    system = System(baseline_mod.NAME, "-", "supervised")
    ident = {"dataset": dataset.sha256, "baseline": baseline_mod.settings()}
    meta = {"dataset": dataset.source, "dataset_sha256": dataset.sha256, "task": "-",
            "model": baseline_mod.NAME, "strategy": "-", "method": "supervised", "repeat": 0,
            "settings": ident, "n_items": len(dataset)}
    run_id, done = _open_run(store, fingerprint(ident), meta, fresh=False)
    ids = list(dataset.frame["id"])
    if not all(i in done for i in ids):
        bar = progress.add_task(system.name, total=None) if progress else None
        preds, seconds = baseline_mod.predict(list(dataset.frame["text"]), list(dataset.frame["gold"]))
        for item_id, pred, gold in zip(ids, preds, dataset.frame["gold"], strict=True):
            done[item_id] = {"pred": pred, "raw": pred, "scores": None, "seconds": seconds / len(ids),
                             "gold": gold}
            if store is not None:
                store.add_eval_result(run_id, item_id, done[item_id])
        if store is not None:
            store.finish_eval_run(run_id)
        if bar is not None:
            progress.update(bar, total=1, completed=1)
    return SystemRun(system, run_id, [{"id": i, **_clean(done[i])} for i in ids])


def _open_run(store, fp: str, meta: dict, fresh: bool) -> tuple[int | None, dict]:
    if store is None:
        return None, {}
    return store.eval_run(fp, meta, new=fresh)


def _clean(result: dict) -> dict:
    return {k: result.get(k) for k in ("pred", "raw", "scores", "seconds")}
