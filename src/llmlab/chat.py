"""Messages, chat templates and the conversation that keeps history.

A plain string prompt is completed as raw text; a list of messages is rendered with the model's own
chat template (the Jinja template stored in the GGUF file or the tokenizer config), the same way on
every backend. ``Chat`` keeps the history and, when the conversation outgrows the context window,
either fails or drops the oldest turns after the system message, as the caller chooses, and says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from .errors import PromptError

if TYPE_CHECKING:
    from .config import GenerationConfig
    from .models.base import Model, Response

ROLES = ("system", "user", "assistant")
Overflow = Literal["error", "drop_oldest"]


@dataclass(frozen=True)
class Message:
    role: str
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise PromptError(f"unknown role {self.role!r}; use one of {', '.join(ROLES)}")
        if not isinstance(self.content, str):
            raise PromptError(f"message content must be text, got {type(self.content).__name__}")
        check_text(self.content)

    def to_dict(self) -> dict:
        return asdict(self)


def as_messages(items: Iterable[Message | dict | tuple]) -> list[Message]:
    """Accept Message objects, ``{"role", "content"}`` dicts or ``(role, content)`` tuples."""
    out = []
    for item in items:
        if isinstance(item, Message):
            out.append(item)
        elif isinstance(item, dict):
            try:
                out.append(Message(item["role"], item["content"]))
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


class Chat:
    """A conversation with history.

    >>> chat = Chat(model, system="You are a helpful assistant.")   # doctest: +SKIP
    >>> chat.send("Where is Groningen located?").text                  # doctest: +SKIP
    >>> chat.send("And how many people live there?").text              # doctest: +SKIP
    """

    def __init__(self, model: Model, system: str | None = None, config: GenerationConfig | None = None,
                 overflow: Overflow = "drop_oldest"):
        self.model = model
        self.config = config
        self.overflow = overflow
        self.messages: list[Message] = []
        self.dropped = 0  # messages dropped from history so far to fit the context window
        if system:
            self.messages.append(Message("system", system))

    @property
    def system(self) -> str | None:
        return self.messages[0].content if self.messages and self.messages[0].role == "system" else None

    def set_system(self, text: str | None) -> None:
        body = self.messages[1:] if self.system is not None else self.messages
        self.messages = ([Message("system", text)] if text else []) + body

    def reset(self) -> None:
        """Forget the history, keep the system message."""
        self.messages = self.messages[:1] if self.system is not None else []

    def stream(self, text: str, config: GenerationConfig | None = None, **overrides) -> Response:
        """Send a user message; iterate the result for text as it arrives."""
        check_prompt(text)
        pending = self.messages + [Message("user", text)]
        response = self.model.prompt(pending, config or self.config, overflow=self.overflow, **overrides)
        response.on_done(lambda r: self._record(pending, r))
        return response

    def send(self, text: str, config: GenerationConfig | None = None, **overrides) -> Response:
        return self.stream(text, config, **overrides).complete()

    def _record(self, pending: list[Message], response: Response) -> None:
        kept = response.messages if response.messages is not None else pending
        self.dropped += response.dropped_messages
        self.messages = list(kept) + [Message("assistant", response.text)]

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages)
