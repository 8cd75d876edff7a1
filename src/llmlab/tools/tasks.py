"""Agent tasks: a JSONL file of requests, the tools each may use, and the calls and answer expected.

One task per line::

    {"id": "calc-3", "request": "What is 250 times 4?", "tools": ["calculator"],
     "expected_calls": [{"name": "calculator", "arguments": {"expression": ["250*4", "4*250"]}}],
     "expected_answer": ["1000"], "category": "arithmetic"}

``tools`` names built-in tools as ``llmlab agent run --tool`` does (``calculator``, ``dates``,
``files:FOLDER``, ``search:FOLDER``; folders relative to the task file). ``expected_calls`` is checked
when present: ``[]`` means no tool fits and none may be called (an irrelevance task). Each expected
argument is a value or a list of acceptable values; ``""`` among them marks it optional, and
``{"regex": "..."}`` accepts any string it finds (for free text such as a search query).
``expected_answer`` (a string or list) is checked when present: the answer must contain one of them.

Calls are matched as the Berkeley Function Calling Leaderboard's AST checker matches them, by
structure and not by string: the same function name, every required argument present, no argument
that is not expected, each value equal to an acceptable one — numbers as numbers (``4`` equals
``4.0``), strings without case or whitespace, lists and objects element by element. The calls of a
whole agent run are compared with the expected ones: each expected call made, and no call made that
matches none of them (order and repeats aside).

``builtin`` names the task set shipped with llmlab (``tools/agent_tasks.jsonl``), written for this
project: arithmetic, dates, search over three short documents, and requests no tool fits.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import DataError

BUILTIN_NAME = "builtin"
KEYS = {"id", "request", "tools", "expected_calls", "expected_answer", "category"}


@dataclass(frozen=True)
class AgentTask:
    id: str
    request: str
    tools: tuple[str, ...]
    expected_calls: tuple[dict, ...] | None  # None: not checked; (): no call may be made
    expected_answer: tuple[str, ...] | None
    category: str = ""

    @property
    def irrelevance(self) -> bool:
        return self.expected_calls == ()


def builtin_path() -> Path:
    return Path(str(resources.files("llmlab.tools") / "agent_tasks.jsonl"))


def read_tasks(source: str | Path) -> tuple[list[AgentTask], Path]:
    """The tasks of a JSONL file (or ``builtin``) and the folder their tool paths are relative to."""
    path = builtin_path() if str(source) == BUILTIN_NAME else Path(source).expanduser()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: no such task file (or use '{BUILTIN_NAME}' for llmlab's own tasks)"
                        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read it ({exc})") from None
    tasks, seen = [], set()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            d = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{where}: not JSON ({exc.args[0] if exc.args else exc})") from None
        if not isinstance(d, dict):
            raise DataError(f"{where}: a task must be a JSON object")
        task = _task(d, where)
        if task.id in seen:
            raise DataError(f"{where}: the task id {task.id!r} is used twice")
        seen.add(task.id)
        tasks.append(task)
    if not tasks:
        raise DataError(f"{path}: no tasks in it")
    return tasks, path.parent


def _task(d: dict, where: str) -> AgentTask:
    unknown = set(d) - KEYS
    if unknown:
        raise DataError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                        f"a task has {', '.join(sorted(KEYS))}")
    for key in ("id", "request"):
        if not isinstance(d.get(key), str) or not d[key].strip():
            raise DataError(f"{where}: a task needs a non-empty {key!r}")
    tools = d.get("tools", [])
    if not isinstance(tools, list) or not tools or not all(isinstance(t, str) for t in tools):
        raise DataError(f"{where}: 'tools' must be a non-empty list of tool names")
    if "expected_calls" not in d and "expected_answer" not in d:
        raise DataError(f"{where}: a task needs 'expected_calls', 'expected_answer' or both")
    calls = d.get("expected_calls")
    if calls is not None:
        if not isinstance(calls, list) or not all(
                isinstance(c, dict) and isinstance(c.get("name"), str)
                and isinstance(c.get("arguments", {}), dict) for c in calls):
            raise DataError(f"{where}: 'expected_calls' must be a list of objects with a name "
                            "and arguments")
        for call in calls:
            for value in call.get("arguments", {}).values():
                _check_regexes(value, where)
        calls = tuple(calls)
    answer = d.get("expected_answer")
    if answer is not None:
        answer = (answer,) if isinstance(answer, str) else answer
        if not isinstance(answer, (list, tuple)) or not answer or not all(
                isinstance(a, str) and a.strip() for a in answer):
            raise DataError(f"{where}: 'expected_answer' must be a non-empty string or a list of them")
        answer = tuple(answer)
    return AgentTask(d["id"], d["request"], tuple(tools), calls, answer, str(d.get("category", "")))


def _check_regexes(value, where: str) -> None:
    """Every ``{"regex": ...}`` among an argument's acceptable values compiles."""
    for option in value if isinstance(value, list) else [value]:
        if isinstance(option, dict) and "regex" in option:
            try:
                re.compile(option["regex"])
            except (re.error, TypeError) as exc:
                raise DataError(f"{where}: bad regex {option['regex']!r} ({exc})") from None


# --- matching ------------------------------------------------------------------------------------------


def _norm(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def value_matches(actual, acceptable) -> bool:
    """One argument value against one acceptable value, by structure."""
    if isinstance(acceptable, dict) and set(acceptable) == {"regex"}:
        return isinstance(actual, str) and re.search(acceptable["regex"], actual, re.I) is not None
    if isinstance(acceptable, bool) or isinstance(actual, bool):
        return actual is acceptable
    if isinstance(acceptable, (int, float)):
        return isinstance(actual, (int, float)) and float(actual) == float(acceptable)
    if isinstance(acceptable, str):
        return isinstance(actual, str) and _norm(actual) == _norm(acceptable)
    if isinstance(acceptable, list):
        return (isinstance(actual, list) and len(actual) == len(acceptable)
                and all(value_matches(a, b) for a, b in zip(actual, acceptable, strict=True)))
    if isinstance(acceptable, dict):
        return (isinstance(actual, dict) and set(actual) == set(acceptable)
                and all(value_matches(actual[k], v) for k, v in acceptable.items()))
    return actual == acceptable


def call_matches(expected: dict, name: str, arguments) -> bool:
    """A call (name, JSON arguments) against an expected one (BFCL's AST rules, see the docstring)."""
    if name != expected["name"]:
        return False
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except ValueError:
            return False
    if not isinstance(arguments, dict):
        return False
    wanted = expected.get("arguments", {})
    if set(arguments) - set(wanted):
        return False
    for param, options in wanted.items():
        options = options if isinstance(options, list) else [options]  # a list-typed argument: [[1, 2]]
        if param not in arguments:
            if "" not in options:
                return False
            continue
        if not any(value_matches(arguments[param], o) for o in options if o != ""):
            return False
    return True


def calls_match(expected: tuple[dict, ...], made: list[tuple[str, str]]) -> bool:
    """The run's calls against the expected ones: every expected call was made, and every call made
    is one of the expected (a repeat, in another spelling too, is no fault; a wrong call is)."""
    if not expected:
        return not made
    return (all(any(call_matches(e, n, a) for n, a in made) for e in expected)
            and all(any(call_matches(e, n, a) for e in expected) for n, a in made))


def _plain(text: str) -> str:
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text.lower())  # 1,000 is 1000
    return re.sub(r"\s+", " ", text).strip()


def answer_matches(expected: tuple[str, ...], answer: str | None) -> bool:
    """The answer mentions one of the expected strings as a whole word or number (case, spacing and
    thousands separators aside): "391" is in "17 times 23 is 391." but not in "3910". It checks that
    the value is said, not that nothing wrong is said beside it."""
    if answer is None:
        return False
    text = _plain(answer)
    return any(re.search(r"(?<![\w.])" + re.escape(_plain(e)) + r"(?!\w|\.\d)", text) for e in expected)
