"""The one YAML reader for files users write: YAML 1.2's core schema, with the line of every entry.

PyYAML follows YAML 1.1, where ``yes``, ``no``, ``on``, ``off``, ``y`` and ``n`` are booleans, ``017``
is octal and ``2025-01-01`` is a date. In a task, suite or judge file those are labels, answers and
as-of dates ("Is it spam? yes / no"), and a label ``no`` silently becoming ``False`` gives wrong
verdicts. This reader resolves plain scalars as YAML 1.2's core schema does: only ``true``/``false``
are booleans, ``null``/``~``/nothing is null, decimal, ``0o`` and ``0x`` integers and floats are
numbers, and everything else -- dates included -- stays the text that was written.

    >>> parse("labels: [yes, no, On]\\nflag: true\\nas_of: 2025-01-01\\nn: 017", "x.yaml")
    {'labels': ['yes', 'no', 'On'], 'flag': True, 'as_of': '2025-01-01', 'n': 17}

Once a file is parsed into dicts, PyYAML's lines are gone, and "item 7 has no prompt" is much less
useful than "line 42": mappings come back as ``LineDict``, which remembers the line it starts on and
the line of each key. A key given twice is an error (PyYAML would silently keep the last). ``Where``
turns problems into ``file, line N: message`` and checks the shapes every spec file shares.

What it gives up: PyYAML underneath, so YAML 1.1 syntax quirks other than scalar types remain
(merge keys ``<<`` still work); values that are not mappings (lists, strings) carry no line of their
own -- errors about them point at the key that holds them.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import yaml

from ..checks import did_you_mean, whole_number
from ..errors import LlmlabError

_CORE = [  # (tag, pattern, first characters) in the order they are tried: int before float
    ("bool", r"true|True|TRUE|false|False|FALSE", "tTfF"),
    ("null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    ("int", r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", "-+0123456789"),
    ("float", r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
              r"|[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN", "-+.0123456789"),
]


class LineDict(dict):
    """A dict from a YAML mapping, with the (1-based) line it starts on and the line of each key."""

    line: int = 0
    key_lines: dict

    def line_of(self, key) -> int:
        return self.key_lines.get(key, self.line) if hasattr(self, "key_lines") else self.line


class Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2 core-schema scalars and ``LineDict`` mappings."""


Loader.yaml_implicit_resolvers = {}
Loader.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])
for _tag, _pattern, _first in _CORE:
    Loader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(rf"^(?:{_pattern})$"), list(_first))


def _int(loader: Loader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    base = 8 if text.startswith("0o") else 16 if text.startswith("0x") else 10
    return int(text, base)  # "017" is 17, as in YAML 1.2, not 15


def _float(loader: Loader, node: yaml.ScalarNode) -> float:
    text = loader.construct_scalar(node).lower()
    if text.endswith(".inf"):
        return -math.inf if text.startswith("-") else math.inf
    return math.nan if text == ".nan" else float(text)


def _mapping(loader: Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)  # resolves YAML merge keys (<<) before we look at the keys
    out = LineDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {out.key_lines[key]})",
                key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


Loader.add_constructor("tag:yaml.org,2002:int", _int)
Loader.add_constructor("tag:yaml.org,2002:float", _float)
Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def parse(text: str, source: str, error: type[Exception] = LlmlabError) -> object:
    """Parse YAML ``text``; a syntax error is ``error("source, line N, column M: not valid YAML: ...")``."""
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise error(f"{source}{where}: not valid YAML: {problem}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{source}: not valid YAML: {' '.join(str(exc).split())}") from exc


def load(path: Path, error: type[Exception] = LlmlabError, kind: str = "file") -> object:
    """Read and parse the file at ``path``; a missing or unreadable file is one line naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise error(f"{kind} not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {kind} {path}: {exc}") from exc
    return parse(text, str(path), error)


class Where:
    """Problems in one spec file as ``error("file, line N: message")``, and the shapes files share.

    >>> from llmlab.errors import TaskError
    >>> doc = parse("name: x\\nlables: [a, b]\\n", "t.yaml")
    >>> Where("t.yaml", TaskError).keys(doc, {"name", "labels"}, "the task")
    Traceback (most recent call last):
    ...
    llmlab.errors.TaskError: t.yaml, line 2: the task: unknown key 'lables' (did you mean 'labels'?)
    """

    def __init__(self, source, error: type[Exception]):
        self.source = str(source)
        self.error_type = error

    def error(self, line: int | None, message: str) -> Exception:
        return self.error_type(f"{self.source}, line {line}: {message}" if line else
                               f"{self.source}: {message}")

    def keys(self, d: LineDict, allowed, label: str) -> None:
        """Refuse the first key of ``d`` that is not ``allowed``, at its line, with the closest name
        (or, when none is close, the list of known keys)."""
        for key in d:
            if key not in allowed:
                hint = did_you_mean(key, allowed) or f"; known: {', '.join(sorted(map(str, allowed)))}"
                raise self.error(d.line_of(key), f"{label}: unknown key {key!r}{hint}")

    def whole_number(self, d: LineDict, key: str, label: str, default, least: int = 1):
        """``d[key]`` as a whole number >= ``least``; ``default`` when the key is absent."""
        if key not in d:
            return default
        try:
            return whole_number(f"'{key}'", d[key], least=least, error=ValueError)
        except ValueError as exc:
            raise self.error(d.line_of(key), f"{label}: {exc}") from None
