"""Tasks are data: a YAML file gives the labels, the prompt templates and the worked examples.

A task file (see ``sentiment.yaml`` beside this module) names its labels with their synonyms, an
``instruction``, a ``role`` and few-shot ``examples``; the prompting strategies (``strategies.yaml``)
are shared by every task and a task may override any field of any of them. Files are checked when
they load -- unknown keys, labels that collide, templates that do not compile, examples with labels
outside the set -- so a typo fails with the file's name before any model runs.

What it gives up: a task is single-label classification of one text field; tasks with several
inputs, multi-label or free-form answers need another kind of spec.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path

from ..errors import TaskError

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
            close = difflib.get_close_matches(name, list(self.strategies), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TaskError(f"task {self.name!r} has no strategy {name!r}{hint} "
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
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise TaskError(f"cannot read task file {path}: {exc}") from exc
            task = parse_task(text, str(path))
        elif ref in builtin_names():
            text = resources.files(BUILTIN).joinpath(f"{ref}.yaml").read_text(encoding="utf-8")
            task = parse_task(text, "built-in")
        else:
            known = builtin_names()
            close = difflib.get_close_matches(ref, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TaskError(f"unknown task {ref!r}{hint} Built-in tasks: {', '.join(known)}, "
                            "or give the path of a task .yaml file")
    if labels:
        task = task.with_labels(labels)
    return task


def parse_task(text: str, source: str) -> TaskSpec:
    """Build and check a TaskSpec from YAML text; every problem names ``source``."""
    import yaml

    from .. import yaml12

    def bad(msg: str) -> TaskError:
        return TaskError(f"task file {source}: {msg}")

    try:
        data = yaml12.safe_load(text)
    except yaml.YAMLError as exc:
        raise bad(f"not valid YAML ({' '.join(str(exc).split())})") from exc
    if not isinstance(data, dict):
        raise bad("expected a mapping with at least `name`, `labels` and `instruction`")
    unknown = set(data) - TASK_KEYS
    if unknown:
        raise bad(f"unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(TASK_KEYS))}")
    for key in ("name", "instruction"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise bad(f"`{key}` must be a non-empty string")
    labels, synonyms = _parse_labels(data.get("labels"), bad)
    strategies = _parse_strategies(data.get("strategies") or {}, bad)
    default = data.get("default_strategy", "zero-shot")
    if default not in strategies:
        raise bad(f"default_strategy {default!r} is not one of: {', '.join(strategies)}")
    task = TaskSpec(
        name=data["name"].strip(), labels=labels, synonyms=synonyms, instruction=data["instruction"],
        description=str(data.get("description") or ""), role=str(data.get("role") or ""),
        strategies=strategies, default_strategy=default, source=source)
    task = replace(task, examples=_parse_examples(data.get("examples") or [], task, bad))
    from .prompts import check_templates

    check_templates(task, bad)
    return task


def _parse_labels(raw, bad) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    if raw is None:
        raise bad("`labels` is missing (a list, or a mapping from label to synonyms)")
    if isinstance(raw, list):
        raw = {label: [] for label in raw}
    if not isinstance(raw, dict):
        raise bad("`labels` must be a list, or a mapping from label to a list of synonyms")
    labels, synonyms, seen = [], {}, {}
    for label, syns in raw.items():
        label = str(label).strip()
        syns = [syns] if isinstance(syns, str) else list(syns or [])
        for word in [label, *syns]:
            key = _key(word)
            if not key:
                raise bad(f"label {label!r} has an empty name or synonym")
            if key in seen and seen[key] != label:
                raise bad(f"{word!r} names both {seen[key]!r} and {label!r}")
            seen[key] = label
        labels.append(label)
        synonyms[label] = tuple(str(s).strip() for s in syns)
    if len(labels) == 1:
        raise bad("a task needs at least two labels")
    return tuple(labels), synonyms


def _parse_strategies(raw, bad) -> dict[str, Strategy]:
    from .. import yaml12

    base = yaml12.safe_load(resources.files(BUILTIN).joinpath("strategies.yaml").read_text("utf-8"))
    if not isinstance(raw, dict):
        raise bad("`strategies` must be a mapping from strategy name to its fields")
    out = {}
    for name in [*base, *(n for n in raw if n not in base)]:
        fields = {**(base.get(name) or {}), **(raw.get(name) or {})}
        unknown = set(fields) - STRATEGY_KEYS
        if unknown:
            raise bad(f"strategy {name!r}: unknown field(s) {', '.join(sorted(unknown))}; "
                      f"known: {', '.join(sorted(STRATEGY_KEYS))}")
        for key in ("shots", "max_new_tokens"):
            if key in fields and (not isinstance(fields[key], int) or fields[key] < (key != "shots")):
                raise bad(f"strategy {name!r}: `{key}` must be a whole number, got {fields[key]!r}")
        if fields.get("extract"):
            try:
                if re.compile(fields["extract"]).groups < 1:
                    raise bad(f"strategy {name!r}: `extract` needs a group ( ) around the answer")
            except re.error as exc:
                raise bad(f"strategy {name!r}: `extract` is not a valid regular expression ({exc})") from exc
        out[name] = Strategy(name=name, **{k: ("" if v is None else v) for k, v in fields.items()})
    return out


def _parse_examples(raw, task: TaskSpec, bad) -> tuple[dict, ...]:
    if not isinstance(raw, list):
        raise bad("`examples` must be a list of {text, label} entries")
    out = []
    for i, ex in enumerate(raw, 1):
        if not isinstance(ex, dict) or not {"text", "label"} <= set(ex) or set(ex) - EXAMPLE_KEYS:
            raise bad(f"example {i} must have `text` and `label` (and optionally `reasoning`)")
        label = task.normalise(ex["label"])
        if label is None:
            raise bad(f"example {i} has label {ex['label']!r}, not one of {', '.join(task.labels)}")
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
