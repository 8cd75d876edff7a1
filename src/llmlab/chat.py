"""Messages and chat templates: leaf types that every layer uses and that import nothing of llmlab's.

A plain string prompt is completed as raw text; a list of messages is rendered with the model's own
chat template (the Jinja template stored in the GGUF file or the tokenizer config), the same way on
every backend. A message is a system, user, assistant or tool turn; an assistant turn may carry tool
calls and a tool turn answers one by its id, in the shapes of the OpenAI chat format. The
conversation that keeps history, ``Chat``, sits above models, in ``conversation.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from .errors import PromptError

ROLES = ("system", "user", "assistant", "tool")
Overflow = Literal["error", "drop_oldest"]


@dataclass(frozen=True)
class ToolCall:
    """A call an assistant turn asks for: ``name`` with JSON ``arguments`` (text, as the model wrote it)."""
    id: str
    name: str
    arguments: str = "{}"

    def to_dict(self) -> dict:  # the OpenAI chat format, which chat templates expect
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}

    def parsed_arguments(self) -> dict | None:
        """The arguments as a JSON object, or None where they are not one (a model's call that did
        not parse); the caller says what that means where it is (Ollama's API takes only objects)."""
        import json

        try:
            value = json.loads(self.arguments or "{}")
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    @classmethod
    def from_dict(cls, d: dict) -> ToolCall:
        fn = d.get("function") if isinstance(d.get("function"), dict) else d
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise PromptError(f"a tool call needs a function name, got {d!r}")
        args = fn.get("arguments", "{}")
        if not isinstance(args, str):
            import json

            args = json.dumps(args)
        return cls(str(d.get("id") or ""), fn["name"], args)


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant turn's calls
    tool_call_id: str | None = None        # a tool turn: the call it answers

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise PromptError(f"unknown role {self.role!r}; use one of {', '.join(ROLES)}")
        if not isinstance(self.content, str):
            raise PromptError(f"message content must be text, got {type(self.content).__name__}")
        check_text(self.content)
        if not isinstance(self.tool_calls, tuple):
            object.__setattr__(self, "tool_calls", tuple(self.tool_calls))
        if self.tool_calls and self.role != "assistant":
            raise PromptError(f"only an assistant message has tool calls, not a {self.role} message")
        if self.tool_call_id is not None and self.role != "tool":
            raise PromptError(f"only a tool message answers a tool call id, not a {self.role} message")

    def to_dict(self) -> dict:
        """As the OpenAI chat format writes it; the tool fields only where set, so a plain message
        reads ``{"role", "content"}`` as it always has (stored logs and fingerprints keep)."""
        d = {"role": self.role, "content": self.content}
        if self.tool_calls:
            d["tool_calls"] = [c.to_dict() for c in self.tool_calls]
        if self.tool_call_id is not None:
            d["tool_call_id"] = self.tool_call_id
        return d


def as_messages(items: Iterable[Message | dict | tuple]) -> list[Message]:
    """Accept Message objects, ``{"role", "content"}`` dicts or ``(role, content)`` tuples."""
    out = []
    for item in items:
        if isinstance(item, Message):
            out.append(item)
        elif isinstance(item, dict):
            try:
                calls = tuple(ToolCall.from_dict(c) for c in item.get("tool_calls") or ())
                out.append(Message(item["role"], item["content"] if item["content"] is not None else "",
                                   calls, item.get("tool_call_id")))
            except KeyError as exc:
                raise PromptError(f"a message needs 'role' and 'content', got {item!r}") from exc
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            out.append(Message(*item))
        else:
            raise PromptError(f"cannot read {item!r} as a message")
    return out


def check_text(text: str, what: str = "the text") -> None:
    """Refuse a string no tokenizer can read: one holding a lone surrogate (JSON's ``"\\ud800"``,
    bytes a terminal could not decode)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PromptError(f"{what} is not valid Unicode: a lone surrogate {text[exc.start]!r} at "
                          f"character {exc.start}") from None


def check_prompt(prompt: str | list[Message]) -> None:
    if isinstance(prompt, str):
        check_text(prompt, "the prompt")
        if not prompt.strip():
            raise PromptError("the prompt is empty")
        return
    if not prompt:
        raise PromptError("the chat has no messages")
    if not any(m.role == "user" and m.content.strip() for m in prompt):
        raise PromptError("the chat has no non-empty user message")


@lru_cache(maxsize=8)
def _compile(template: str):
    # Chat templates are code shipped inside model files: render them sandboxed, as transformers does.
    # Their own environment, not specfile.templates: they follow the model's rules (trim and lstrip
    # blocks, raise_exception, undefined variables allowed), not those of llmlab's user templates.
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)


def render_template(template: str | None, messages: list[Message], *, bos: str = "",
                    eos: str = "", add_generation_prompt: bool = True) -> str:
    """Render messages with a model's Jinja chat template, ending with the assistant's cue."""
    if not template:
        raise PromptError("this model has no chat template; pass a plain string prompt instead")
    from jinja2.exceptions import TemplateError

    try:
        return _compile(template).render(
            messages=[m.to_dict() for m in messages], bos_token=bos, eos_token=eos,
            add_generation_prompt=add_generation_prompt,
        )
    except TemplateError as exc:
        raise PromptError(f"the model's chat template refused these messages: {exc}") from exc


MARK_OPEN, MARK_CLOSE = "\ue000", "\ue001"  # private-use characters: never in a sentinel-free text


def template_segments(template: str | None, messages: list[Message], *, bos: str = "", eos: str = "",
                      add_generation_prompt: bool = True) -> list[tuple[str, bool]] | None:
    """The rendered prompt cut into (text, is_message_text) pieces: the template's markup, and each
    message's own text, which a tokenizer must read as plain text (so a message that spells
    ``<|im_end|>`` cannot close its turn).

    The template is rendered twice: with the real texts, and with a sentinel in place of each text.
    The sentinel rendering shows where the markup ends and a message's text begins; walking the
    real rendering along it checks that each text went in as it is or stripped (as templates that
    ``| trim`` do), and then the pieces are exactly the real rendering. A template that rewrites
    texts in another way gets its markup with the texts as given. None only when the template
    mangles the sentinels themselves (slices or changes a text), so nothing can be told apart.

    >>> template_segments("{% for m in messages %}<s>{{ m['content'] | trim }}</s>{% endfor %}",
    ...                   [Message("user", " hi ")])
    [('<s>', False), ('hi', True), ('</s>', False)]
    """
    real = render_template(template, messages, bos=bos, eos=eos, add_generation_prompt=add_generation_prompt)
    texts = [m.content for m in messages]
    # sentinels are private-use characters plus a number; message texts never reach the sentinel
    # rendering, so a text that itself holds these characters cannot confuse the split
    marked = [Message(m.role, f"{MARK_OPEN}{i}{MARK_CLOSE}") for i, m in enumerate(messages)]
    shape = render_template(template, marked, bos=bos, eos=eos, add_generation_prompt=add_generation_prompt)
    layout: list[str | int] = []  # markup strings and message indices, in order
    for k, part in enumerate(shape.split(MARK_OPEN)):
        if k:
            index, sep, part = part.partition(MARK_CLOSE)
            if not sep or not index.isdigit() or int(index) >= len(texts):
                return None
            layout.append(int(index))
        layout.append(part)
    pieces = _walk(real, layout, texts)
    if pieces is None:  # the template rewrote a text: its markup, the texts as given
        pieces = [(texts[x], True) if isinstance(x, int) else (x, False) for x in layout]
    return [(t, c) for t, c in pieces if t]


def _walk(real: str, layout: list[str | int], texts: list[str]) -> list[tuple[str, bool]] | None:
    pieces, pos = [], 0
    for x in layout:
        if isinstance(x, int):
            for candidate in (texts[x], texts[x].strip()):
                if real.startswith(candidate, pos):
                    break
            else:
                return None
            pieces.append((candidate, True))
            pos += len(candidate)
        elif real.startswith(x, pos):
            pieces.append((x, False))
            pos += len(x)
        else:
            return None
    return pieces if pos == len(real) else None


def drop_oldest_turns(messages: list[Message], fits) -> tuple[list[Message], int]:
    """Drop the oldest messages after the system message until ``fits(messages)``.

    Returns the kept messages and how many were dropped. The last user message is never dropped:
    if it alone does not fit, the caller gets the overflow error.
    """
    head = [m for m in messages[:1] if m.role == "system"]
    body = messages[len(head):]
    dropped = 0
    while not fits(head + body) and len(body) > 1:
        # drop a whole exchange (user + assistant) at a time so roles keep alternating
        n = 2 if len(body) > 2 and body[0].role == "user" and body[1].role == "assistant" else 1
        body = body[n:]
        dropped += n
    return head + body, dropped
