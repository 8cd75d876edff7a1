"""A tool: a Python function a model may call, its schema read from its type hints and docstring.

``Tool.from_function(fn)`` (or the ``@tool`` decorator) builds the parameters' JSON schema with
pydantic from the signature, takes the description from the docstring's summary and each parameter's
description from its ``Args:`` / ``:param:`` section (``docstring_parser``), and checks a call's
arguments with the same pydantic model, so what the schema says and what is accepted cannot drift.

Running a tool (``Tool.run``) never raises and never hangs the caller: bad arguments, an exception in
the tool, a result that is not JSON, or a tool that outlives its ``timeout`` each come back as a
``ToolResult`` with an ``error`` line, which the agent loop records as a step and shows the model.
A tool that hangs is left running on a daemon thread (Python cannot kill a thread); its result, if
it ever comes, is dropped.
"""

from __future__ import annotations

import inspect
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from ..errors import ConfigError

DEFAULT_TIMEOUT = 10.0  # seconds a tool may run before its call is recorded as timed out
MAX_RESULT_CHARS = 4000  # a longer result is cut (and says so): it goes back into a small context


@dataclass
class ToolResult:
    """What one call of a tool gave: ``content`` (JSON text, what the model reads back) or ``error``."""
    content: str = ""
    error: str | None = None
    seconds: float = 0.0
    ran: bool = True  # False when the call was only shown (a dry run of a tool with side effects)

    @property
    def ok(self) -> bool:
        return self.error is None

    def for_model(self) -> str:
        """What the model is shown: the result, or the error as text it can react to."""
        return self.content if self.ok else f"error: {self.error}"


@dataclass
class Tool:
    """A callable the model may use. ``side_effects`` marks tools that change something outside the
    conversation (write a file, send a message): a dry run shows their calls without running them."""
    name: str
    description: str
    parameters: dict
    fn: Callable[..., Any] = field(repr=False)
    side_effects: bool = False
    timeout: float = DEFAULT_TIMEOUT
    # worked uses shown to the model before the request, as turns of a conversation: each a dict of
    # "request", "arguments", "result" and "answer" (small models copy a shown call far better than
    # they follow a described one)
    examples: list[dict] = field(default_factory=list)
    _validator: Any = field(default=None, repr=False, compare=False)

    @property
    def spec(self) -> dict:
        """The OpenAI chat format's tool definition."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}

    @classmethod
    def from_function(cls, fn: Callable, *, name: str | None = None, description: str | None = None,
                      side_effects: bool = False, timeout: float = DEFAULT_TIMEOUT,
                      examples: list[dict] | None = None) -> Tool:
        """A tool from a function with type hints; its docstring says what it does and, per
        parameter, what each argument means. A parameter without a type hint is refused."""
        import docstring_parser
        import pydantic

        if not callable(fn):
            raise ConfigError(f"a tool must be a function, got {type(fn).__name__}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < 1e6:
            raise ConfigError(f"a tool's timeout must be a positive number of seconds, got {timeout!r}")
        for ex in examples or []:
            if not isinstance(ex, dict) or not {"request", "answer"} <= set(ex):
                raise ConfigError("a tool's worked example is a dict with 'request', 'arguments', "
                                  f"'result' and 'answer', got {ex!r}")
        tool_name = name or getattr(fn, "__name__", "")
        doc = docstring_parser.parse(inspect.getdoc(fn) or "")
        param_docs = {p.arg_name: p.description or "" for p in doc.params}
        try:
            hints = get_type_hints(fn)
        except Exception as exc:  # a hint naming something that does not exist
            raise ConfigError(f"tool {tool_name!r}: cannot read its type hints ({exc})") from None
        fields: dict[str, Any] = {}
        for p in inspect.signature(fn).parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise ConfigError(f"tool {tool_name!r}: *args and **kwargs cannot be described to a model")
            if p.name not in hints:
                raise ConfigError(f"tool {tool_name!r}: parameter {p.name!r} needs a type hint")
            default = ... if p.default is inspect.Parameter.empty else p.default
            described = pydantic.Field(default, description=param_docs.get(p.name) or None)
            fields[p.name] = (hints[p.name], described)
        try:
            # an argument the tool does not take is an error the model is shown, not silently dropped
            model = pydantic.create_model(f"{tool_name}_arguments",
                                          __config__=pydantic.ConfigDict(extra="forbid"), **fields)
            schema = model.model_json_schema()
        except Exception as exc:  # a type pydantic cannot put in a schema
            raise ConfigError(f"tool {tool_name!r}: its parameters cannot be a JSON schema ({exc})") from None
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        schema.setdefault("properties", {})
        summary = description or " ".join(x for x in (doc.short_description, doc.long_description) if x)
        from .spec import _one

        spec = _one({"name": tool_name, "description": summary or "", "parameters": schema})
        return cls(spec["function"]["name"], spec["function"]["description"], schema, fn,
                   side_effects=side_effects, timeout=timeout, examples=list(examples or []),
                   _validator=model)

    def check(self, arguments: str | dict) -> dict:
        """The arguments as a dict of checked values, or ``ValueError`` with one line saying why."""
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments or "{}")
            except ValueError as exc:
                raise ValueError(f"arguments are not JSON ({exc})") from None
        if not isinstance(arguments, dict):
            raise ValueError(f"arguments must be a JSON object, got {type(arguments).__name__}")
        if self._validator is None:  # a tool given as a schema: checked against it
            from jsonschema import Draft202012Validator

            errors = sorted(Draft202012Validator(self.parameters).iter_errors(arguments), key=str)
            if errors:
                where = "/".join(str(p) for p in errors[0].absolute_path)
                raise ValueError(f"{where + ': ' if where else ''}{errors[0].message}")
            return arguments
        import pydantic

        try:
            checked = self._validator.model_validate(arguments)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            raise ValueError(f"{where + ': ' if where else ''}{first['msg']}") from None
        return {k: getattr(checked, k) for k in type(checked).model_fields}

    def run(self, arguments: str | dict, *, dry_run: bool = False) -> ToolResult:
        """Check the arguments and run the tool under its timeout; every failure is a result."""
        start = time.perf_counter()
        try:
            args = self.check(arguments)
        except ValueError as exc:
            return ToolResult(error=f"invalid arguments for {self.name}: {exc}", ran=False)
        if dry_run and self.side_effects:
            return ToolResult(content=json.dumps({"dry_run": f"{self.name} was not run"}), ran=False)
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = self.fn(**args)
            except BaseException as exc:  # noqa: BLE001 - whatever the tool raises is its result
                box["error"] = exc

        worker = threading.Thread(target=target, name=f"tool-{self.name}", daemon=True)
        worker.start()
        worker.join(self.timeout)
        seconds = time.perf_counter() - start
        if worker.is_alive():
            return ToolResult(error=f"{self.name} did not finish within {self.timeout:g} s", seconds=seconds)
        if "error" in box:
            exc = box["error"]
            return ToolResult(error=f"{self.name} failed: {type(exc).__name__}: {exc}", seconds=seconds)
        value = box.get("value")
        try:
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            return ToolResult(error=f"{self.name} returned a {type(value).__name__}, which is not JSON",
                              seconds=seconds)
        if len(text) > MAX_RESULT_CHARS:
            text = text[:MAX_RESULT_CHARS] + f" [cut: {len(text) - MAX_RESULT_CHARS} more characters]"
        return ToolResult(content=text, seconds=seconds)


def tool(fn: Callable | None = None, *, name: str | None = None, description: str | None = None,
         side_effects: bool = False, timeout: float = DEFAULT_TIMEOUT, examples: list[dict] | None = None):
    """Make a function a ``Tool``: ``@tool`` or ``@tool(side_effects=True, timeout=5)``."""
    def wrap(f: Callable) -> Tool:
        return Tool.from_function(f, name=name, description=description, side_effects=side_effects,
                                  timeout=timeout, examples=examples)

    return wrap(fn) if fn is not None else wrap


def from_spec(spec: dict, fn: Callable | None = None) -> Tool:
    """A ``Tool`` from an OpenAI-format definition (arguments checked against its schema); without
    ``fn`` it cannot run (a served request's tools are run by the client, not by llmlab)."""
    from .spec import _one

    f = _one(spec)["function"]

    def missing(**_):
        raise RuntimeError(f"tool {f['name']!r} has no implementation here")

    return Tool(f["name"], f["description"], f["parameters"], fn or missing)
