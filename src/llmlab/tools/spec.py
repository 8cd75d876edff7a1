"""Tool definitions as a model receives them: the OpenAI chat format, checked once, used everywhere.

``GenerationConfig.tools`` holds tool *specs* only (JSON, so a call's settings can be logged and a
server request can carry them): ``{"type": "function", "function": {"name", "description",
"parameters"}}``. ``tool_specs`` accepts that shape, the flat ``{"name", "description",
"parameters"}`` shape (Ollama's docs and many examples write it so), a ``llmlab.tools.Tool`` or a
plain Python function (read through its type hints and docstring), and returns the one shape.
"""

from __future__ import annotations

import json
import re

from ..errors import ConfigError

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what the OpenAI API accepts as a function name
CHOICES = ("auto", "none", "required")


def tool_specs(items) -> tuple[dict, ...]:
    """The tools as OpenAI-format spec dicts, each checked: a name of letters, digits, ``_`` or ``-``,
    a ``parameters`` JSON schema for an object, no name twice."""
    from .tool import Tool

    if items is None:
        return ()
    if isinstance(items, (dict, str, Tool)) or callable(items) and not isinstance(items, (list, tuple)):
        items = [items]
    specs, seen = [], set()
    for item in items:
        spec = _one(item)
        name = spec["function"]["name"]
        if name in seen:
            raise ConfigError(f"two tools are named {name!r}; tool names must be unique")
        seen.add(name)
        specs.append(spec)
    return tuple(specs)


def _one(item) -> dict:
    from .tool import Tool

    if isinstance(item, Tool):
        return item.spec
    if callable(item) and not isinstance(item, dict):
        return Tool.from_function(item).spec
    if not isinstance(item, dict):
        raise ConfigError(f"a tool must be a dict, a Tool or a function, got {type(item).__name__}")
    fn = item.get("function") if item.get("type") == "function" or "function" in item else item
    if not isinstance(fn, dict):
        raise ConfigError(f"a tool's 'function' must be a mapping, got {fn!r}")
    name = fn.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"a tool needs a name of 1-64 letters, digits, '_' or '-', got {name!r}")
    description = fn.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"tool {name!r}: description must be text")
    params = fn.get("parameters") or {"type": "object", "properties": {}}
    if not isinstance(params, dict) or params.get("type", "object") != "object":
        raise ConfigError(f"tool {name!r}: parameters must be a JSON schema of type object")
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(params)
        params = json.loads(json.dumps(params))
    except SchemaError as exc:
        raise ConfigError(f"tool {name!r}: parameters are not valid JSON Schema: {exc.message}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"tool {name!r}: parameters are not JSON: {exc}") from None
    return {"type": "function", "function": {"name": name, "description": description, "parameters": params}}


def check_tool_choice(choice, specs: tuple[dict, ...]) -> None:
    """``auto``, ``none``, ``required`` or the name of one of the tools."""
    if not isinstance(choice, str):
        raise ConfigError(f"tool_choice must be 'auto', 'none', 'required' or a tool's name, got {choice!r}")
    if choice in CHOICES:
        if choice == "required" and not specs:
            raise ConfigError("tool_choice 'required' needs at least one tool")
        return
    names = [s["function"]["name"] for s in specs]
    if choice not in names:
        known = ", ".join(names) or "none are given"
        raise ConfigError(f"tool_choice {choice!r} is not one of the tools ({known})")


def names(specs: tuple[dict, ...]) -> list[str]:
    return [s["function"]["name"] for s in specs]
