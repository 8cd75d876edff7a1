"""Tool calls from a model that has no native tool format: one JSON reply, decoded under a grammar.

A small local model (SmolLM2-135M, Gemma 3 270M base) was never taught a tool-call syntax, and a
call it writes freely rarely parses. So llmlab asks for one JSON value and constrains decoding to it:

    {"tool": "calculator", "arguments": {"expression": "17 * 23"}}     a call
    {"answer": "391"}                                                    an answer

The schema is an ``anyOf`` of one object per tool (``tool`` fixed to its name, ``arguments`` its
parameters' schema) plus the answer object; ``tool_choice`` narrows it ("required" drops the answer,
a name keeps only that tool). The grammar makes every reply parse and every call name a real tool
with arguments of the right shape, so what is left to measure is whether the model picks the right
call, not whether it can spell one. A ``json_schema`` on the same request shapes the answer:
``{"answer": <that schema>}``.

The tools are described in the system turn (or, for a model that does not chat, at the top of a plain
``User:``/``Assistant:`` transcript); earlier calls are shown as the JSON the model wrote, and results
as a user turn ``Result of NAME: ...``, which every chat template accepts (Gemma's only takes
alternating user and model turns). The stream that comes back is the model's own, re-read: a call
becomes a ``ToolCallDelta`` with finish reason ``tool_calls``, an answer's text is streamed as it is
decoded. What the model literally wrote is kept as ``Response.raw``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..chat import Message
from ..errors import ConfigError
from ..models.events import Chunk, ToolCallDelta
from ..models.response import Response

if TYPE_CHECKING:
    import threading

    from ..config import GenerationConfig
    from ..models.base import Model

_ANSWER_START = re.compile(r'^\s*\{\s*"answer"\s*:\s*"')


def call_schema(specs: tuple[dict, ...], tool_choice: str = "auto", answer: dict | None = None) -> dict:
    """The JSON schema of one reply: a call of one of the tools, or (unless a call is required) an
    answer. A tool whose parameters the grammar cannot enforce is refused in one line."""
    from ..schema import check_schema, grammar_schema

    options = []
    for spec in specs:
        fn = spec["function"]
        if tool_choice not in ("auto", "required") and fn["name"] != tool_choice:
            continue
        try:
            check_schema(fn["parameters"])
            # refs inlined here: nested under anyOf/i/properties/arguments, "#/$defs/X" would miss
            params = grammar_schema(fn["parameters"])
        except ConfigError as exc:
            raise ConfigError(f"tool {fn['name']!r} cannot be called under a grammar: {exc}") from None
        options.append({"type": "object", "properties": {"tool": {"const": fn["name"]}, "arguments": params},
                        "required": ["tool", "arguments"]})
    if tool_choice == "auto":
        options.append({"type": "object", "properties": {"answer": answer or {"type": "string"}},
                        "required": ["answer"]})
    return options[0] if len(options) == 1 else {"anyOf": options}


def tools_prompt(specs: tuple[dict, ...], tool_choice: str = "auto") -> str:
    """The tools, described for the model in a few lines: name, what it does, its arguments."""
    lines = ["You can use these tools:"]
    for spec in specs:
        fn = spec["function"]
        props = fn["parameters"].get("properties", {})
        args = ", ".join(_describe(k, v) for k, v in props.items()) if isinstance(props, dict) else ""
        lines.append(f"- {fn['name']}({args}): {fn['description']}".rstrip(": "))
    lines.append('To call a tool, reply {"tool": NAME, "arguments": {...}}.')
    if tool_choice == "auto":
        lines.append('To answer the user, reply {"answer": TEXT}.')
    return "\n".join(lines)


def _describe(name: str, prop) -> str:
    if not isinstance(prop, dict):  # a boolean subschema says nothing to show
        return name
    described = prop.get("description")
    return f"{name}: {prop.get('type', 'value')}" + (f" ({described})" if isinstance(described, str) else "")


def plain_messages(messages: list[Message], specs: tuple[dict, ...],
                   tool_choice: str = "auto") -> list[Message]:
    """A conversation with tool calls and results, as plain system/user/assistant turns in the
    call format (see the module docstring)."""
    names: dict[str, str] = {}
    out: list[Message] = []
    head = tools_prompt(specs, tool_choice) if specs else ""
    rest = messages
    if messages and messages[0].role == "system":
        head = f"{messages[0].content}\n\n{head}".strip() if head else messages[0].content
        rest = messages[1:]
    if head:
        out.append(Message("system", head))
    results: list[str] = []
    for m in rest:
        if m.role == "tool":
            name = names.get(m.tool_call_id or "", "the tool")
            results.append(f"Result of {name}: {m.content}")
            continue
        if results:
            out.append(Message("user", "\n".join(results)))
            results = []
        if m.role == "assistant" and m.tool_calls:
            shown = []
            for call in m.tool_calls:
                names[call.id] = call.name
                try:
                    args = json.loads(call.arguments or "{}")
                except ValueError:
                    args = call.arguments
                shown.append(json.dumps({"tool": call.name, "arguments": args}, ensure_ascii=False))
            out.append(Message("assistant", "\n".join(shown)))
        elif m.role == "assistant" and specs:
            out.append(Message("assistant", json.dumps({"answer": m.content}, ensure_ascii=False)))
        else:
            out.append(Message(m.role, m.content))
    if results:
        out.append(Message("user", "\n".join(results)))
    return out


def transcript(messages: list[Message]) -> str:
    """Messages as plain text for a model that does not chat (a base model): the system text, then
    ``User:`` and ``Assistant:`` lines, ending with the assistant's cue."""
    parts = []
    for m in messages:
        if m.role == "system":
            parts.append(m.content + "\n")
        else:
            parts.append(f"{'User' if m.role == 'user' else 'Assistant'}: {m.content}")
    return "\n".join(parts) + "\nAssistant:"


def shown_prompt(model: Model, prompt: str | list[Message], config: GenerationConfig) -> str | list[Message]:
    """The prompt as the model reads it with tools: the conversation in the call format, the tools
    described in the system turn; a transcript for a model that does not chat."""
    messages = [Message("user", prompt)] if isinstance(prompt, str) else list(prompt)
    use = config.tools if config.tool_choice != "none" else ()
    plain = plain_messages(messages, use, config.tool_choice)
    return plain if model.chats else transcript(plain)


def prompt_with_tools(model: Model, prompt: str | list[Message], config: GenerationConfig,
                      overflow: str = "error", cancel: threading.Event | None = None, *,
                      constrained: bool = True) -> Response:
    """``Model.prompt`` for a request with tools on a model without native tool calls.

    ``constrained=False`` asks for the same format without the grammar (the reply is searched for a
    JSON object, and is the answer when none parses): the baseline that shows what the grammar buys."""
    use = config.tools if config.tool_choice != "none" else ()
    shown = shown_prompt(model, prompt, config)
    if not use:  # tools off for this reply: plain text, as any other prompt
        inner = config.replace(tools=(), tool_choice="auto")
        fitted, n_prompt, dropped = model.fit(shown, inner, overflow)
        return Response(model, fitted, config, n_prompt, dropped, cancel=cancel,
                        stream=lambda p, c, cancel=None: model.stream(p, inner, cancel=cancel))
    schema = call_schema(use, config.tool_choice, config.json_schema)  # checked even when not used
    inner = config.replace(tools=(), tool_choice="auto", json_schema=schema if constrained else None)
    if not constrained:  # without the grammar a base model writes on past its reply: stop at the next turn
        inner = dataclasses.replace(inner, json_schema=None,
                                    stop=inner.stop + (() if model.chats else ("\nUser:",)))
    fitted, n_prompt, dropped = model.fit(shown, inner, overflow)
    response = Response(model, fitted, config, n_prompt, dropped, cancel=cancel)
    response._stream = lambda p, c, cancel=None: _reread(model.stream(p, inner, cancel=cancel), response,
                                                         config.json_schema is not None, constrained)
    return response


def _reread(chunks: Iterator[Chunk], response: Response, structured: bool,
            constrained: bool = True) -> Iterator[Chunk]:
    """The model's JSON reply as a call (tool-call deltas) or an answer (its text, streamed)."""
    raw, shown = "", ""
    last = Chunk()
    try:
        for chunk in chunks:
            raw += chunk.text
            response.raw = raw
            if chunk.usage or chunk.finish_reason:
                last = chunk
            piece = ""
            if not structured and constrained:
                text = _answer_so_far(raw)
                if text is not None and len(text) > len(shown):
                    piece, shown = text[len(shown):], text
            if piece or chunk.logprobs:
                yield Chunk(text=piece, logprobs=chunk.logprobs)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    value = _first_object(raw) if not constrained else _loads(raw)
    if not isinstance(value, dict) or not constrained and not _well_formed(value):
        # cut off before the JSON closed (max_new_tokens, a stop string), or, unconstrained, a reply
        # that is no call: its text is the answer
        if not shown:
            yield Chunk(text=raw)
        yield Chunk(finish_reason=last.finish_reason or "length", usage=last.usage)
        return
    finish = last.finish_reason if constrained else "stop"  # a parsed reply is whole, whatever followed
    if "tool" in value:
        call = ToolCallDelta(0, id=f"call_{uuid.uuid4().hex[:12]}", name=value["tool"],
                             arguments=json.dumps(value.get("arguments", {}), ensure_ascii=False))
        yield Chunk(tool_calls=[call], finish_reason="tool_calls", usage=last.usage)
        return
    answer = value.get("answer", "")
    text = answer if isinstance(answer, str) and not structured else json.dumps(answer, ensure_ascii=False)
    if len(text) > len(shown) and text.startswith(shown):
        yield Chunk(text=text[len(shown):])
    yield Chunk(finish_reason=finish or "stop", usage=last.usage)


def _loads(raw: str):
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _first_object(raw: str):
    """The first JSON object in free text (an unconstrained reply), or None."""
    decoder = json.JSONDecoder()
    for at in (i for i, c in enumerate(raw) if c == "{"):
        try:
            return decoder.raw_decode(raw, at)[0]
        except ValueError:
            continue
    return None


def _well_formed(value: dict) -> bool:
    """An unconstrained reply that is a call of the format's shape, or an answer."""
    if "tool" in value:
        return isinstance(value["tool"], str) and isinstance(value.get("arguments", {}), dict)
    return "answer" in value


def _answer_so_far(raw: str) -> str | None:
    """The decoded text of ``{"answer": "...`` as far as it is complete, or None before it starts."""
    m = _ANSWER_START.match(raw)
    if not m:
        return None
    body, i, end = raw[m.end():], 0, None
    while i < len(body):
        c = body[i]
        if c == "\\":
            need = 6 if body[i + 1:i + 2] == "u" else 2
            if i + need > len(body):
                break
            i += need
            continue
        if c == '"':
            end = i
            break
        i += 1
    try:
        return json.loads('"' + body[:end if end is not None else i] + '"')
    except ValueError:  # half a surrogate pair: wait for the rest
        return None
