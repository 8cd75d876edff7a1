"""The one renderer for templates users write in task and suite files: jinja2, sandboxed, strict.

A template in a task or suite file is code from whoever wrote the file, so it runs in jinja2's
immutable sandbox (no attribute tricks, no mutating the values it is given), and a variable it names
but is not given is an error, not an empty string: a misspelt ``{{ lables }}`` should fail, not
vanish. Every failure -- a syntax error or a missing variable -- is one line in the same words
wherever the template came from, ``template '...' failed: 'lables' is undefined (did you mean
'labels'?)``, raised as the caller's error type so that the caller can put the file and line in front.

What it gives up: the line inside a template is named only for syntax errors (jinja2 knows it
then); chat templates are not rendered here, since they follow the model's rules (``llmlab.chat``).
"""

from __future__ import annotations

import re
from functools import lru_cache

from ..checks import did_you_mean
from ..errors import LlmlabError


@lru_cache(maxsize=1)
def _environment():
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # keep_trailing_newline: a template renders to exactly what it says (callers strip if they want)
    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)


@lru_cache(maxsize=512)
def _compiled(source: str):
    return _environment().from_string(source)


def _failure(source: str, exc: Exception, error: type[Exception], variables=()) -> Exception:
    shown = source if len(source) <= 60 else source[:57] + "..."
    line = getattr(exc, "lineno", None) if "\n" in source.strip() else None
    at = f" (line {line} of the template)" if line else ""
    missing = re.fullmatch(r"'(\w+)' is undefined", str(exc))
    hint = did_you_mean(missing.group(1), variables) if missing else ""
    return error(f"template {shown!r} failed{at}: {exc}{hint}")


def check_template(source: str, error: type[Exception] = LlmlabError) -> None:
    """Compile ``source`` once, so a syntax error shows when the file loads, not mid-run."""
    from jinja2 import TemplateError

    try:
        _compiled(source)
    except TemplateError as exc:
        raise _failure(source, exc, error) from exc


def render(source: str, variables: dict, error: type[Exception] = LlmlabError) -> str:
    """``source`` rendered with ``variables``; any failure is ``error("template '...' failed: ...")``.

    >>> render("Hello {{ name }}", {"name": "Groningen"})
    'Hello Groningen'
    >>> render("Hello {{ nmae }}", {"name": "Groningen"})
    Traceback (most recent call last):
    ...
    llmlab.errors.LlmlabError: template 'Hello {{ nmae }}' failed: 'nmae' is undefined (did you mean 'name'?)
    """
    from jinja2 import TemplateError

    try:
        return _compiled(source).render(**variables)
    except TemplateError as exc:
        raise _failure(source, exc, error, variables) from exc


def template_variables(source: str) -> set[str]:
    """The variables ``source`` reads from outside (``{{ topic }}``); empty when it does not compile
    (``check_template`` reports that, with its line)."""
    from jinja2 import TemplateError, meta

    try:
        return set(meta.find_undeclared_variables(_environment().parse(source)))
    except TemplateError:
        return set()


def template_attributes(source: str) -> set[tuple[str, str]]:
    """The ``(variable, key)`` pairs ``source`` reads as ``{{ variable.key }}`` or
    ``{{ variable["key"] }}``, so a file can be checked against the fields its values will have
    before anything runs (a flow's ``{{ row.summary }}`` against the data's columns).

    >>> sorted(template_attributes("{{ row.review }} {{ extract['name'] }} {{ input }}"))
    [('extract', 'name'), ('row', 'review')]
    """
    from jinja2 import TemplateError, nodes

    try:
        tree = _environment().parse(source)
    except TemplateError:
        return set()
    out = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if not isinstance(node.node, nodes.Name):
            continue
        if isinstance(node, nodes.Getattr):
            out.add((node.node.name, node.attr))
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            out.add((node.node.name, node.arg.value))
    return out
