"""A generation task is data: a YAML file with a prompt template, reference columns, settings, metrics.

    name: translate
    type: generation                  # what tells `llmlab eval --task FILE` it is not classification
    data: translate.jsonl             # optional: the file used when no DATA is given (beside the YAML)
    prompt: "Translate into French: {{ english }}\\nFrench:"   # jinja2 over the row's columns
    system: You are a careful translator.                     # optional (chat models only)
    reference: french                 # the column of references: a list, or texts separated by `|`
    generation: {max_new_tokens: 40, stop: ["\\n"]}           # greedy unless temperature is set
    metrics: [chrf, bleu]
    rubric: {criteria: "Is it a faithful, fluent translation?", scale: [1, 5]}  # for --judge
    labelled: translate_labelled.jsonl   # optional: outputs with a human_score, for the judge's agreement

A code task says ``format: humaneval``: its rows are HumanEval problems (task_id, prompt,
canonical_solution, test, entry_point), ``generation.samples`` completions are drawn per problem
and the metrics are ``pass@k``. Every problem with a file is found when it loads, with its line.

What it gives up: one prompt per task (no strategies or few-shot examples as classification tasks
have); the chat/raw choice follows the model (``model.chats``), as the rest of llmlab does.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..checks import did_you_mean
from ..errors import DataError, TaskError
from ..specfile import LineDict, Where, check_template, template_variables
from ..specfile import yaml as specyaml

BUILTIN = "llmlab.gentasks.tasks"
KEYS = {"name", "type", "description", "data", "prompt", "system", "reference", "reference_separator",
        "id", "generation", "metrics", "rubric", "labelled", "format", "timeout"}
GENERATION_KEYS = {"max_new_tokens", "stop", "temperature", "top_p", "top_k", "seed", "samples"}
RUBRIC_KEYS = {"criteria", "scale"}
TEXT_METRICS = ("rouge1", "rouge2", "rougeL", "bleu", "chrf", "exact_match", "f1")
PASS_AT = re.compile(r"pass@([1-9]\d*)$")
HUMANEVAL = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


@dataclass(frozen=True)
class Rubric:
    criteria: str
    low: int = 1
    high: int = 5

    @property
    def scale(self) -> list[int]:
        return list(range(self.low, self.high + 1))


@dataclass(frozen=True)
class GenTask:
    name: str
    prompt: str
    reference: str | None
    metrics: tuple[str, ...]
    generation: dict = field(default_factory=dict)
    system: str = ""
    description: str = ""
    separator: str | None = "|"
    id_column: str | None = None
    rubric: Rubric | None = None
    data: Path | None = None
    labelled: Path | None = None
    format: str = "text"          # text | humaneval
    timeout: float = 5.0
    source: str = "built-in"

    @property
    def samples(self) -> int:
        return int(self.generation.get("samples", 1))

    @property
    def columns(self) -> set[str]:
        """The row columns the prompt reads."""
        return template_variables(self.prompt) | template_variables(self.system)

    def config(self, sample: int = 0):
        """The GenerationConfig of sample ``sample`` (seed + sample, so samples differ but reproduce)."""
        from ..config import GenerationConfig

        g = {k: v for k, v in self.generation.items() if k != "samples"}
        g.setdefault("temperature", 0)
        if g.get("seed") is not None:
            g["seed"] = g["seed"] + sample
        return GenerationConfig(**g)

    def fingerprint(self) -> str:
        data = {"prompt": self.prompt, "system": self.system, "reference": self.reference,
                "separator": self.separator, "generation": self.generation, "metrics": self.metrics,
                "format": self.format, "timeout": self.timeout}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def is_generation(name_or_path) -> bool:
    """Whether ``--task`` names a generation task: a built-in one, or a file with ``type: generation``."""
    ref = str(name_or_path)
    if ref in builtin_names():
        return True
    path = Path(ref).expanduser()
    if not (ref.endswith((".yaml", ".yml")) and path.is_file()):
        return False
    data = specyaml.load(path, TaskError, "task file")
    return isinstance(data, dict) and data.get("type") == "generation"


def builtin_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(BUILTIN).iterdir() if p.name.endswith(".yaml"))


def list_tasks() -> list[GenTask]:
    return [load(name) for name in builtin_names()]


def load(name_or_path) -> GenTask:
    """A built-in generation task by name, or a task YAML file by path."""
    if isinstance(name_or_path, GenTask):
        return name_or_path
    ref = str(name_or_path)
    if ref in builtin_names():
        file = Path(str(resources.files(BUILTIN).joinpath(f"{ref}.yaml")))
        return build(specyaml.load(file, TaskError, "task file"), file, "built-in")
    path = Path(ref).expanduser()
    if not path.is_file():
        known = builtin_names()
        raise TaskError(f"unknown generation task {ref!r}{did_you_mean(ref, known)}; built-in: "
                        f"{', '.join(known)}, or give the path of a task .yaml file")
    return build(specyaml.load(path, TaskError, "task file"), path, str(path))


def build(data, path: Path, source: str) -> GenTask:
    where = Where(path, TaskError)
    if not isinstance(data, LineDict):
        raise where.error(None, "expected a mapping with at least `name`, `type: generation` and `prompt`")
    where.keys(data, KEYS, "the task")
    if data.get("type") != "generation":
        raise where.error(data.line_of("type"), "a generation task says `type: generation`")
    fmt = data.get("format", "text")
    if fmt not in ("text", "humaneval"):
        raise where.error(data.line_of("format"), f"`format` is text or humaneval, not {fmt!r}")
    defaults = {"prompt": "{{ prompt }}"} if fmt == "humaneval" else {}
    strings = {}
    for key in ("name", "prompt"):
        value = data.get(key, defaults.get(key))
        if not isinstance(value, str) or not value.strip():
            raise where.error(data.line_of(key), f"`{key}` must be a non-empty string")
        strings[key] = value
    for key in ("prompt", "system"):
        if data.get(key):
            check_template(str(data[key]), _AtLine(where, data.line_of(key)))
    gen = data.get("generation") or LineDict()
    if not isinstance(gen, LineDict):
        raise where.error(data.line_of("generation"), "`generation` must be a mapping of settings")
    where.keys(gen, GENERATION_KEYS, "generation")
    gen = dict(gen)
    if isinstance(gen.get("stop"), str):
        gen["stop"] = [gen["stop"]]
    metrics = data.get("metrics") or (["pass@1"] if fmt == "humaneval" else ["rougeL", "chrf"])
    metrics = [metrics] if isinstance(metrics, str) else metrics
    if not isinstance(metrics, list):
        raise where.error(data.line_of("metrics"), "`metrics` must be a list")
    for m in metrics:
        _check_metric(str(m), fmt, gen, where, data.line_of("metrics"))
    task = GenTask(
        name=strings["name"].strip(), prompt=strings["prompt"], system=str(data.get("system") or ""),
        reference=data.get("reference", "canonical_solution" if fmt == "humaneval" else None),
        metrics=tuple(map(str, metrics)), generation=gen, description=str(data.get("description") or ""),
        separator=data.get("reference_separator", None if fmt == "humaneval" else "|"),
        id_column=data.get("id"),
        rubric=_rubric(data, where), data=_beside(path, data.get("data")),
        labelled=_beside(path, data.get("labelled")), format=fmt,
        timeout=float(data.get("timeout", 5.0)), source=source)
    if task.reference is None and any(m in TEXT_METRICS for m in task.metrics):
        raise where.error(data.line_of("metrics"), "reference metrics need `reference:` (the column of "
                          "reference outputs)")
    try:
        task.config()
    except Exception as exc:  # a GenerationConfig error, at the generation block's line
        raise where.error(data.line_of("generation"), f"generation: {exc}") from exc
    return task


class _AtLine:
    """An error type for ``check_template`` that puts the file and the template's line in front."""

    def __init__(self, where: Where, line: int):
        self.where, self.line = where, line

    def __call__(self, message: str) -> Exception:
        return self.where.error(self.line, message)


def _check_metric(m: str, fmt: str, gen: dict, where: Where, line: int) -> None:
    k = PASS_AT.match(m)
    if fmt == "humaneval":
        if not k:
            raise where.error(line, f"a humaneval task is scored by pass@k, not {m!r}")
        if int(k.group(1)) > int(gen.get("samples", 1)):
            raise where.error(line, f"{m} needs at least {k.group(1)} samples per problem: set "
                              f"generation.samples >= {k.group(1)}")
    elif m not in TEXT_METRICS:
        raise where.error(line, f"unknown metric {m!r}{did_you_mean(m, TEXT_METRICS)}; use "
                          f"{', '.join(TEXT_METRICS)} (pass@k is for format: humaneval)")


def _rubric(data: LineDict, where: Where) -> Rubric | None:
    raw = data.get("rubric")
    if raw is None:
        return None
    if isinstance(raw, str):
        return Rubric(raw.strip())
    if not isinstance(raw, LineDict) or not isinstance(raw.get("criteria"), str):
        raise where.error(data.line_of("rubric"), "`rubric` needs `criteria` (text) and optionally "
                          "`scale: [LOW, HIGH]`")
    where.keys(raw, RUBRIC_KEYS, "rubric")
    scale = raw.get("scale", [1, 5])
    if not (isinstance(scale, list) and len(scale) == 2 and all(isinstance(x, int) for x in scale)
            and 0 <= scale[0] < scale[1] <= 10):
        raise where.error(raw.line_of("scale"), f"rubric scale must be [LOW, HIGH], whole numbers from 0 "
                          f"to 10, got {scale!r}")
    return Rubric(raw["criteria"].strip(), scale[0], scale[1])


def _beside(path: Path, name) -> Path | None:
    return None if not name else (Path(path).parent / str(name))


# --- rows ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    id: str
    values: dict
    references: tuple[str, ...]


def read_rows(task: GenTask, data=None, limit: int | None = None, extra: tuple[str, ...] = ()) -> list[Row]:
    """The rows of ``data`` (the task's own sample when None), checked against what the task reads;
    ``extra`` names further columns that must be there (a labelled file's ``output``)."""
    from ..evals.data import read_table

    source = data if data is not None else task.data
    if source is None:
        raise DataError(f"task {task.name!r} has no sample data: give a DATA file")
    frame = read_table(source)
    columns = [str(c) for c in frame.columns]
    needed = sorted(task.columns) + ([task.reference] if task.reference else []) + list(extra)
    if task.format == "humaneval":
        needed += [c for c in HUMANEVAL if c not in needed]
    for col in dict.fromkeys(needed):
        if col not in columns:
            raise DataError(f"{source} has no column {col!r}{did_you_mean(col, columns)}; its columns: "
                            f"{', '.join(columns)}")
    if frame.empty:
        raise DataError(f"{source} has no rows")
    id_col = task.id_column or ("task_id" if task.format == "humaneval" else
                                "id" if "id" in columns else None)
    rows, seen = [], set()
    for n, record in enumerate(frame.to_dict("records"), 1):
        rid = str(record[id_col]) if id_col else str(n)
        if rid in seen:
            raise DataError(f"{source}: the id {rid!r} is given twice; ids must be unique")
        seen.add(rid)
        values = {k: ("" if _missing(v) else v) for k, v in record.items()}
        refs = _references(values.get(task.reference), task.separator) if task.reference else ()
        if task.reference and task.format == "text" and not refs:
            raise DataError(f"{source}: row {rid} has no reference in column {task.reference!r}")
        rows.append(Row(rid, values, refs))
    return rows[:limit] if limit else rows


def prompt_for(model, task: GenTask, row: Row):
    """The row's prompt: chat messages for a model that chats, else raw text (the system text first).
    A humaneval prompt is kept exactly as written: a completion continues its last line."""
    from ..chat import Message
    from ..specfile import render

    text = render(task.prompt, row.values, TaskError)
    text = text if task.format == "humaneval" else text.strip()
    system = render(task.system, row.values, TaskError).strip() if task.system else ""
    if model.chats:
        return ([Message("system", system)] if system else []) + [Message("user", text)]
    return f"{system}\n\n{text}" if system else text


def rows_digest(rows: list[Row]) -> str:
    data = [[r.id, r.values, r.references] for r in rows]
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _references(value, separator) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(str(v).strip() for v in value if str(v).strip())
    text = "" if value is None else str(value)
    parts = text.split(separator) if separator else [text]
    return tuple(p.strip() for p in parts if p.strip())


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)
