"""Answers a remote server was constrained to give: a JSON schema, a required tool call.

Structured output and tool calls are passed through to the server in its own API's shape (see each
backend), and what comes back is checked here, since a server may accept the request and ignore
it. With ``json_schema`` set, or a ``tool_choice`` of ``"required"`` or a tool's name, the stream is
*buffered*: the whole answer is collected, checked (``schema.validate_output``; a call of the right
tool), and only then yielded, chunk by chunk as it came, so a consumer never sees text that is then
taken back. An answer that breaks the constraint is asked for again, up to ``output_retries`` times
(a load option, default 2); after that the stream raises one ``OutputError`` line saying the server
appears to ignore the schema (or tool choice) and quoting what came back. An answer cut off at
``max_new_tokens`` is not asked for again (it would be cut again): it is yielded, and
``Response.json()`` says to raise ``max_new_tokens``. Time to first token is then the time to the
whole answer, and the usage is the accepted answer's. Without such a constraint nothing is buffered.

What it gives up: a constrained answer cannot be streamed as it comes (it could be taken back), and
a server that ignores the constraint costs ``output_retries`` + 1 whole answers before the error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ..config import GenerationConfig
from ..errors import OutputError
from .events import Chunk

if TYPE_CHECKING:
    import threading


def one_line(text: str, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


def checked_stream(produce: Callable[[], Iterator[Chunk]], config: GenerationConfig, retries: int,
                   who: str, cancel: threading.Event | None = None) -> Iterator[Chunk]:
    """``produce()``'s chunks; when the config constrains the answer, buffered, checked and asked
    for again up to ``retries`` times (``who`` names the server in the error)."""
    if config.json_schema is None and forced_tool(config) is None:
        yield from produce()
        return
    problems = []
    for _ in range(retries + 1):
        chunks = []
        for chunk in produce():
            chunks.append(chunk)
            if cancel is not None and cancel.is_set():  # Response marks it interrupted
                yield from chunks
                return
        problem = broken(chunks, config)
        if problem is None:
            yield from chunks
            return
        problems.append(problem)
    what, why = problems[-1]
    raise OutputError(f"{who} appears to ignore the {what}: {len(problems)} answer(s) in a row did not "
                      f"follow it; the last: {why}")


def forced_tool(config: GenerationConfig) -> str | None:
    """``"*"`` when the config requires some tool call, the tool's name when it requires that one."""
    if not config.tools or config.tool_choice in ("auto", "none"):
        return None
    return "*" if config.tool_choice == "required" else config.tool_choice


def broken(chunks: list[Chunk], config: GenerationConfig) -> tuple[str, str] | None:
    """What an answer breaks of what the config asked for (a tool call, a JSON schema), and how;
    None when it follows it."""
    from ..schema import validate_output

    names = [d.name for c in chunks for d in c.tool_calls if d.name]
    forced = forced_tool(config)
    choice = f"tool_choice {config.tool_choice!r}"
    if names:
        wrong = [n for n in names if forced not in (None, "*", n)]
        return (choice, f"it called {wrong[0]!r}, not {forced!r}") if wrong else None
    text = "".join(c.text for c in chunks)
    if forced is not None:
        return choice, f"it answered in text, not with a tool call: {one_line(text, 80)!r}"
    finish = next((c.finish_reason for c in reversed(chunks) if c.finish_reason), None)
    if config.json_schema is None or finish == "length":  # cut off: asking again cuts it again
        return None
    try:
        validate_output(text, config.json_schema)
    except OutputError as exc:
        return "JSON schema", f"{exc}: {one_line(text, 80)!r}"
    return None
