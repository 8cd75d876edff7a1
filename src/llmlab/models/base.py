"""The one interface every backend implements, and what is written once on top of it.

A backend implements ``stream()`` (text pieces as they are generated), ``encode()`` (text to token
ids, as the model will see it) and ``tokenize()``; backends that return log-probabilities also
implement ``score()``. Everything else lives here: checking the prompt against the context window,
timing (load, time to first token, prefill and decode tokens/s), the lazy ``Response`` that can be
streamed or read whole, and logging each call to the store, including calls cut off part-way.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

from ..chat import (
    Message,
    Overflow,
    as_messages,
    check_prompt,
    drop_oldest_turns,
    render_template,
    template_segments,
)
from ..config import GenerationConfig
from ..errors import ConfigError, ContextOverflowError, PromptError


@dataclass(frozen=True)
class Token:
    id: int
    text: str


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Timings:
    load_s: float | None = None       # loading the model, once per process
    ttft_s: float | None = None       # call start to first generated text
    prefill_tps: float | None = None  # prompt tokens / time to first token
    decode_tps: float | None = None   # generated tokens after the first / time after the first
    total_s: float | None = None


@dataclass
class Chunk:
    """A piece of generated text. The last chunk of a stream may carry the finish reason and usage."""
    text: str
    finish_reason: str | None = None
    usage: Usage | None = None


@dataclass
class ModelInfo:
    name: str
    backend: str
    path: str | None = None
    architecture: str | None = None
    parameters: int | None = None
    context_length: int | None = None          # the window in use
    trained_context_length: int | None = None  # what the model was trained for
    quantization: str | None = None
    license: str | None = None
    instruct: bool | None = None               # True instruct/chat-tuned, False base, None unknown
    file_size: int | None = None
    chat_template: str | None = None
    bos_token: str = ""
    eos_token: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class Model(ABC):
    backend: str = "?"
    can_score: bool = False
    server_templates: bool = False  # a remote server applies the chat template itself

    def __init__(self, info: ModelInfo):
        self.info = info
        self.load_seconds: float | None = None
        self.logger: Callable[[Response], None] | None = None  # set by load_model to log calls
        # how this copy was loaded (context window, threads, weight layout), read back from the
        # library where it can say; logged with every call, since it shapes speed
        self.runtime: dict = {}

    # --- what a backend implements -------------------------------------------------------------

    @abstractmethod
    def stream(self, prompt: str | list[Message], config: GenerationConfig) -> Iterator[Chunk]:
        """Generate, yielding text as it comes; a list of messages goes through the chat template."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of raw text as the model will see it: BOS where the model adds one, and text that
        spells a control token (``<|im_end|>``) read as that token, as llama.cpp's server reads a
        completion prompt. Messages go through :meth:`prompt_ids` instead."""

    def token_text(self, token_id: int) -> str:
        """The text of one token id, control tokens included."""
        raise NotImplementedError(f"the {self.backend} backend does not detokenize")

    def token_ids(self, text: str, special: bool) -> list[int]:
        """Ids of a piece of a prompt, nothing added; ``special`` reads control-token text as tokens."""
        raise NotImplementedError(f"the {self.backend} backend does not tokenize prompt pieces")

    @abstractmethod
    def tokenize(self, text: str) -> list[Token]:
        """Token ids and their text for a piece of text, without special tokens added."""

    def score(self, context: str | list[Message], continuations: list[str]) -> list[float]:
        """Log-probability of each continuation after the context (sum over its tokens)."""
        raise NotImplementedError(f"the {self.backend} backend does not return log-probabilities")

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op for backends with nothing to free
        """Free the model's memory."""

    # --- written once ----------------------------------------------------------------------------

    @property
    def chats(self) -> bool:
        """Whether prompts go to this model as chat messages or as raw text: decided here only.

        An instruct model with a chat template chats; a base model (or one with no template)
        completes raw text. A remote server applies its own template, so a remote model chats unless
        it is known to be a base model. Tasks, probes, the LLM judge and ``llmlab prompt`` all ask this.
        """
        if self.info.instruct is False:
            return False
        return bool(self.info.chat_template) or self.server_templates

    def render(self, messages: list[Message]) -> str:
        """The prompt text a list of messages becomes under the model's chat template."""
        return render_template(self.info.chat_template, messages,
                               bos=self.info.bos_token, eos=self.info.eos_token)

    def prompt_text(self, prompt: str | list[Message]) -> str:
        return prompt if isinstance(prompt, str) else self.render(prompt)

    def prompt_ids(self, prompt: str | list[Message]) -> list[int]:
        """Token ids of a prompt as the model receives it: raw text by :meth:`encode`; messages under
        the chat template, where only the template's own markup may become control tokens and each
        message's text is read as plain text, so a chat turn, a dataset row or a served request that
        spells ``<|im_end|>`` or ``<|im_start|>system`` cannot close its turn or open a system turn.

        The rendering is cut at the template's control tokens only, and the text between two of them
        (markup and message text together) is tokenized in one piece, as a tokenizer that parses
        special tokens does: an ordinary chat gets exactly the ids of its whole rendering.
        """
        if isinstance(prompt, str):
            return self.encode(prompt)
        info = self.info
        pieces = template_segments(info.chat_template, prompt, bos=info.bos_token, eos=info.eos_token)
        if pieces is None:
            raise PromptError("this model's chat template changes message texts in a way that cannot be "
                              "told apart from its markup, so llmlab cannot keep them plain text; pass a "
                              "raw string prompt instead")
        rendered = "".join(text for text, _ in pieces)
        ids = [] if info.bos_token and rendered.startswith(info.bos_token) else self.encode("")
        plain: list[str] = []
        for text, is_message in pieces:
            if is_message:
                plain.append(text)
                continue
            pos = 0
            for tid in self.token_ids(text, special=True):
                mark = self.token_text(tid) if self._is_control(tid) else ""
                at = text.find(mark, pos) if mark else -1
                if at < 0:
                    continue
                plain.append(text[pos:at])
                ids += self.token_ids("".join(plain), special=False) + [tid]
                plain, pos = [], at + len(mark)
            plain.append(text[pos:])
        return ids + self.token_ids("".join(plain), special=False)

    def _is_control(self, token_id: int) -> bool:
        """A token whose text does not read back as itself: a control token such as ``<|im_end|>``."""
        known = self.__dict__.setdefault("_control", {})
        if token_id not in known:
            known[token_id] = self.token_ids(self.token_text(token_id), special=False) != [token_id]
        return known[token_id]

    def count_tokens(self, prompt: str | list[Message]) -> int:
        return len(self.prompt_ids(prompt))

    def fit(self, prompt: str | list[Message], config: GenerationConfig,
            overflow: Overflow = "error") -> tuple[str | list[Message], int, int]:
        """Check the prompt against the context window; returns (prompt, prompt tokens, dropped)."""
        ctx = self.info.context_length
        n = self.count_tokens(prompt)
        if not ctx or n + config.max_new_tokens <= ctx:
            return prompt, n, 0
        if overflow == "drop_oldest" and not isinstance(prompt, str):
            kept, dropped = drop_oldest_turns(
                prompt, lambda msgs: self.count_tokens(msgs) + config.max_new_tokens <= ctx)
            n = self.count_tokens(kept)
            if n + config.max_new_tokens <= ctx:
                return kept, n, dropped
        if overflow not in ("error", "drop_oldest"):
            raise ConfigError(f"overflow must be 'error' or 'drop_oldest', got {overflow!r}")
        raise ContextOverflowError(n, config.max_new_tokens, ctx)

    def prompt(self, prompt: str | list | tuple, config: GenerationConfig | None = None, *,
               overflow: Overflow = "error", **overrides) -> Response:
        """A lazy response: iterate it to stream, or call ``.complete()`` / read ``.text``."""
        config = (config or GenerationConfig()).replace(**overrides)
        if not isinstance(prompt, str):
            prompt = as_messages(prompt)
        check_prompt(prompt)
        fitted, n_prompt, dropped = self.fit(prompt, config, overflow)
        return Response(self, fitted, config, n_prompt, dropped)

    def generate(self, prompt: str | list | tuple, config: GenerationConfig | None = None, *,
                 overflow: Overflow = "error", **overrides) -> Response:
        """Generate the whole response. ``model.generate("Where is Groningen located?").text``"""
        return self.prompt(prompt, config, overflow=overflow, **overrides).complete()

    def chat(self, messages: list, config: GenerationConfig | None = None, **overrides) -> Response:
        return self.generate(as_messages(messages), config, **overrides)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.backend}/{self.info.name}>"


class Response:
    """One generation. Iterate it for text as it arrives, or call ``complete()``.

    After it finishes (or is cut off, by Ctrl-C or by closing the iterator) it holds the text,
    ``usage``, ``timings`` and ``interrupted``, and is logged once.
    """

    def __init__(self, model: Model, prompt: str | list[Message], config: GenerationConfig,
                 prompt_tokens: int, dropped_messages: int = 0):
        self.model = model
        self.prompt = prompt
        self.messages = None if isinstance(prompt, str) else list(prompt)
        self.config = config
        self.dropped_messages = dropped_messages
        self.usage = Usage(prompt_tokens=prompt_tokens)
        self.timings = Timings(load_s=model.load_seconds)
        self.finish_reason: str | None = None
        self.interrupted = False
        self.error: str | None = None
        self.started_at: float | None = None
        self.done = False
        self._pieces: list[str] = []
        self._callbacks: list[Callable[[Response], None]] = []
        self._iterating = False

    @property
    def text(self) -> str:
        if not self.done and not self._iterating:
            self.complete()
        return "".join(self._pieces)

    def __str__(self) -> str:
        return self.text

    def on_done(self, callback: Callable[[Response], None]) -> None:
        self._callbacks.append(callback)

    def complete(self) -> Response:
        for _ in self:
            pass
        return self

    def __iter__(self) -> Iterator[str]:
        if self.done:
            yield from self._pieces
            return
        if self._iterating:
            raise PromptError("this response is already being streamed")
        self._iterating = True
        self.started_at = time.time()
        start = time.perf_counter()
        first = last = None
        counted = 0
        usage = None
        chunks = self.model.stream(self.prompt, self.config)
        try:
            for chunk in chunks:
                if chunk.text:
                    now = time.perf_counter()
                    if first is None:
                        first = now
                    last = now
                    counted += 1
                    self._pieces.append(chunk.text)
                    yield chunk.text
                if chunk.finish_reason:
                    self.finish_reason = chunk.finish_reason
                if chunk.usage:
                    usage = chunk.usage
        except (KeyboardInterrupt, GeneratorExit):
            self.interrupted = True
            raise
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            end = time.perf_counter()
            if hasattr(chunks, "close"):
                chunks.close()  # lets the backend free the model for the next call at once
            if usage is not None:
                self.usage.completion_tokens = usage.completion_tokens
                self.usage.prompt_tokens = usage.prompt_tokens or self.usage.prompt_tokens
            else:  # cut off before the backend reported usage: count what was produced
                text = "".join(self._pieces)
                self.usage.completion_tokens = len(self.model.tokenize(text)) if text else 0
            # one meaning, one field: a backend that reports its own cut-off (the serving engine,
            # when a client leaves) marks the response interrupted as a Ctrl-C does
            if self.interrupted or self.finish_reason == "interrupted":
                self.interrupted = True
                self.finish_reason = "interrupted"
            self._finish(start, first, last, end)

    def _finish(self, start: float, first: float | None, last: float | None, end: float) -> None:
        t = self.timings
        t.total_s = end - start
        if first is not None:
            t.ttft_s = first - start
            if t.ttft_s > 0 and self.usage.prompt_tokens:
                t.prefill_tps = self.usage.prompt_tokens / t.ttft_s
            if last is not None and last > first and self.usage.completion_tokens > 1:
                t.decode_tps = (self.usage.completion_tokens - 1) / (last - first)
        self.done = True
        self._iterating = False
        for callback in self._callbacks:
            callback(self)
        if self.model.logger is not None:
            self.model.logger(self)

    def __repr__(self) -> str:
        state = "done" if self.done else "pending"
        return f"<Response {state} {self.usage.completion_tokens} tokens: {''.join(self._pieces)[:40]!r}>"
