"""Read a YAML file keeping the line of every mapping, so schema errors can point at the entry.

PyYAML reports syntax errors with a line and column, but once a file is parsed into dicts the lines
are gone, and "item 7 has no prompt" is much less useful than "line 42". This loader returns dicts
that remember where they started (``.line``) and where each of their keys is (``.key_lines``), and
refuses duplicate keys, which PyYAML would otherwise resolve silently by keeping the last one.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..errors import SuiteError
from ..yaml12 import Loader as Yaml12Loader


class LineDict(dict):
    """A dict from a YAML mapping, with the (1-based) line it starts on and the line of each key."""

    line: int = 0
    key_lines: dict

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line) if hasattr(self, "key_lines") else self.line


class _Loader(Yaml12Loader):  # yes/no/on/off stay strings (labels, answers)
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
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


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: Path) -> object:
    """Parse ``path``; a syntax error becomes a SuiteError naming the file, line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SuiteError(f"suite file not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"cannot read suite file {path}: {exc}") from exc
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise SuiteError(f"{path}{where}: {problem}") from exc
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path}: invalid YAML: {exc}") from exc
