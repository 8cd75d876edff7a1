"""The agent loop: the model proposes a call, llmlab checks and runs it, the result goes back, until
the model answers or the step limit is reached.

``agent(model, tools=[...]).run("What is 17 * 23?")`` returns an ``AgentRun``: the ``answer`` (None
when the loop stopped without one), why it stopped, every step (each model reply, each tool call with
its arguments, result or error and time, each call's row id in the call log) and the whole
``messages`` transcript in the OpenAI chat format. Each model reply is a logged call like any other,
its tool calls in the log's ``tool_calls`` column and the tools' results in the next call's messages.

The model gets tool calls natively where its backend has them (``openai/``, ``ollama/``) and through
the constrained JSON format otherwise (``calling.py``). What a small model gets wrong is recorded and
shown to it, never raised: a tool name it invents, arguments that fail the schema, a tool that raises,
hangs past its timeout or returns something that is not JSON. ``dry_run`` shows the calls of tools
with side effects without running them. Nothing here can loop for ever: ``max_steps`` bounds the
model replies, each tool has a timeout.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..chat import Message, ToolCall, as_messages, check_prompt
from ..config import GenerationConfig
from ..errors import ConfigError, LlmlabError
from .spec import tool_specs
from .tool import Tool

if TYPE_CHECKING:
    from ..models.base import Model

DEFAULT_MAX_STEPS = 6
SHOTS = 2  # example exchanges shown: the nearest ones (more confuse a small model: it mixes them up)


@dataclass
class Step:
    """One event of a run: the model's reply (``kind="reply"``) or one tool call (``kind="call"``)."""
    kind: str
    text: str = ""
    tool: str | None = None
    arguments: str | None = None
    result: str | None = None
    error: str | None = None
    ran: bool = False
    seconds: float = 0.0
    call_id: int | None = None  # the model reply's row in the call log

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "")}


@dataclass
class AgentRun:
    answer: str | None
    # "answer", "step_limit", "cut_off" (a reply hit max_new_tokens), "interrupted", "error" (a reply
    # could not be made: the prompt outgrew the context window, a server failed; the step says why)
    stopped: str
    steps: list[Step] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)

    @property
    def calls(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "call"]

    def to_dict(self) -> dict:
        return {"answer": self.answer, "stopped": self.stopped, "steps": [s.to_dict() for s in self.steps],
                "messages": [m.to_dict() for m in self.messages]}


class Agent:
    """A model, its tools and the loop's limits; ``run()`` answers one request."""

    def __init__(self, model: Model, tools=(), *, system: str | None = None,
                 max_steps: int = DEFAULT_MAX_STEPS, dry_run: bool = False, examples: bool = True,
                 constrained: bool = True,
                 config: GenerationConfig | None = None, on_step: Callable[[Step], None] | None = None):
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ConfigError(f"max_steps must be a whole number >= 1, got {max_steps!r}")
        self.model = model
        self.tools: dict[str, Tool] = {}
        for t in tools if isinstance(tools, (list, tuple)) else [tools]:
            t = t if isinstance(t, Tool) else Tool.from_function(t)
            if t.name in self.tools:
                raise ConfigError(f"two tools are named {t.name!r}; give one another name "
                                  "(Tool.from_function(fn, name=...))")
            self.tools[t.name] = t
        self.specs = tool_specs(list(self.tools.values()))
        self.system = system
        self.max_steps = max_steps
        self.dry_run = dry_run
        config = config or GenerationConfig(temperature=0, max_new_tokens=128)
        self.config = config.replace(tools=self.specs)
        self.on_step = on_step
        self.constrained = constrained  # False: the call format without its grammar (a baseline)
        self.shots = example_turns(list(self.tools.values())) if examples else []

    def run(self, request: str | list, *, tool_choice: str | None = None) -> AgentRun:
        """Answer ``request`` (a question, or a conversation so far), calling tools as the model asks."""
        messages = [Message("user", request)] if isinstance(request, str) else as_messages(request)
        check_prompt(messages)  # before the worked examples, whose user turns would hide an empty one
        if self.system and not (messages and messages[0].role == "system"):
            messages.insert(0, Message("system", self.system))
        out = AgentRun(answer=None, stopped="step_limit", messages=messages)
        config = self.config.replace(tool_choice=tool_choice) if tool_choice else self.config
        asked = next((m.content for m in reversed(messages) if m.role == "user"), "")
        shots = [m for block in nearest_last(self.shots, asked)[-SHOTS:] for m in block]
        for _ in range(self.max_steps):
            head = messages[:1] if messages[0].role == "system" else []
            try:
                reply = self._reply(head + shots + messages[len(head):], config)
            except LlmlabError as exc:  # the conversation outgrew the window, a server went away...
                self._step(out, Step("reply", error=str(exc)))
                out.stopped = "error"
                return out
            calls = reply.calls
            self._step(out, Step("reply", text=reply.raw if reply.raw is not None else reply.text,
                                 call_id=reply.log_id))
            if reply.interrupted:
                out.stopped = "interrupted"
                return out
            if not calls:
                if reply.finish_reason == "length":
                    out.stopped = "cut_off"
                    return out
                out.answer, out.stopped = reply.text, "answer"
                messages.append(Message("assistant", reply.text))
                return out
            messages.append(Message("assistant", "", tuple(calls)))
            for call in calls:
                step = self._call(call)
                self._step(out, step)
                messages.append(Message("tool", step.result if step.error is None else f"error: {step.error}",
                                        tool_call_id=call.id))
            # after a call the model may answer or call again; tool_choice="required" or a name
            # would force another call for ever, so later replies choose freely
            config = config.replace(tool_choice="auto")
        return out

    def _reply(self, messages: list[Message], config: GenerationConfig):
        if self.constrained or self.model.can("tools"):
            return self.model.prompt(messages, config).complete()
        from .calling import prompt_with_tools

        return prompt_with_tools(self.model, messages, config, constrained=False).complete()

    def _call(self, call: ToolCall) -> Step:
        step = Step("call", tool=call.name, arguments=call.arguments)
        tool = self.tools.get(call.name)
        if tool is None:
            step.error = f"there is no tool named {call.name!r}; the tools are: {', '.join(self.tools)}"
            return step
        result = tool.run(call.arguments, dry_run=self.dry_run)
        step.result, step.error = result.content, result.error
        step.ran, step.seconds = result.ran, result.seconds
        return step

    def _step(self, out: AgentRun, step: Step) -> None:
        out.steps.append(step)
        if self.on_step is not None:
            self.on_step(step)


DIRECT = [("Hello! Who are you?", "Hello! I am an assistant. How can I help you?"),
          ("What is the capital of Italy?", "The capital of Italy is Rome."),
          ("Write a short poem about the sea.", "Waves roll in, waves roll out; the sea keeps time.")]


def example_turns(tools: list[Tool]) -> list[Message]:
    """The tools' worked examples as conversation turns (request, call, result, answer), and one
    request that needs no tool, answered directly."""
    turns: list[Message] = []
    if any(tool.examples for tool in tools):  # requests no tool fits, answered directly
        for request, answer in DIRECT:
            turns += [Message("user", request), Message("assistant", answer)]
    for tool in tools:
        for i, ex in enumerate(tool.examples):
            call = ToolCall(f"example_{tool.name}_{i}", tool.name, json.dumps(ex.get("arguments", {})))
            result = ex.get("result", "")
            turns += [Message("user", ex["request"]), Message("assistant", "", (call,)),
                      Message("tool", result if isinstance(result, str) else json.dumps(result),
                              tool_call_id=call.id),
                      Message("assistant", ex["answer"])]
    return turns


def nearest_last(turns: list[Message], request: str) -> list[list[Message]]:
    """The example exchanges (each from a user turn to the next), the one most like ``request`` last:
    a small model copies the exchange it saw last, so that should be the one that fits."""
    import difflib
    import re

    def words(text: str) -> list[str]:  # digits one by one: "17 * 23" is like "12 * 7", not like a date
        return re.findall(r"[^\W\d]+|\d|[^\w\s]", text.lower())

    blocks: list[list[Message]] = []
    for m in turns:
        if m.role == "user" and (not blocks or blocks[-1][-1].role == "assistant"
                                 and not blocks[-1][-1].tool_calls):
            blocks.append([])
        blocks[-1].append(m)
    asked = words(request)
    return sorted(blocks, key=lambda b: difflib.SequenceMatcher(None, words(b[0].content), asked).ratio())


def agent(model: Model, tools=(), **options) -> Agent:
    """An agent over ``model`` with ``tools`` (functions or ``Tool``s); see ``Agent`` for options."""
    return Agent(model, tools, **options)


def describe(step: Step) -> str:
    """One line for a step, as the CLI prints it."""
    if step.kind == "reply":
        return f"model: {step.text.strip()}" if step.error is None else f"model: error: {step.error}"
    args = step.arguments or "{}"
    try:
        args = json.dumps(json.loads(args), ensure_ascii=False)
    except ValueError:
        pass
    head = f"call {step.tool}({args})"
    if step.error:
        return f"{head} -> error: {step.error}"
    if not step.ran:
        return f"{head} -> not run (dry run: it has side effects)"
    return f"{head} -> {step.result} ({step.seconds * 1000:.0f} ms)"

