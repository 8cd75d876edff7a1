"""``Response``: one generation, lazy, streamed or read whole, timed, and logged once when it ends.

It is written once on top of ``Model.stream()``: it reads the stream's typed events (text, token
log-probabilities, tool-call deltas, the finish reason and usage), times them (time to first token,
prefill and decode tokens/s), keeps what was produced when it is cut off (Ctrl-C, a closed iterator,
``cancel()`` from another thread, as a server does when its client leaves) and gives the store its
own record of the call (``record()``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ..config import GenerationConfig
from ..errors import PromptError
from ..tally import count, cpu_clock
from .events import Timings, TokenLogprob, ToolCallDelta, Usage

if TYPE_CHECKING:
    from ..chat import Message, ToolCall
    from .base import Model


class Response:
    """One generation. Iterate it for text as it arrives, or call ``complete()``.

    After it finishes (or is cut off, by Ctrl-C or by closing the iterator) it holds the text,
    ``usage``, ``timings`` and ``interrupted``, and is logged once.
    """

    def __init__(self, model: Model, prompt: str | list[Message], config: GenerationConfig,
                 prompt_tokens: int, dropped_messages: int = 0, cancel: threading.Event | None = None,
                 stream: Callable | None = None):
        self.model = model
        # what makes the chunks: the model's own stream, or a wrapper of it (tool calls decoded
        # under a grammar, ``tools/calling.py``), called as stream(prompt, config, cancel=...)
        self._stream = stream or model.stream
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
        self.logprobs: list[TokenLogprob] = []      # filled when ``config.logprobs`` asks for them
        self.tool_calls: list[ToolCallDelta] = []   # the deltas as they came
        self.raw: str | None = None  # what the model wrote, where the text shown is read from it
        self.log_id: int | None = None              # the call's row in the store, once logged
        self._callbacks: list[Callable[[Response], None]] = []
        self._iterating = False
        self._cancel = cancel if cancel is not None else threading.Event()
        self._cpu_start: float | None = None  # this process's CPU clock when the call started

    @property
    def text(self) -> str:
        if not self.done and not self._iterating:
            self.complete()
        return "".join(self._pieces)

    def __str__(self) -> str:
        return self.text

    def on_done(self, callback: Callable[[Response], None]) -> None:
        self._callbacks.append(callback)

    def cancel(self) -> None:
        """Stop this generation from another thread (a server whose client left, a UI's stop
        button): the backend frees the model at its next step, and the partial answer is kept and
        logged as interrupted."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

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
        self._cpu_start = cpu_clock()
        start = time.perf_counter()
        first = last = None
        usage = None
        chunks = self._stream(self.prompt, self.config, cancel=self._cancel)
        try:
            for chunk in chunks:
                if self._cancel.is_set():
                    self.interrupted = True
                    break
                self.logprobs.extend(chunk.logprobs)
                self.tool_calls.extend(chunk.tool_calls)
                if chunk.text:
                    now = time.perf_counter()
                    if first is None:
                        first = now
                    last = now
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

    def abandon(self) -> Response:
        """End a call that never ran (a server dropped its request while it waited): it is logged,
        interrupted, with no text, so the call log still holds every call that was asked for."""
        if not self.done and not self._iterating:
            self.started_at = time.time()
            self.interrupted = True
            self.finish_reason = "interrupted"
            self._cpu_start = cpu_clock()
            now = time.perf_counter()
            self._finish(now, None, None, now)
        return self

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
        count(self, self._cpu_start)  # to the unit of a run that made this call (tally.py)
        for callback in self._callbacks:
            callback(self)
        if self.model.logger is not None:
            self.model.logger(self)

    def record(self) -> dict:
        """This call as one row of the store's call log (the file's checksum is the store's to add)."""
        info = self.model.info
        t, u = self.timings, self.usage
        return {
            "model": info.name, "backend": self.model.backend, "model_path": info.path,
            "settings": json.dumps(self.config.to_dict()),
            "prompt": self.prompt if isinstance(self.prompt, str) else None,
            "messages": None if self.messages is None else json.dumps([m.to_dict() for m in self.messages]),
            "response": "".join(self._pieces), "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens, "load_s": t.load_s, "ttft_s": t.ttft_s,
            "prefill_tps": t.prefill_tps, "decode_tps": t.decode_tps, "total_s": t.total_s,
            "finish_reason": self.finish_reason, "interrupted": int(self.interrupted), "error": self.error,
            "dropped_messages": self.dropped_messages,
            "runtime": json.dumps(self.model.runtime) if self.model.runtime else None,
            "tool_calls": json.dumps([c.to_dict() for c in self.calls]) if self.tool_calls else None,
        }

    @property
    def calls(self) -> list[ToolCall]:
        """The tool calls this response asks for, put together from the stream's deltas (empty when
        it answered in text)."""
        from ..chat import ToolCall

        merged: dict[int, list] = {}
        for d in self.tool_calls:
            slot = merged.setdefault(d.index, [d.id, d.name, ""])
            slot[0] = slot[0] or d.id
            slot[1] = slot[1] or d.name
            slot[2] += d.arguments
        return [ToolCall(cid or f"call_{i}", name if isinstance(name, str) else "", args or "{}")
                for i, (cid, name, args) in sorted(merged.items())]

    def json(self):
        """The output parsed as JSON and checked against ``config.json_schema`` where one was given.
        Raises one ``OutputError`` line when it does not parse or match (and says so when the
        generation stopped at ``max_new_tokens`` before the value was complete)."""
        from ..schema import validate_output

        text = self.text
        return validate_output(text, self.config.json_schema, self.finish_reason, self.config.max_new_tokens)

    @property
    def json_error(self) -> str | None:
        """Why :meth:`json` fails, or None when the output parses (and matches the schema)."""
        from ..errors import OutputError

        try:
            self.json()
        except OutputError as exc:
            return str(exc)
        return None

    def __repr__(self) -> str:
        state = "done" if self.done else "pending"
        return f"<Response {state} {self.usage.completion_tokens} tokens: {''.join(self._pieces)[:40]!r}>"
