"""The one interface every backend implements, and what is written once on top of it.

A backend implements ``stream()`` (text pieces as they are generated), ``encode()`` (text to token
ids, as the model will see it) and ``tokenize()``; backends that return log-probabilities also
implement ``score()``. Everything else lives here: checking the prompt against the context window,
timing (load, time to first token, prefill and decode tokens/s), the lazy ``Response`` that can be
streamed or read whole, and logging each call to the store, including calls cut off part-way.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

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
from ..errors import ConfigError, ContextOverflowError, NotSupportedError, PromptError
from .events import Chunk, Timings, Token, TokenLogprob, ToolCallDelta, Usage  # noqa: F401 - re-exported
from .response import Response

if TYPE_CHECKING:
    import threading

# what a model can declare it does, beyond generating text:
#   score     log-probability of given continuations (Model.score)
#   logprobs  log-probabilities of the tokens it generates (GenerationConfig.logprobs)
#   echo      log-probabilities of a prompt's own tokens (Model.prompt_logprobs)
#   embed     vectors for texts (an EmbeddingModel)
#   tools     tool calls in its stream (ToolCallDelta)
#   grammar   output constrained to a grammar or JSON schema
#   tokenize  an embedder that lends its own tokenizer (EmbeddingModel.token_spans), so chunks can be
#             counted in its tokens
CAPABILITIES = ("score", "logprobs", "echo", "embed", "tools", "grammar", "tokenize")


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


_INSTRUCT = re.compile(r"(instruct|chat|\bit\b|-it\b|_it\b|sft|dpo|rlhf)", re.I)


def is_instruct(meta: dict, path, template: str | None) -> bool:
    """Instruction-tuned or base, from what the file says.

    The name, fine-tune tag and file name are checked for instruct/chat/-it; failing that, a model
    that ships a chat template is taken as tuned for chat and one without as a base model.
    """
    words = " ".join(str(meta.get(k, "")) for k in ("general.name", "general.finetune")) + " " + path.stem
    if _INSTRUCT.search(words):
        return True
    return bool(template)


class Capable:
    """What a model can do, declared in ``capabilities`` and asked one way: ``can()``, ``require()``.
    Generation models and embedding models both are."""

    backend: str = "?"
    capabilities: frozenset[str] = frozenset()  # from CAPABILITIES; an instance may narrow its own

    def can(self, capability: str) -> bool:
        """Whether this model does ``capability`` (one of ``CAPABILITIES``)."""
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r}; one of {', '.join(CAPABILITIES)}")
        return capability in self.capabilities

    def unable(self, capability: str, doing: str = "") -> NotSupportedError:
        """The one-line error for a capability this model lacks."""
        what = {"score": "score continuations (it returns no log-probabilities)",
                "logprobs": "return token log-probabilities", "echo": "score a prompt's own tokens",
                "embed": "embed texts", "tools": "call tools", "grammar": "follow a grammar"}[capability]
        tail = f"; {doing}" if doing else ""
        return NotSupportedError(f"{self.backend}/{self.info.name} cannot {what}{tail}")

    def require(self, capability: str, doing: str = "") -> None:
        """Raise the one-line error unless this model does ``capability``."""
        if not self.can(capability):
            raise self.unable(capability, doing)


class Model(Capable, ABC):
    server_templates: bool = False  # a remote server applies the chat template itself
    concurrent: bool = False        # safe to call from several threads at once (remote models)
    in_process: bool = True  # computes in this process, so its cost is this process's CPU time

    def __init__(self, info: ModelInfo):
        self.info = info
        self.load_seconds: float | None = None
        self.logger: Callable[[Response], None] | None = None  # set by load_model to log calls
        # how this copy was loaded (context window, threads, weight layout), read back from the
        # library where it can say; logged with every call, since it shapes speed
        self.runtime: dict = {}

    # --- what a backend implements -------------------------------------------------------------

    @abstractmethod
    def stream(self, prompt: str | list[Message], config: GenerationConfig,
               cancel: threading.Event | None = None) -> Iterator[Chunk]:
        """Generate, yielding chunks as they come; a list of messages goes through the chat template.

        Chunks carry log-probabilities when ``config.logprobs`` is set (models that can ``logprobs``).
        A backend that can stop sooner than at its next chunk (a long prompt's evaluation, a queue)
        watches ``cancel``; ``Response`` checks it between chunks in any case.
        """

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of raw text as the model will see it: BOS where the model adds one, and text that
        spells a control token (``<|im_end|>``) read as that token, as llama.cpp's server reads a
        completion prompt. Messages go through :meth:`prompt_ids` instead."""

    def token_text(self, token_id: int) -> str:
        """The text of one token id, control tokens included."""
        raise NotSupportedError(f"the {self.backend} backend does not detokenize")

    def token_ids(self, text: str, special: bool) -> list[int]:
        """Ids of a piece of a prompt, nothing added; ``special`` reads control-token text as tokens."""
        raise NotSupportedError(f"the {self.backend} backend does not tokenize prompt pieces")

    @abstractmethod
    def tokenize(self, text: str) -> list[Token]:
        """Token ids and their text for a piece of text, without special tokens added."""

    def score(self, context: str | list[Message], continuations: list[str]) -> list[float]:
        """Log-probability of each continuation after the context (sum over its tokens)."""
        raise self.unable("score")

    def score_ids(self, context: list[int], continuations: list[list[int]]) -> list[float]:
        """``score`` on token ids: each continuation's summed log-probability after exactly these
        context ids (local backends; how benchmarks reproduce lm-evaluation-harness's token split)."""
        raise self.unable("score", "it cannot score token ids")

    def prompt_logprobs(self, text: str, n_top: int = 0, cancel: threading.Event | None = None
                        ) -> list[TokenLogprob]:
        """Log-probability of each token of ``text`` given those before it (``echo``)."""
        raise self.unable("echo")

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
               overflow: Overflow = "error", cancel: threading.Event | None = None, **overrides) -> Response:
        """A lazy response: iterate it to stream, or call ``.complete()`` / read ``.text``.

        Setting ``cancel`` (or calling ``Response.cancel()``) from another thread stops it at the
        backend's next step; what was generated is kept and logged as interrupted."""
        config = (config or GenerationConfig()).replace(**overrides)
        if config.logprobs is not None:
            self.require("logprobs", "leave GenerationConfig.logprobs unset")
        if not isinstance(prompt, str):
            prompt = as_messages(prompt)
        if (config.tools or config.tool_choice != "auto") and not self.can("tools"):
            # no native tool calls: a call is one JSON reply decoded under a grammar (tools/calling.py)
            if config.tool_choice != "none":  # "none" needs no grammar: the history, then plain text
                self.require("grammar", "tool calling needs native tool calls or constrained decoding")
            from ..tools.calling import prompt_with_tools

            check_prompt(prompt)
            return prompt_with_tools(self, prompt, config, overflow, cancel)
        if config.json_schema is not None:
            self.require("grammar", "structured output (json_schema) is not implemented for this "
                         "backend yet; use a llamacpp/ or hf/ model")
        check_prompt(prompt)
        fitted, n_prompt, dropped = self.fit(prompt, config, overflow)
        return Response(self, fitted, config, n_prompt, dropped, cancel=cancel)

    def generate(self, prompt: str | list | tuple, config: GenerationConfig | None = None, *,
                 overflow: Overflow = "error", **overrides) -> Response:
        """Generate the whole response. ``model.generate("Where is Groningen located?").text``"""
        return self.prompt(prompt, config, overflow=overflow, **overrides).complete()

    def chat(self, messages: list, config: GenerationConfig | None = None, **overrides) -> Response:
        return self.generate(as_messages(messages), config, **overrides)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.backend}/{self.info.name}>"
