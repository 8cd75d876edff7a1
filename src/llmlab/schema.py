"""JSON schemas for structured output: accepted, checked, made ready for a grammar, and outputs validated.

``GenerationConfig(json_schema=...)`` takes a dict, ``True`` (any JSON object, the CLI's ``--json``) or
a pydantic model class. Two checks run when the config is made, before any model loads: the schema
must be valid JSON Schema (``jsonschema``'s ``Draft202012Validator.check_schema``), and it must use only
what llama.cpp's schema-to-grammar converter (``llama_cpp.llama_grammar.SchemaConverter``) expresses
exactly. Everything else is refused in one line naming the keyword and where it is, never decoded
without the constraint. What it gives up, on purpose:

- numeric bounds (``minimum``, ``multipleOf``...), ``not``, ``allOf``, ``oneOf`` (use ``anyOf``),
  ``if``/``then``, ``uniqueItems``, ``contains``, ``patternProperties``, property counts: the converter
  drops them silently, so they are refused;
- ``pattern`` only as ``^...$`` without backslash escapes or ``(?`` groups: the converter turns ``\\d``
  into a literal and breaks on lookarounds (llama.cpp issues 16790, 25746);
- repetition bounds (``maxLength``, ``maxItems``...) above ``MAX_REPEAT``: the grammar unrolls them and
  llama.cpp's parser refuses (or takes seconds on) longer ones;
- ``$ref`` only to this schema's own ``#/...`` paths, and not recursive; refs are inlined before the
  converter sees them, which also avoids its rule-name clashes;
- ``format`` only ``date``, ``time``, ``date-time`` and ``uuid``.

The grammar is sometimes stricter than the schema (no properties beyond those named unless
``additionalProperties`` says so, properties in the order given, ``{}`` as an object): that loses
nothing, since whatever it lets through still validates. ``validate_output`` checks every output
against the original schema all the same. The hf backend builds its grammar with llguidance from the
same prepared schema, closed the same way (``models/hf_grammar.py``), so one check serves both.
"""

from __future__ import annotations

import copy
import json

from .errors import ConfigError, OutputError

MAX_REPEAT = 1000  # longest maxLength / maxItems the unrolled grammar is built for
ANY_OBJECT = {"type": "object"}

# keywords that say nothing about what is valid: dropped before the grammar is built
ANNOTATIONS = {"title", "description", "$comment", "default", "examples", "deprecated", "readOnly",
               "writeOnly", "$schema", "$id", "$defs", "definitions"}
# what the converter expresses, by the type it applies to
_COMMON = {"type", "enum", "const", "anyOf", "$ref"}
_OBJECT = {"properties", "required", "additionalProperties"}
_ARRAY = {"items", "prefixItems", "minItems", "maxItems"}
_STRING = {"pattern", "format", "minLength", "maxLength"}
SUPPORTED = _COMMON | _OBJECT | _ARRAY | _STRING
FORMATS = {"date", "time", "date-time", "uuid"}
TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}


def as_schema(value) -> dict | None:
    """A JSON schema dict from what ``GenerationConfig.json_schema`` accepts (None stays None)."""
    if value is None or value is False:
        return None
    if value is True:
        return dict(ANY_OBJECT)
    if isinstance(value, type) and hasattr(value, "model_json_schema"):  # a pydantic model class
        return value.model_json_schema()
    if not isinstance(value, dict):
        raise ConfigError("json_schema must be a dict (a JSON schema), True for any JSON object, or a "
                          f"pydantic model class, got {type(value).__name__}")
    try:
        return json.loads(json.dumps(value))  # a private copy, and proof that it is JSON
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"json_schema is not JSON: {exc}") from None


def read_schema_file(path, label: str = "--json-schema") -> dict:
    """A JSON schema from a file (the CLI's ``--json-schema FILE``, a flow step's ``json_schema``),
    with one-line errors that start with ``label`` and the path."""
    from pathlib import Path

    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{label} {p}: no such file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{label} {p}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{label} {p}: cannot read it ({exc.strerror or exc})") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{label} {p}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{label} {p}: a JSON schema is an object {{...}}, "
                          f"not {type(value).__name__}")
    return value


def check_schema(schema: dict) -> None:
    """Raise one ``ConfigError`` line unless ``schema`` is valid JSON Schema that a grammar expresses."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = _pointer(exc.path)
        raise ConfigError(f"json_schema is not valid JSON Schema: {exc.message}"
                          f"{f' (at {where})' if where else ''}") from None
    grammar_schema(schema)


def grammar_schema(schema: dict) -> dict:
    """The schema as the grammar converter should see it: annotations dropped, ``$ref`` inlined,
    every keyword one it expresses exactly. Raises one ``ConfigError`` line naming what it cannot."""
    return _Walk(schema).node(schema, "#", ())


class _Walk:
    def __init__(self, root: dict):
        self.root = root

    def refuse(self, where: str, what: str) -> ConfigError:
        return ConfigError(f"json_schema: {what} at {where} cannot be enforced by a grammar, so it is "
                           "refused rather than left unconstrained")

    def node(self, s, where: str, refs: tuple) -> dict:
        if isinstance(s, bool):
            raise self.refuse(where, f"the boolean schema {str(s).lower()}")
        if "$ref" in s:
            return self.ref(s, where, refs)
        for key in s:
            if key not in SUPPORTED and key not in ANNOTATIONS:
                raise self.refuse(where, f"the keyword {key!r}")
        if "$id" in s and where != "#":
            raise self.refuse(where, "a nested '$id'")
        out: dict = {}
        kind = s.get("type")
        if isinstance(kind, list):
            if set(s) - ANNOTATIONS - {"type"}:
                raise self.refuse(where, "a list of types with other keywords beside it")
            return {"type": list(kind)}
        if "anyOf" in s:
            if set(s) - ANNOTATIONS - {"anyOf"}:
                raise self.refuse(where, "'anyOf' with other keywords beside it")
            return {"anyOf": [self.node(a, f"{where}/anyOf/{i}", refs) for i, a in enumerate(s["anyOf"])]}
        if "enum" in s or "const" in s:
            if set(s) - ANNOTATIONS - {"enum", "const", "type"} or ("enum" in s and "const" in s):
                raise self.refuse(where, "'enum' or 'const' with other keywords beside it")
            return {k: s[k] for k in ("const", "enum") if k in s}
        if kind is not None:
            out["type"] = kind
        self.by_type(s, kind, where)
        if "properties" in s:
            out["properties"] = {name: self.node(p, f"{where}/properties/{name}", refs)
                                 for name, p in s["properties"].items()}
        if "required" in s:
            missing = [r for r in s["required"] if r not in s.get("properties", {})]
            if missing:
                raise self.refuse(where, f"'required' naming {missing[0]!r}, which 'properties' does "
                                  "not define")
            out["required"] = list(s["required"])
        if "additionalProperties" in s:
            extra = s["additionalProperties"]
            out["additionalProperties"] = extra if isinstance(extra, bool) else self.node(
                extra, f"{where}/additionalProperties", refs)
        if "items" in s:
            out["items"] = self.node(s["items"], f"{where}/items", refs)
        if "prefixItems" in s:
            out["prefixItems"] = [self.node(p, f"{where}/prefixItems/{i}", refs)
                                  for i, p in enumerate(s["prefixItems"])]
        for key in ("minItems", "maxItems", "minLength", "maxLength", "pattern", "format"):
            if key in s:
                out[key] = s[key]
        return out

    def by_type(self, s: dict, kind, where: str) -> None:
        """Keywords the converter reads only in some combinations; the rest it would drop."""
        keys = set(s) - ANNOTATIONS
        if kind not in (None, *TYPES):
            raise self.refuse(where, f"the type {kind!r}")
        for group, name in ((_OBJECT, "object"), (_ARRAY, "array"), (_STRING, "string")):
            if keys & group and kind not in (None, name):
                raise self.refuse(where, f"{sorted(keys & group)[0]!r} on a schema of type {kind!r}")
        if keys & _OBJECT and keys & (_ARRAY | _STRING) or keys & _ARRAY and keys & _STRING:
            raise self.refuse(where, "keywords of more than one type without a 'type'")
        if "prefixItems" in s and keys & {"items", "minItems", "maxItems"}:
            raise self.refuse(where, "'prefixItems' with 'items', 'minItems' or 'maxItems'")
        if keys & {"minItems", "maxItems"} and "items" not in s:
            raise self.refuse(where, "'minItems'/'maxItems' without 'items'")
        for key in ("minItems", "maxItems", "minLength", "maxLength"):
            if s.get(key, 0) > MAX_REPEAT:
                raise self.refuse(where, f"{key!r} above {MAX_REPEAT}")
        if keys & {"minLength", "maxLength"} and (kind != "string" or keys & {"pattern", "format"}):
            raise self.refuse(where, "'minLength'/'maxLength' without type 'string', or with "
                              "'pattern' or 'format'")
        if "pattern" in s and "format" in s:
            raise self.refuse(where, "'pattern' with 'format'")
        if "format" in s and s["format"] not in FORMATS:
            raise self.refuse(where, f"the format {s['format']!r} (only {', '.join(sorted(FORMATS))})")
        if "pattern" in s:
            p = s["pattern"]
            if not (p.startswith("^") and p.endswith("$")) or "\\" in p or "(?" in p:
                raise self.refuse(where, f"the pattern {p!r} (only ^...$ without backslash escapes, "
                                  "lookarounds or (? groups)")

    def ref(self, s: dict, where: str, refs: tuple) -> dict:
        ref = s["$ref"]
        if set(s) - ANNOTATIONS - {"$ref"}:
            raise self.refuse(where, "'$ref' with other keywords beside it")
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise self.refuse(where, f"the $ref {ref!r} (only refs into this schema, '#/...')")
        if ref in refs:
            raise self.refuse(where, f"the recursive $ref {ref!r}")
        target = self.root
        for part in filter(None, ref[1:].split("/")):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise ConfigError(f"json_schema: the $ref {ref!r} at {where} points at nothing")
            target = target[part]
        return self.node(target, ref, (*refs, ref))


def validate_output(text: str, schema: dict | None, finish_reason: str | None = None,
                    max_new_tokens: int | None = None):
    """The parsed value of ``text``, checked against ``schema``; raises one ``OutputError`` line."""
    cut = (f" (generation stopped at max_new_tokens={max_new_tokens} before the value was complete; "
           "raise max_new_tokens)") if finish_reason == "length" else ""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise OutputError(f"the output is not valid JSON: {exc}{cut}") from None
    if schema is not None:
        from jsonschema import Draft202012Validator

        error = next(iter(Draft202012Validator(schema).iter_errors(copy.deepcopy(value))), None)
        if error is not None:
            where = _pointer(error.absolute_path)
            raise OutputError(f"the output does not match the schema: {error.message}"
                              f"{f' (at {where})' if where else ''}{cut}")
    return value


def _pointer(path) -> str:
    return "/".join(["#", *map(str, path)]) if len(path) else ""
