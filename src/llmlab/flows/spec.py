"""Flows are data: a YAML file chains model calls, each step's prompt a template over the input and
the outputs of the steps before it.

    name: triage
    model: smollm2              # every step's model unless it names its own (default smollm2)
    input: review               # with --data: the column that is {{ input }} (else text, review, ...)
    max_new_tokens: 64          # generation settings here are every step's defaults
    steps:
      - name: extract
        prompt: "Review: {{ input }}\\nWhat product is it about?"
        json_schema: {type: object, properties: {product: {type: string}}, required: [product]}
      - name: classify
        prompt: "Is this review of a {{ extract.product }} positive or negative? {{ input }}"
        labels: [positive, negative]
      - name: summarise
        system: You write one short sentence.
        prompt: "Summarise this {{ classify }} review: {{ input }}"

What a template may name: ``input`` (the one text, or the input column of a dataset row), ``row``
(the whole dataset row: ``{{ row.title }}``, ``{{ row["star rating"] }}``), any earlier step by its
name, and in a step with ``labels`` its ``labels_text`` ("positive or negative"). A step's output is
its answer stripped of surrounding space; with ``json_schema`` (inline, or a file path relative to the
flow file) the parsed JSON value, so later steps read its fields (``{{ extract.product }}``); with
``labels`` (a list, or a mapping to synonyms, as task files have them) the label read from the answer
as ``llmlab eval`` reads it, ``(unparsed)`` when it names none. Generation settings have
GenerationConfig's names; flows default to greedy decoding (``temperature: 0``) so that a chain
reproduces.

Everything is checked when the file loads, before any model: unknown keys, settings, schemas, labels,
templates that do not compile, a name that is not the input, a row or an earlier step (a later step
is named as such), a field a step's schema does not have. Each problem is one line with the file and
line (``llmlab.specfile``). ``check_data`` does the same for the ``row`` columns a dataset must have.

What it gives up: steps run one after another, one chain per input (no branching, no loops, no step
that sees every row); a template reading a field its schema leaves optional fails for the rows whose
value lacks it, and that row's error is recorded.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..checks import did_you_mean
from ..config import GenerationConfig
from ..errors import ConfigError, FlowError
from ..specfile import LineDict, Where, check_template, template_attributes, template_variables
from ..specfile import yaml as specyaml
from ..tasks.spec import TaskSpec, _parse_labels

GENERATION_KEYS = ("max_new_tokens", "temperature", "do_sample", "top_k", "top_p", "seed", "stop",
                   "repeat_penalty")
FLOW_KEYS = {"name", "description", "model", "input", "steps", *GENERATION_KEYS}
STEP_KEYS = {"name", "prompt", "system", "model", "json_schema", "labels", *GENERATION_KEYS}
# names templates read that are not steps, and what they are
RESERVED = {"input": "the input", "row": "the dataset row", "labels_text": "a labels step's label list"}
DEFAULTS = {"temperature": 0}  # a chain of sampled steps would differ run to run
DEFAULT_MODEL = "smollm2"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Step:
    name: str
    prompt: str
    system: str = ""
    model: str | None = None          # None: the flow's model
    settings: dict = field(default_factory=dict)   # GenerationConfig keywords, json_schema included
    labels: TaskSpec | None = None    # a step that answers with one of these labels
    lines: dict = field(default_factory=dict)      # key -> line in the flow file, for errors

    @property
    def config(self) -> GenerationConfig:
        return GenerationConfig(**self.settings)

    @property
    def schema(self) -> dict | None:
        return self.settings.get("json_schema")

    def templates(self) -> dict[str, str]:
        return {key: text for key, text in (("system", self.system), ("prompt", self.prompt)) if text}

    def to_dict(self) -> dict:
        return {"name": self.name, "prompt": self.prompt, "system": self.system, "model": self.model,
                "settings": self.settings,
                "labels": None if self.labels is None else {
                    label: list(self.labels.synonyms.get(label, ())) for label in self.labels.labels}}


@dataclass(frozen=True)
class Flow:
    name: str
    steps: tuple[Step, ...]
    model: str = DEFAULT_MODEL
    input_column: str | None = None
    description: str = ""
    source: str = "<flow>"

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        names = [s.name for s in self.steps]
        raise FlowError(f"flow {self.name!r} has no step {name!r}{did_you_mean(name, names)}; "
                        f"its steps: {', '.join(names)}")

    def model_of(self, step: Step) -> str:
        return step.model or self.model

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(self.model_of(s) for s in self.steps))

    def with_model(self, model: str | None) -> Flow:
        """The same flow with another default model (``--model``); steps naming theirs keep them."""
        return self if not model else replace(self, model=model)

    def reads(self, name: str) -> list[tuple[Step, set[str]]]:
        """Each step whose templates read variable ``name``, with the keys they read of it."""
        out = []
        for step in self.steps:
            texts = step.templates().values()
            if any(name in template_variables(t) for t in texts):
                out.append((step, {k for t in texts for v, k in template_attributes(t) if v == name}))
        return out

    def check_data(self, columns: list[str], source: str, single: bool = False) -> None:
        """Refuse, before any model loads, a flow that reads ``row`` columns the data lacks (or a
        ``row`` at all when there is one text and no dataset)."""
        where = Where(self.source, FlowError)
        for step, keys in self.reads("row"):
            line = step.lines.get("prompt")
            if single:
                raise where.error(line, f"step {step.name!r} reads {{{{ row }}}}, a dataset row: run it "
                                  "with --data FILE rather than --input TEXT")
            for key in sorted(keys):
                if key not in columns:
                    raise where.error(line, f"step {step.name!r} reads row.{key}, but {source} has no "
                                      f"column {key!r}{did_you_mean(key, columns)}; its columns: "
                                      f"{', '.join(columns)}")

    def fingerprint(self) -> str:
        """A digest of everything that shapes the outputs (for resuming a stored run)."""
        data = {"model": self.model, "steps": [s.to_dict() for s in self.steps]}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def load_flow(path: str | Path) -> Flow:
    """A flow file, checked; every problem is one ``FlowError`` line naming the file and line."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise FlowError(f"{path} is a directory; give a flow .yaml file")
    return _build(specyaml.load(path, FlowError, "flow file"), Where(path, FlowError), path.parent)


def parse_flow(text: str, source: str = "<flow>", base: str | Path = ".") -> Flow:
    """A flow from YAML text; schema file paths are read relative to ``base``."""
    return _build(specyaml.parse(text, source, FlowError), Where(source, FlowError), Path(base))


def _build(data, where: Where, base: Path) -> Flow:
    if not isinstance(data, LineDict):
        raise where.error(None, "expected a mapping with `name` and `steps`")
    where.keys(data, FLOW_KEYS, "the flow")
    for key in ("name", "model", "input", "description"):
        if key in data and (not isinstance(data[key], str) or not data[key].strip()):
            raise where.error(data.line_of(key), f"`{key}` must be a non-empty string")
    if "name" not in data:
        raise where.error(data.line, "the flow needs a `name`")
    defaults = {**DEFAULTS, **{k: data[k] for k in GENERATION_KEYS if k in data}}
    _settings(defaults, where, data.line_of(next((k for k in GENERATION_KEYS if k in data), "name")),
              "the flow")
    raw = data.get("steps")
    if not isinstance(raw, list) or not raw:
        raise where.error(data.line_of("steps"), "`steps` must be a list of steps, each with `name` and "
                          "`prompt`")
    steps, seen = [], {}
    for n, item in enumerate(raw, 1):
        step = _step(item, n, defaults, where, base, data.line_of("steps"))
        if step.name in seen:
            raise where.error(step.lines["name"], f"step {n}: the name {step.name!r} is taken by the step "
                              f"on line {seen[step.name]}")
        seen[step.name] = step.lines["name"]
        steps.append(step)
    flow = Flow(name=data["name"].strip(), steps=tuple(steps), model=data.get("model", DEFAULT_MODEL).strip(),
                input_column=data.get("input"), description=str(data.get("description") or ""),
                source=where.source)
    _check_names(flow, where)
    return flow


def _step(item, n: int, defaults: dict, where: Where, base: Path, steps_line: int) -> Step:
    if not isinstance(item, LineDict):
        raise where.error(steps_line, f"step {n} must be a mapping with `name` and `prompt`")
    name = item.get("name")
    named = isinstance(name, str) and _NAME.fullmatch(name)
    label = f"step {name!r}" if named else f"step {n}"
    where.keys(item, STEP_KEYS, label)
    if not named:
        raise where.error(item.line_of("name"), f"{label}: `name` must be a word of letters, digits and _ "
                          f"(templates read the step as {{{{ name }}}}), got {name!r}")
    if name in RESERVED:
        raise where.error(item.line_of("name"), f"{label}: in templates {name!r} is {RESERVED[name]}; "
                          "give the step another name")
    for key in ("prompt", "system", "model"):
        if key in item and (not isinstance(item[key], str) or not item[key].strip()):
            raise where.error(item.line_of(key), f"{label}: `{key}` must be a non-empty string")
    if "prompt" not in item:
        raise where.error(item.line, f"{label} needs a `prompt` (a template)")
    lines = {key: item.line_of(key) for key in (*item, "name", "prompt")}
    for key in ("system", "prompt"):
        if key in item:
            try:
                check_template(item[key], FlowError)
            except FlowError as exc:
                raise where.error(item.line_of(key), f"{label}, {key}: {exc}") from None
    settings = {**defaults, **{k: item[k] for k in GENERATION_KEYS if k in item}}
    _settings(settings, where, item.line, label)
    labels = None
    if "labels" in item:
        if "json_schema" in item:
            raise where.error(item.line_of("labels"), f"{label}: give `labels` or `json_schema`, not both "
                              "(a schema with an enum also gives one of a set of answers)")
        names, synonyms = _parse_labels(item, where)
        labels = TaskSpec(name=name, labels=names, instruction="", synonyms=synonyms, source=where.source)
    if "json_schema" in item:
        settings["json_schema"] = _schema(item, base, where, label)
        _settings(settings, where, item.line_of("json_schema"), label)
    return Step(name=name, prompt=item["prompt"], system=item.get("system", ""), model=item.get("model"),
                settings=settings, labels=labels, lines=lines)


def _settings(settings: dict, where: Where, line: int, label: str) -> None:
    try:
        GenerationConfig(**settings)
    except ConfigError as exc:
        raise where.error(line, f"{label}: {exc}") from None
    except TypeError as exc:  # a value of a type GenerationConfig cannot even compare
        raise where.error(line, f"{label}: invalid generation setting ({exc})") from None


def _schema(item: LineDict, base: Path, where: Where, label: str) -> dict:
    from ..schema import read_schema_file

    value, line = item["json_schema"], item.line_of("json_schema")
    if isinstance(value, str):
        path = Path(value).expanduser()
        try:
            return read_schema_file(path if path.is_absolute() else base / path, "json_schema")
        except ConfigError as exc:
            raise where.error(line, f"{label}: {exc}") from None
    if value is True:
        return {"type": "object"}
    if not isinstance(value, dict):
        raise where.error(line, f"{label}: `json_schema` must be a mapping (a JSON schema), true for any "
                          f"JSON object, or the path of a .json file, got {value!r}")
    return json.loads(json.dumps(value))


def _check_names(flow: Flow, where: Where) -> None:
    """Every name a template reads is the input, the row, an earlier step, or (in a labels step)
    its labels_text; a field read of a step with an object schema is one of its properties."""
    names = [s.name for s in flow.steps]
    for i, step in enumerate(flow.steps):
        earlier = names[:i]
        allowed = ["input", "row", *earlier] + (["labels_text"] if step.labels else [])
        for key, text in step.templates().items():
            line, label = step.lines.get(key), f"step {step.name!r}, {key}"
            for var in sorted(template_variables(text)):
                if var in allowed:
                    continue
                if var == step.name:
                    why = "its own output, which does not exist yet"
                elif var in names:
                    why = "a step that runs later (steps run in the order they are written)"
                elif var == "labels_text":
                    why = "a labels step's label list, and this step has no `labels`"
                else:
                    why = (f"neither the input, a dataset row nor an earlier step"
                           f"{did_you_mean(var, allowed)}")
                raise where.error(line, f"{label}: {{{{ {var} }}}} is {why}")
            for var, field_name in sorted(template_attributes(text)):
                if var in earlier:
                    _check_field(flow.step(var), field_name, where, line, label)


def _check_field(source: Step, name: str, where: Where, line: int, label: str) -> None:
    schema = source.schema
    if hasattr(str, name) and (schema is None or schema.get("type") != "object"):
        return  # {{ classify.upper() }}: a string's own method
    if schema is None:
        raise where.error(line, f"{label}: reads {source.name}.{name}, but {source.name!r} answers with "
                          "text; give it a `json_schema` to read fields of its answer")
    props = schema.get("properties")
    if schema.get("type") != "object" or props is None:
        if schema.get("type") not in (None, "object"):
            raise where.error(line, f"{label}: reads {source.name}.{name}, but the json_schema of "
                              f"{source.name!r} gives a {schema['type']}, not an object")
        return  # an object whose properties the schema leaves open
    if name not in props and schema.get("additionalProperties") is not True:
        raise where.error(line, f"{label}: reads {source.name}.{name}, but the json_schema of "
                          f"{source.name!r} has no property {name!r}{did_you_mean(name, props)}; its "
                          f"properties: {', '.join(props)}")
