"""Probe suites: YAML files of checks (prompts, references, a judge, settings), read and validated.

A suite is data, not code: a user adds one by writing YAML (docs/probes.md has the format). Every
mistake is reported with the file and the line of the entry that is wrong, before any model loads:

    suite.yaml, line 14: check 'letters', item 2: unknown key 'refrence' (did you mean 'reference'?)

Files are read, and templates rendered, by the one spec-file kit (``llmlab.specfile``) that task
files use too. Built-in suites live in ``probes/suites/``; ``load_suite`` takes a built-in name or a
path.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ..checks import did_you_mean
from ..config import GenerationConfig
from ..errors import ConfigError, SuiteError
from ..specfile import LineDict, Where, check_template, render, template_variables
from ..specfile import yaml as specyaml
from .judges import Judge, JudgeSpecError, as_list, make_judge

SUITES_DIR = Path(__file__).parent / "suites"

# measure -> what it needs from the judge (None: works on the raw text, no judge needed)
MEASURES = {
    "share": "any",          # share of answers per verdict
    "accuracy": "correct",   # share 'correct', per group and the gap between groups
    "distribution": "any",   # share of each verdict per group (e.g. per occupation)
    "flip": "any",           # share of samples whose verdict differs from the item's majority verdict
    "distinct": None,        # distinct outputs among the samples of one prompt
    "reproduce": None,       # whether every sample of one prompt is identical
}
SUITE_KEYS = {"name", "description", "samples", "settings", "system", "prompt_template", "base_template",
              "base_stop", "checks"}
CHECK_KEYS = {"name", "description", "measure", "judge", "headline", "samples", "settings", "system",
              "prompt_template", "base_template", "base_stop", "items"}
ITEM_KEYS = {"id", "prompt", "base_prompt", "reference", "stale", "as_of", "group", "note"}
DEFAULT_BASE_TEMPLATE = "Question: {{ prompt }}\nAnswer:"
DEFAULT_BASE_STOP = ["\n"]


@dataclass
class Item:
    id: str
    fields: dict  # everything the YAML entry gives (prompt, reference, template variables...)
    line: int

    @property
    def group(self) -> str | None:
        g = self.fields.get("group")
        return None if g is None else str(g)


@dataclass
class Check:
    name: str
    measure: str
    judge: Judge | None
    settings: GenerationConfig
    items: list[Item]
    description: str = ""
    headline: list[str] = field(default_factory=list)
    samples: int | None = None   # pinned by the check; else the run's --samples, else the suite's
    system: str | None = None
    prompt_template: str = "{{ prompt }}"
    base_template: str = DEFAULT_BASE_TEMPLATE
    base_stop: list[str] = field(default_factory=lambda: list(DEFAULT_BASE_STOP))
    line: int = 0

    def user_prompt(self, item: Item) -> str:
        """The prompt as an instruct model gets it (as the user message)."""
        return render(self.prompt_template, item.fields, SuiteError)

    def base_prompt(self, item: Item) -> str:
        """The raw text a base model completes: the item's base_prompt, else the base template."""
        if item.fields.get("base_prompt"):
            return str(item.fields["base_prompt"])
        return render(self.base_template, {**item.fields, "prompt": self.user_prompt(item)}, SuiteError)


@dataclass
class Suite:
    name: str
    path: Path
    checks: list[Check]
    description: str = ""
    samples: int = 1
    sha256: str = ""

    @property
    def builtin(self) -> bool:
        return self.path.parent == SUITES_DIR


def builtin_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def load_suite(name_or_path: str | Path) -> Suite:
    """A built-in suite by name (``hallucination``) or a suite file by path."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if text in builtin_suites():
        return parse_suite(SUITES_DIR / f"{text}.yaml")
    if path.suffix in (".yaml", ".yml") or path.exists() or "/" in text:
        if not path.is_file():
            raise SuiteError(f"suite file not found: {path}")
        return parse_suite(path)
    names = builtin_suites()
    raise SuiteError(f"unknown suite {text!r}{did_you_mean(text, names, cutoff=0.5)}. "
                     f"Built-in suites: {', '.join(names)} "
                     "(or give the path of a suite .yaml file)")


def parse_suite(path: Path) -> Suite:
    data = specyaml.load(path, SuiteError, "suite file")
    where = Where(path, SuiteError)
    if not isinstance(data, LineDict):
        raise where.error(None, "a suite file is a mapping with 'name' and 'checks' (see docs/probes.md)")
    where.keys(data, SUITE_KEYS, "the suite")
    checks_data = data.get("checks")
    if not isinstance(checks_data, list) or not checks_data:
        raise where.error(data.line_of("checks"), "the suite needs 'checks': a list of checks")
    samples = where.whole_number(data, "samples", "the suite", default=1)
    suite_settings = data.get("settings") or {}
    if not isinstance(suite_settings, dict):
        raise where.error(data.line_of("settings"), "'settings' must be a mapping of generation settings")
    checks, seen = [], set()
    for i, cd in enumerate(checks_data, 1):
        check = _parse_check(cd, i, data, suite_settings, where)
        if check.name in seen:
            raise where.error(cd.line, f"two checks are named {check.name!r}")
        seen.add(check.name)
        checks.append(check)
    return Suite(name=str(data.get("name") or path.stem), path=path, checks=checks,
                 description=str(data.get("description") or "").strip(), samples=samples,
                 sha256=hashlib.sha256(path.read_bytes()).hexdigest())


def _parse_check(cd, index: int, suite: LineDict, suite_settings: dict, where: Where) -> Check:
    if not isinstance(cd, LineDict):
        raise where.error(suite.line_of("checks"), f"check {index} must be a mapping")
    label = f"check {cd.get('name', index)!r}"
    where.keys(cd, CHECK_KEYS, label)
    name = cd.get("name")
    if not isinstance(name, str) or not name.strip():
        raise where.error(cd.line, f"check {index} needs a 'name'")
    measure = cd.get("measure", "share")
    if measure not in MEASURES:
        raise where.error(cd.line_of("measure"), f"{label}: unknown measure {measure!r}"
                          f"{did_you_mean(measure, MEASURES)}; "
                          f"known: {', '.join(MEASURES)}")
    try:
        judge = make_judge(cd.get("judge"))
    except JudgeSpecError as exc:
        raise where.error(cd.line_of("judge"), f"{label}: {exc}") from None
    need = MEASURES[measure]
    if need and judge is None:
        raise where.error(cd.line, f"{label}: the {measure} measure needs a 'judge'")
    if not need and judge is not None:
        raise where.error(cd.line_of("judge"), f"{label}: the {measure} measure compares the answers "
                          "themselves and uses no judge; remove 'judge' (or use measure share)")
    if need == "correct" and "correct" not in judge.verdicts:
        raise where.error(cd.line_of("judge"), f"{label}: the accuracy measure needs a judge with a "
                          f"'correct' verdict (reference or number), not {judge.type}")
    config = _settings(cd, suite, suite_settings, label, where)
    headline = [str(h) for h in as_list(cd.get("headline"))]
    if judge is not None:
        for h in headline:
            if h not in judge.verdicts:
                raise where.error(cd.line_of("headline"), f"{label}: headline {h!r} is not a verdict of "
                                  f"the {judge.type} judge ({', '.join(judge.verdicts)})")
    check = Check(
        name=name.strip(), measure=measure, judge=judge, settings=config, items=[],
        description=str(cd.get("description") or "").strip(), headline=headline,
        samples=where.whole_number(cd, "samples", label, default=None),
        system=_pick(cd, suite, "system"), line=cd.line,
        prompt_template=str(_pick(cd, suite, "prompt_template") or "{{ prompt }}"),
        base_template=str(_pick(cd, suite, "base_template") or DEFAULT_BASE_TEMPLATE),
        base_stop=[str(s) for s in as_list(_pick(cd, suite, "base_stop", DEFAULT_BASE_STOP))],
    )
    for key in ("prompt_template", "base_template"):
        try:
            check_template(getattr(check, key), SuiteError)
        except SuiteError as exc:
            where_ = cd if key in cd else suite
            raise where.error(where_.line_of(key), f"{label}: bad {key}: {exc}") from None
    check.items = _parse_items(cd, check, label, where)
    return check


def _settings(cd: LineDict, suite: LineDict, suite_settings: dict, label: str, where: Where):
    """The check's settings merged over the suite's, as a GenerationConfig, or the line that is wrong."""
    own = cd.get("settings") or {}
    if not isinstance(own, dict):
        raise where.error(cd.line_of("settings"), f"{label}: 'settings' must be a mapping")
    line = cd.line_of("settings") if "settings" in cd else suite.line_of("settings")
    settings = {**suite_settings, **own}
    known = {f.name for f in dataclasses.fields(GenerationConfig)}
    for key in settings:
        if key not in known:
            raise where.error(line, f"{label}: unknown generation setting {key!r}{did_you_mean(key, known)}; "
                              f"known: {', '.join(sorted(known))}")
    try:
        return GenerationConfig(**settings)
    except ConfigError as exc:
        raise where.error(line, f"{label}: {exc}") from None


def _parse_items(cd: LineDict, check: Check, label: str, where: Where) -> list[Item]:
    raw = cd.get("items")
    if not isinstance(raw, list) or not raw:
        raise where.error(cd.line_of("items") if "items" in cd else cd.line,
                          f"{label} needs 'items': a list of prompts")
    variables = template_variables(check.prompt_template) | template_variables(check.base_template)
    items, ids = [], set()
    for i, entry in enumerate(raw, 1):
        if isinstance(entry, str):  # a bare string is a prompt
            entry = LineDict(prompt=entry)
            entry.line = cd.line_of("items")
        if not isinstance(entry, LineDict):
            raise where.error(cd.line_of("items"), f"{label}, item {i} must be a prompt or a mapping")
        where.keys(entry, ITEM_KEYS | variables, f"{label}, item {i}")
        fields = dict(entry)  # YAML 1.2: an as_of date is already the text the user wrote
        item = Item(id=str(fields.get("id") or f"{check.name}-{i}"), fields=fields, line=entry.line)
        if item.id in ids:
            raise where.error(entry.line, f"{label}: two items have the id {item.id!r}")
        ids.add(item.id)
        try:
            check.user_prompt(item)
            check.base_prompt(item)
            if check.judge is not None:
                check.judge.check_item(item.fields)
        except (JudgeSpecError, SuiteError) as exc:
            raise where.error(entry.line, f"{label}, item {i} ({item.id}): {exc}") from None
        items.append(item)
    return items


def _pick(check: dict, suite: dict, key: str, default=None):
    return check[key] if key in check else suite.get(key, default)
