"""``Chat``: a conversation with a model that keeps its history.

When the conversation outgrows the context window it either fails or drops the oldest turns after
the system message, as the caller chooses, and says so (``dropped``). It sits above models (it calls
``Model.prompt``), where ``chat.py`` holds only the leaf types it is made of.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from .chat import Message, Overflow, check_prompt

if TYPE_CHECKING:
    from .config import GenerationConfig
    from .models.base import Model, Response


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
