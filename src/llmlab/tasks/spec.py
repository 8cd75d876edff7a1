"""Tasks are data: a YAML file gives the labels, the prompt templates and the worked examples.

A task file (see ``sentiment.yaml`` beside this module) names its labels with their synonyms, an
``instruction``, a ``role`` and few-shot ``examples``; the prompting strategies (``strategies.yaml``)
are shared by every task and a task may override any field of any of them. Files are checked when
they load -- unknown keys, labels that collide, templates that do not compile, examples with labels
outside the set -- so a typo fails with the file's name and line before any model runs
(``sentiment.yaml, line 3: unknown key 'lables' (did you mean 'labels'?)``). Files are read by the
one spec-file reader (``llmlab.specfile``): YAML 1.2, so a label ``no`` stays the word "no".

What it gives up: a task is single-label classification of one text field; tasks with several
inputs, multi-label or free-form answers need another kind of spec.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path

from ..checks import did_you_mean
from ..errors import TaskError
from ..specfile import LineDict, Where
from ..specfile import yaml as specyaml

BUILTIN = "llmlab.tasks"
TASK_KEYS = {"name", "description", "labels", "instruction", "role", "examples", "strategies",
             "default_strategy"}
EXAMPLE_KEYS = {"text", "label", "reasoning"}


@dataclass(frozen=True)
class Strategy:
    """One way of prompting for a task (zero-shot, few-shot, role, chain-of-thought, structured)."""

    name: str
    description: str = ""
    system: str = ""
    user: str = "{{ instruction }}\n\nText: {{ text }}"
    answer: str = "{{ label }}"
    shots: int = 0
    continuation: str = "{{ label }}"
    max_new_tokens: int = 10
    extract: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


STRATEGY_KEYS = {f for f in Strategy.__dataclass_fields__ if f != "name"}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    labels: tuple[str, ...]
    instruction: str
    description: str = ""
    synonyms: dict[str, tuple[str, ...]] = field(default_factory=dict)
    role: str = ""
    examples: tuple[dict, ...] = ()
    strategies: dict[str, Strategy] = field(default_factory=dict)
    default_strategy: str = "zero-shot"
    source: str = "built-in"

    # --- labels ----------------------------------------------------------------------------------

    def normalise(self, value) -> str | None:
        """The task label a gold value or an answer names (case, spaces, synonyms), else None.

        >>> load_task("sentiment").normalise("  Positive ")
        'positive'
        """
        return self._lookup().get(_key(value))

    def _lookup(self) -> dict[str, str]:
        table = {}
        for label in self.labels:
            table[_key(label)] = label
            for syn in self.synonyms.get(label, ()):
                table.setdefault(_key(syn), label)
        return table

    def with_labels(self, labels) -> TaskSpec:
        """The same task with another label set (how ``classify`` gets its labels)."""
        clean = _dedupe([str(label).strip() for label in labels if str(label).strip()])
        if len(clean) < 2:
            raise TaskError(f"task {self.name!r} needs at least two labels, got {clean!r}")
        kept = {k: v for k, v in self.synonyms.items() if k in clean}
        examples = tuple(e for e in self.examples if e["label"] in clean)
        return replace(self, labels=tuple(clean), synonyms=kept, examples=examples)

    # --- strategies ------------------------------------------------------------------------------

    def strategy(self, name: str | None = None) -> Strategy:
        name = name or self.default_strategy
        if name not in self.strategies:
            hint = did_you_mean(name, self.strategies)
            raise TaskError(f"task {self.name!r} has no strategy {name!r}{hint}. "
                            f"Strategies: {', '.join(self.strategies)}")
        strategy = self.strategies[name]
        if strategy.shots and not self.examples:
            raise TaskError(f"strategy {name!r} needs worked examples, and task {self.name!r} has none; "
                            "add `examples:` to the task file")
        return strategy

    def fingerprint(self, strategy: str | None = None) -> str:
        """A hash of everything that shapes the prompts (for resuming a stored run)."""
        data = {"labels": self.labels, "synonyms": self.synonyms, "instruction": self.instruction,
                "role": self.role, "examples": self.examples,
                "strategy": self.strategy(strategy).to_dict()}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "labels": list(self.labels),
                "synonyms": {k: list(v) for k, v in self.synonyms.items()},
                "instruction": self.instruction, "role": self.role,
                "examples": [dict(e) for e in self.examples],
                "strategies": {k: s.to_dict() for k, s in self.strategies.items()},
                "default_strategy": self.default_strategy, "source": self.source}


# --- loading ---------------------------------------------------------------------------------------


def builtin_names() -> list[str]:
    files = resources.files(BUILTIN)
    return sorted(p.name[:-5] for p in files.iterdir()
                  if p.name.endswith(".yaml") and p.name != "strategies.yaml")


def list_tasks() -> list[TaskSpec]:
    return [load_task(name) for name in builtin_names()]


def load_task(name_or_path: str | Path | TaskSpec, labels=None) -> TaskSpec:
    """A built-in task by name, or a task YAML file by path; ``labels`` replaces the label set.

    >>> load_task("sentiment").labels
    ('positive', 'negative', 'neutral')
    """
    if isinstance(name_or_path, TaskSpec):
        task = name_or_path
    else:
        ref = str(name_or_path)
        path = Path(ref).expanduser()
        if ref.endswith((".yaml", ".yml")) or path.is_file() or "/" in ref:
            if not path.is_file():
                raise TaskError(f"task file not found: {path}")
            task = _build(specyaml.load(path, TaskError, "task file"), str(path), Where(path, TaskError))
        elif ref in builtin_names():
            file = resources.files(BUILTIN).joinpath(f"{ref}.yaml")
            data = specyaml.parse(file.read_text(encoding="utf-8"), str(file), TaskError)
            task = _build(data, "built-in", Where(file, TaskError))
        else:
            known = builtin_names()
            raise TaskError(f"unknown task {ref!r}{did_you_mean(ref, known)}. "
                            f"Built-in tasks: {', '.join(known)}, or give the path of a task .yaml file")
    if labels:
        task = task.with_labels(labels)
    return task


def parse_task(text: str, source: str) -> TaskSpec:
    """Build and check a TaskSpec from YAML text; every problem names ``source`` and its line."""
    return _build(specyaml.parse(text, source, TaskError), source, Where(source, TaskError))


def _build(data, source: str, where: Where) -> TaskSpec:
    if not isinstance(data, LineDict):
        raise where.error(None, "expected a mapping with at least `name`, `labels` and `instruction`")
    where.keys(data, TASK_KEYS, "the task")
    for key in ("name", "instruction"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise where.error(data.line_of(key), f"`{key}` must be a non-empty string")
    labels, synonyms = _parse_labels(data, where)
    raw_strategies = data.get("strategies") or LineDict()
    strategies, base = _parse_strategies(raw_strategies, data, where)
    default = data.get("default_strategy", "zero-shot")
    if default not in strategies:
        raise where.error(data.line_of("default_strategy"), f"default_strategy {default!r} is not one of: "
                          f"{', '.join(strategies)}{did_you_mean(default, strategies)}")
    task = TaskSpec(
        name=data["name"].strip(), labels=labels, synonyms=synonyms, instruction=data["instruction"],
        description=str(data.get("description") or ""), role=str(data.get("role") or ""),
        strategies=strategies, default_strategy=default, source=source)
    task = replace(task, examples=_parse_examples(data, task, where))
    from .prompts import check_templates

    def bad(message: str, strategy: str | None, key: str) -> TaskError:
        """The error at the line the failing template came from: the task file, else strategies.yaml."""
        if strategy is None:
            return where.error(data.line_of(key), message)
        own = raw_strategies.get(strategy)
        if isinstance(own, LineDict) and key in own:
            return where.error(own.line_of(key), message)
        if strategy in base and key in base[strategy]:
            return base.where.error(base[strategy].line_of(key), message)
        return where.error(raw_strategies.line_of(strategy) if strategy in raw_strategies else None, message)

    check_templates(task, bad)
    return task


def _parse_labels(data: LineDict, where: Where) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    raw, line = data.get("labels"), data.line_of("labels")
    if raw is None:
        raise where.error(line, "`labels` is missing (a list, or a mapping from label to synonyms)")
    if isinstance(raw, list):
        raw = {label: [] for label in raw}
    if not isinstance(raw, dict):
        raise where.error(line, "`labels` must be a list, or a mapping from label to a list of synonyms")
    labels, synonyms, seen = [], {}, {}
    for label, syns in raw.items():
        at = raw.line_of(label) if isinstance(raw, LineDict) else line
        label = str(label).strip()
        if not isinstance(syns, (str, list, type(None))):
            raise where.error(at, f"label {label!r}: its synonyms must be a word or a list of words, "
                              f"got {syns!r}")
        syns = [syns] if isinstance(syns, str) else list(syns or [])
        for word in [label, *syns]:
            key = _key(word)
            if not key:
                raise where.error(at, f"label {label!r} has an empty name or synonym")
            if key in seen and seen[key] != label:
                raise where.error(at, f"{word!r} names both {seen[key]!r} and {label!r}")
            seen[key] = label
        labels.append(label)
        synonyms[label] = tuple(str(s).strip() for s in syns)
    if len(labels) == 1:
        raise where.error(line, "a task needs at least two labels")
    return tuple(labels), synonyms


class _Base(dict):
    """The shared strategies (strategies.yaml), with a ``Where`` for errors in that file."""

    where: Where


def _base_strategies() -> _Base:
    file = resources.files(BUILTIN).joinpath("strategies.yaml")
    base = _Base(specyaml.parse(file.read_text("utf-8"), str(file), TaskError))
    base.where = Where(file, TaskError)
    return base


def _parse_strategies(raw, data: LineDict, where: Where) -> tuple[dict[str, Strategy], _Base]:
    base = _base_strategies()
    if not isinstance(raw, LineDict):
        raise where.error(data.line_of("strategies"),
                          "`strategies` must be a mapping from strategy name to its fields")
    out = {}
    for name in [*base, *(n for n in raw if n not in base)]:
        own = raw.get(name)
        if own is None:
            own = LineDict()
            own.line = raw.line_of(name) if name in raw else 0
        if not isinstance(own, LineDict):
            raise where.error(raw.line_of(name), f"strategy {name!r} must be a mapping of its fields")
        out[name] = _strategy(name, own, base.get(name) or LineDict(), where, base.where)
    return out, base


def _strategy(name: str, own: LineDict, shared: LineDict, where: Where, shared_where: Where) -> Strategy:
    """One strategy: the task file's fields (``own``) over the shared ones from strategies.yaml."""
    label = f"strategy {name!r}"
    where.keys(own, STRATEGY_KEYS, label)
    fields = {**shared, **own}

    def home(key: str) -> tuple[LineDict, Where]:
        """Where ``key`` was written: the task file when it sets it, else strategies.yaml."""
        return (own, where) if key in own else (shared, shared_where)

    for key, least in (("shots", 0), ("max_new_tokens", 1)):
        src, at = home(key)
        at.whole_number(src, key, label, None, least=least)
    if fields.get("extract"):
        src, at = home("extract")
        try:
            groups = re.compile(fields["extract"]).groups
        except re.error as exc:
            raise at.error(src.line_of("extract"),
                           f"{label}: `extract` is not a valid regular expression ({exc})") from exc
        if groups < 1:
            raise at.error(src.line_of("extract"), f"{label}: `extract` needs a group ( ) around the answer")
    return Strategy(name=name, **{k: ("" if v is None else v) for k, v in fields.items()})


def _parse_examples(data: LineDict, task: TaskSpec, where: Where) -> tuple[dict, ...]:
    raw = data.get("examples") or []
    if not isinstance(raw, list):
        raise where.error(data.line_of("examples"), "`examples` must be a list of {text, label} entries")
    out = []
    for i, ex in enumerate(raw, 1):
        line = ex.line if isinstance(ex, LineDict) else data.line_of("examples")
        if not isinstance(ex, dict) or not {"text", "label"} <= set(ex):
            raise where.error(line, f"example {i} must have `text` and `label` (and optionally `reasoning`)")
        where.keys(ex, EXAMPLE_KEYS, f"example {i}")
        label = task.normalise(ex["label"])
        if label is None:
            raise where.error(ex.line_of("label"), f"example {i} has label {ex['label']!r}, "
                              f"not one of {', '.join(task.labels)}")
        out.append({"text": str(ex["text"]), "label": label, "reasoning": str(ex.get("reasoning") or "")})
    return tuple(out)


def _key(value) -> str:
    """How labels are compared: case-folded, underscores as spaces, surrounding punctuation and spaces
    dropped (``Make_Reservation.`` is ``make reservation``)."""
    return " ".join(str(value).casefold().replace("_", " ").strip(" \t\r\n.,;:!?\"'`*()[]{}<>").split())


def _dedupe(items: list[str]) -> list[str]:
    seen, out = set(), []
    for item in items:
        if _key(item) not in seen:
            seen.add(_key(item))
            out.append(item)
    return out
