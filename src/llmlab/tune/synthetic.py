"""Synthetic labelled data: a model writes texts for a task's labels, filtered, de-duplicated, traced.

For each attempt a target label is chosen (``balanced``: the label with the fewest kept rows, which
is round-robin in the task's order while nothing is rejected, and a label that keeps failing yields
its turn to the others; ``random``: a seeded draw), the model is asked for one text of that label --
a chat model as a user message, a base model as raw text after the task's worked examples -- with
its own seed (``seed + attempt``), and the answer goes through:

1. cleaning: a lead-in ("Here's a positive review:"), quotes, commentary after a blank line, and a
   sentence cut off by ``max_new_tokens`` are removed (an answer without one whole sentence is
   rejected as "cut off");
2. the validity filter: not empty, no refusal or talk to the user ("Please provide the text"),
   within the length range, not a copy of the prompt (30% of its word trigrams found in the prompt),
   and optionally the label "parses": the same model, prompted with the task as ``llmlab eval``
   would, gives the text the intended label;
3. de-duplication: exactly the same normalised text, or a near copy by MiniLM embeddings (cosine at
   or above ``near_duplicate``, default 0.92) of a kept row.

Kept rows are appended to ``out`` (JSONL, or CSV by its suffix) the moment they pass, with the
provenance of each (model, task, prompt, seed, temperature, time, llmlab version), so Ctrl-C loses
nothing and running again with the same ``out`` continues to ``n``; rejected attempts go to
``<out>.rejected.jsonl`` with their reason, so a rerun never repeats a seed. The file reads with
``llmlab eval FILE --task TASK`` (``id`` is the attempt number: gaps are rejected attempts).

What it gives up: the validity filter cannot tell a fluent text of the wrong label from a right one
unless the label check is on, and a 135M model's own judgement of its texts is weak evidence; near
duplicates are found against kept rows only, one text at a time (quadratic, fine for thousands).
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..checks import utc_now, whole_number
from ..config import GenerationConfig
from ..errors import ConfigError, DataError, TaskError
from .filters import Deduper, Filters, check_text, clean

# Chat models get one user message; every variable below is offered to a --template too.
CHAT_TEMPLATE = (
    "Task: {{ description }}\nLabels: {{ labels_text }}.\n\n"
    "Write one new short text (one or two sentences) that a reader would label \"{{ label }}\". "
    "Reply with the text only, no introduction.")
# Base models continue a list: the task's worked examples, then the label and an open "Text:".
BASE_TEMPLATE = (
    "{{ description }}\n\n{% for ex in examples %}Label: {{ ex.label }}\nText: {{ ex.text }}\n\n"
    "{% endfor %}Label: {{ label }}\nText:")
BALANCE = ("balanced", "random")
FIELDS = ("id", "text", "label", "task", "model", "prompt", "seed", "temperature", "max_new_tokens",
          "label_check", "created", "llmlab_version")

@dataclass
class SynthReport:
    """How a run went: kept rows per label (all in the file), this run's rejects by label and reason."""

    task: str
    model: str
    out: str
    target: int
    labels: tuple[str, ...]
    kept: Counter = field(default_factory=Counter)      # label -> rows in the file
    new: Counter = field(default_factory=Counter)       # label -> rows this run added
    rejected: dict = field(default_factory=dict)        # label -> Counter(reason)
    resumed: int = 0                                    # rows already in the file at the start
    attempts: int = 0                                   # generations this run
    max_attempts: int = 0
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.kept.values())

    @property
    def reached(self) -> bool:
        return self.total >= self.target

    @property
    def reject_rate(self) -> float:
        return sum(sum(c.values()) for c in self.rejected.values()) / self.attempts if self.attempts else 0.0

    def to_dict(self) -> dict:
        return {"task": self.task, "model": self.model, "out": self.out, "target": self.target,
                "kept": {k: self.kept[k] for k in self.labels}, "new": {k: self.new[k] for k in self.labels},
                "rejected": {k: dict(self.rejected.get(k, {})) for k in self.labels},
                "resumed": self.resumed, "attempts": self.attempts, "max_attempts": self.max_attempts,
                "reached": self.reached, "reject_rate": round(self.reject_rate, 3),
                "seconds": round(self.seconds, 1)}

    def print(self, console=None) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{self.task} data by {self.model} -> {self.out}", title_justify="left")
        for col in ("label", "kept", "new", "rejected", "why rejected"):
            table.add_column(col, justify="left" if col in ("label", "why rejected") else "right")
        for label in self.labels:
            why = self.rejected.get(label, Counter())
            table.add_row(label, str(self.kept[label]), str(self.new[label]), str(sum(why.values())),
                          ", ".join(f"{r} {c}" for r, c in why.most_common()))
        console = console or Console()
        console.print(table)
        state = "reached" if self.reached else \
            f"NOT reached: stopped after {self.attempts} attempts (--max-attempts {self.max_attempts})"
        console.print(f"{self.total} of {self.target} rows ({state}); {self.attempts} attempts this run, "
                      f"{self.reject_rate:.0%} rejected" + (f"; {self.resumed} rows were already there"
                                                           if self.resumed else ""))


# --- cleaning and the validity filter -----------------------------------------------------------


def build_prompt(model, task, label: str, template: str | None = None):
    """(prompt for the model, its text for provenance): messages for a chat model, raw text otherwise."""
    from ..chat import Message
    from ..specfile.templates import render
    from ..tasks.prompts import labels_text

    chats = model.chats
    examples = list(task.examples)
    own = next((e["text"] for e in examples if e["label"] == label), "")
    variables = {"task": task.name, "description": task.description or f"the task {task.name}",
                 "labels": list(task.labels), "labels_text": labels_text(task.labels), "label": label,
                 "synonyms": ", ".join(task.synonyms.get(label, ())), "example": own,
                 "examples": examples, "role": task.role}
    text = render(template or (CHAT_TEMPLATE if chats else BASE_TEMPLATE), variables, TaskError).strip()
    return ([Message("user", text)] if chats else text), text


def _label_checker(spec: str | None, model, task):
    """A predict(text) -> label function from 'METHOD' or 'STRATEGY:METHOD', or None when off."""
    if not spec:
        return None
    from ..evals.methods import make_method

    strategy, _, method = spec.rpartition(":")
    if method == "batch-calibrate":
        raise ConfigError("--check-label cannot use batch-calibrate (it needs every text first); "
                          "use score, calibrate or generate")
    runner = make_method(method)
    if runner.needs:
        model.require(runner.needs, "use --check-label generate")
    runner.setup(model, task, task.strategy(strategy or None))
    return lambda text: runner.predict(text)["pred"]


# --- the file ------------------------------------------------------------------------------------


def _check_out(out) -> Path:
    from ..config import prepare_out_file

    return prepare_out_file(out, (".jsonl", ".csv"), ".jsonl or .csv")  # the suffix picks the format


def rejects_path(out: Path) -> Path:
    return out.with_name(out.stem + ".rejected.jsonl")


def _read_rows(path: Path) -> list[dict]:
    if not path.exists() or path.stat().st_size == 0:
        return []
    from ..evals.data import read_table

    frame = read_table(path)
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def _append(path: Path, row: dict) -> None:
    """One row at the end of the file, on disk before the next generation starts (Ctrl-C keeps it)."""
    if path.suffix.lower() == ".csv":
        import pandas as pd

        pd.DataFrame([row], columns=FIELDS).to_csv(path, mode="a", index=False,
                                                   header=not path.exists() or path.stat().st_size == 0)
        return
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")


# --- the run -------------------------------------------------------------------------------------


def generate_data(task, n: int, model, out, *, seed: int = 0, temperature: float = 0.8,
                  max_new_tokens: int = 80, template: str | None = None, balance: str = "balanced",
                  max_attempts: int | None = None, filters: Filters = Filters(), embedder="minilm",
                  check_label: str | None = None, fresh: bool = False, progress: bool = False,
                  log: bool = True) -> SynthReport:
    """Write ``n`` labelled examples of ``task`` by ``model`` to ``out``; the report says how it went.

    ``model`` is a loaded model or a name for ``load_model``; ``task`` a name, a task file or a
    TaskSpec; ``check_label`` turns on the label check ('score', 'generate', 'few-shot:score' ...).
    Rows already in ``out`` count towards ``n`` unless ``fresh``; ``max_attempts`` (default 3n + 10)
    caps this run's generations.
    """
    from .. import __version__
    from ..tasks import load_task

    whole_number("--n", n)
    task = load_task(task)
    if not task.labels:
        raise TaskError(f"task {task.name!r} has no labels of its own; give them (--labels a,b,c)")
    if balance not in BALANCE:
        raise ConfigError(f"--balance must be one of {', '.join(BALANCE)}, got {balance!r}")
    config = GenerationConfig(temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    if config.greedy:
        raise ConfigError("greedy decoding (--temperature 0) writes the same text for every seed; "
                          "use a temperature above 0, e.g. 0.8")
    max_attempts = whole_number("--max-attempts", 3 * n + 10 if max_attempts is None else max_attempts)
    out = _check_out(out)
    rejects = rejects_path(out)
    if fresh:
        for path in (out, rejects):
            path.unlink(missing_ok=True)
    own = isinstance(model, str)
    if own:
        from ..models.registry import load_model

        model = load_model(model, log=log)
    name = f"{model.backend}/{model.info.name}"
    rows, rejected_before = _read_rows(out), _read_rows(rejects)
    _check_resume(rows, out, task, name)
    report = SynthReport(task.name, name, str(out), n, task.labels, resumed=len(rows),
                         max_attempts=max_attempts)
    report.kept.update(r["label"] for r in rows)
    dedup = Deduper(embedder, filters.near_duplicate)
    dedup.add([str(r["text"]) for r in rows])
    checker = _label_checker(check_label, model, task)
    attempt = 1 + max((int(r["id"]) for r in rows + rejected_before if r.get("id") is not None), default=-1)
    start = time.perf_counter()
    bar, tried = _progress(progress, n, report.total), Counter()
    try:
        while report.total < n and report.attempts < max_attempts:
            label = _pick(task.labels, report.kept, tried, balance, seed, attempt)
            tried[label] += 1
            prompt, shown = build_prompt(model, task, label, template)
            # a base model writes on after its text: the next "Label:" line, so stop at the line's end
            cfg = config.replace(seed=(seed + attempt) % (2**32 - 1), stop=None if model.chats else ("\n",))
            response = model.prompt(prompt, cfg).complete()
            cut_off = response.finish_reason == "length"
            text = clean(response.text, cut_off=cut_off)
            reason, info = check_text(text, shown, filters), None
            if reason == "empty" and cut_off and response.text.strip():
                reason = "cut off"
            if reason is None:
                reason, info = dedup.check(text)
            judged = checker(text) if checker and reason is None else None
            if judged is not None and judged != label:
                reason = "label disagrees"
            row = {"id": attempt, "text": text, "label": label, "task": task.name, "model": name,
                   "prompt": shown, "seed": cfg.seed, "temperature": temperature,
                   "max_new_tokens": max_new_tokens, "label_check": judged, "created": utc_now(),
                   "llmlab_version": __version__}
            if reason is None:
                _append(out, row)
                dedup.add([text], info)
                report.kept[label] += 1
                report.new[label] += 1
                if bar:
                    bar.advance(bar.task_ids[0])
            else:
                report.rejected.setdefault(label, Counter())[reason] += 1
                _append(rejects, {**row, "raw": response.text, "reason": reason})
            attempt += 1
            report.attempts += 1
    finally:
        report.seconds = time.perf_counter() - start
        if bar:
            bar.stop()
        if own:
            model.close()
    return report


def _pick(labels: tuple[str, ...], kept: Counter, tried: Counter, balance: str, seed: int,
          attempt: int) -> str:
    if balance == "random":  # a draw of its own per attempt, so a resumed run draws as a whole one would
        return random.Random(f"{seed}:{attempt}").choice(labels)
    # the fewest kept; among those the fewest tried this run, so a label the model keeps failing does
    # not take every attempt; then the task's order
    return min(labels, key=lambda label: (kept[label], tried[label]))


def _check_resume(rows: list[dict], out: Path, task, model: str) -> None:
    if not rows:
        return
    first = rows[0]
    if not {"id", "text", "label", "task", "model"} <= set(first):
        raise DataError(f"{out} exists and was not written by generate-data; pass --fresh to replace it, "
                        "or choose another --out")
    for what, want in (("task", task.name), ("model", model)):
        if first[what] != want:
            raise ConfigError(f"{out} holds {first[what]} rows ({what}); this run is {want}: pass --fresh "
                              "to replace them, or choose another --out")
    bad = sorted({str(r["label"]) for r in rows} - set(task.labels))
    if bad:
        raise DataError(f"{out} has labels outside the {task.name} task's set: {', '.join(bad)}")


def _progress(show: bool, n: int, done: int):
    if not show:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    bar.add_task("rows", total=n, completed=done)
    bar.start()
    return bar
